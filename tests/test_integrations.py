"""``SyncFuulClient`` inside the frameworks it is made for, run for real: Django and Flask
views driven by their test clients, a Celery worker with the prefork pool on a Redis
broker, and gunicorn ``--preload`` with two sync workers serving examples/sync_flask.py.

The sandbox serves from a thread of the test process (the clients under test block, or
run in other processes that reach it on loopback); every test checks that each tracked
event was stored once and received once. The frameworks are test dependencies: a
missing one fails this module instead of skipping it.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import django
import gunicorn.config
import pytest
from celery import Celery
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.test import Client as DjangoClient
from django.urls import path

from aiofuul import Limits, RateLimit, SyncFuulClient, User
from conftest import API_KEY, EVM, fast_config, free_port, redis_log
from test_cli import ThreadSandbox

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
KEYS = {API_KEY: ["send:trigger_event"]}
#: Events run through the examples' default config in processes that do not flush. A
#: process sends at most 100 single requests a minute, then holds events for a batch
#: until 100 are waiting or the oldest waited 6 s (linger): with 300 over two processes
#: (or 150 in one), some are always still held when the test stops them, so that only
#: the exit or shutdown path can deliver those.
TASKS = REQUESTS = 300
#: The documented limits of a key, twice over: two processes without a shared limiter
#: (docs/guides/fleet.md, "One rate limit for many workers") each spend one key's budget.
TWO_BUDGETS = Limits(single=RateLimit(200), batch=RateLimit(20))


@pytest.fixture
def live() -> Iterator[ThreadSandbox]:
    """A sandbox with the limits of ``fast_config()``, accepting only :data:`API_KEY`."""
    ts = ThreadSandbox(limits=fast_config().limits, keys=KEYS)
    yield ts
    ts.close()


@pytest.fixture
def live_x2() -> Iterator[ThreadSandbox]:
    """A sandbox enforcing :data:`TWO_BUDGETS`, accepting only :data:`API_KEY`."""
    ts = ThreadSandbox(limits=TWO_BUDGETS, keys=KEYS)
    yield ts
    ts.close()


def assert_each_stored_once(live: ThreadSandbox, expected: list[str], log: str = "") -> None:
    """Every id in ``expected`` stored, nothing else, and each received once."""

    async def seen() -> list[int]:
        return [live.sb.seen_count(i) for i in expected]

    assert len(set(expected)) == len(expected), "the dedup ids returned are not unique"
    assert sorted(live.stored_ids()) == sorted(expected), log
    counts = live.call(seen())
    assert set(counts) == {1}, f"received more than once: {counts}\n{log}"


def subprocess_env(live: ThreadSandbox, **extra: str) -> dict[str, str]:
    """The environment of a process under test: the key and the sandbox's URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FUUL_", "CELERY_"))}
    env.update(FUUL_API_KEY=API_KEY, FUUL_BASE_URL=live.sb.url, PYTHONUNBUFFERED="1", **extra)
    return env


def stop(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM ``proc`` (a graceful stop for both servers here) and wait for it; kill it
    if it outlives ``timeout``, and fail."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        pytest.fail(f"still running {timeout} s after SIGTERM")


def read(log: Path) -> str:
    return log.read_text(errors="replace")


def refused_429(live: ThreadSandbox) -> int:
    """Requests the sandbox answered 429, read on its own loop."""

    async def count() -> int:
        return live.sb.count(status=429)

    return live.call(count())


def wait_for(condition: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s\n{read(log)[-4000:]}")
        time.sleep(0.05)


# -- Django: in-process settings, django.test.Client -----------------------------------
#: The client the Django view tracks through: the test that serves the view sets it.
django_fuul: dict[str, SyncFuulClient] = {}


def django_trade(request: HttpRequest) -> JsonResponse:
    body = json.loads(request.body)
    dedup_id = django_fuul["client"].track(
        "trade", User(body["address"], "evm_address"), args={"size": body["size"]}
    )
    return JsonResponse({"dedup_id": dedup_id})


urlpatterns = [path("trade", django_trade)]


def configure_django() -> None:
    """No database, no apps, no middleware: a URLconf (this module) and a view."""
    if not settings.configured:
        settings.configure(
            SECRET_KEY="integration-tests",
            ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF=__name__,
            DATABASES={},
            INSTALLED_APPS=[],
            MIDDLEWARE=[],
        )
        django.setup()
    urlconf = settings.ROOT_URLCONF
    assert urlconf == __name__, f"Django was configured elsewhere (ROOT_URLCONF={urlconf!r})"


def test_django_view_tracks_every_request_once(live: ThreadSandbox) -> None:
    configure_django()
    fuul = SyncFuulClient(API_KEY, base_url=live.sb.url, config=fast_config())
    django_fuul["client"] = fuul
    try:
        client = DjangoClient()
        ids: list[str] = []
        for i in range(150):
            body = {"address": EVM.identifier, "size": i}
            response = client.post("/trade", body, content_type="application/json")
            assert response.status_code == 200, response.content
            ids.append(response.json()["dedup_id"])
        assert fuul.flush(timeout=10)
        stats = fuul.stats()
        assert (stats.tracked, stats.delivered, stats.queued) == (150, 150, 0)
        assert_each_stored_once(live, ids)
    finally:
        django_fuul.clear()
        fuul.close(5)


DJANGO_EXAMPLE = """
import json, sys
sys.path.insert(0, {examples!r})
import sync_django
from django.test import Client

client = Client(HTTP_HOST="localhost")
ids = []
for i in range({n}):
    body = {{"address": "0x52908400098527886E0F7030069857D2E4169EE7", "size": i}}
    response = client.post("/trade", body, content_type="application/json")
    assert response.status_code == 200, response.content
    ids.append(response.json()["dedup_id"])
bad = client.post("/trade", {{"address": "0x12"}}, content_type="application/json")
assert bad.status_code == 400, bad.content
print(json.dumps(ids))
# Falls off the end: the client's exit hook delivers what is queued.
"""


@pytest.mark.slow
def test_django_example_delivers_at_exit(live: ThreadSandbox) -> None:
    """examples/sync_django.py as is (its default config), in a process that ends
    without flushing: everything its view tracked is delivered by the exit hook."""
    code = textwrap.dedent(DJANGO_EXAMPLE.format(examples=str(EXAMPLES), n=150))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env(live),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "could not be delivered" not in proc.stderr, proc.stderr
    assert_each_stored_once(live, json.loads(proc.stdout), proc.stderr)


# -- Flask: examples/sync_flask.py in-process, app.test_client() ------------------------
def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` under a name of its own (Flask wants its module in
    ``sys.modules``); the caller removes it."""
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def flask_example(live: ThreadSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """examples/sync_flask.py, its module-level client pointed at ``live`` by the
    environment, as a deployment would."""
    monkeypatch.setenv("FUUL_API_KEY", API_KEY)
    monkeypatch.setenv("FUUL_BASE_URL", live.sb.url)
    module = load_example("sync_flask")
    try:
        yield module
    finally:
        module.fuul.close(5)
        sys.modules.pop(module.__name__, None)


def test_flask_example_tracks_every_request_once(
    live: ThreadSandbox, flask_example: ModuleType
) -> None:
    client = flask_example.app.test_client()
    ids: list[str] = []
    for i in range(150):
        response = client.post("/trade", json={"address": EVM.identifier, "size": i})
        assert response.status_code == 200, response.data
        ids.append(response.get_json()["dedup_id"])
    for bad in ({"address": "0x12"}, {"size": 1}, ["not", "an", "object"]):
        assert client.post("/trade", json=bad).status_code == 400
    fuul: SyncFuulClient = flask_example.fuul
    assert fuul.flush(timeout=10)
    stats = fuul.stats()
    assert (stats.tracked, stats.delivered, stats.queued) == (150, 150, 0)
    assert_each_stored_once(live, ids)


# -- Celery: a prefork worker on the Redis broker, examples/sync_celery.py -------------
@pytest.mark.slow
def test_celery_prefork_worker_delivers_every_task_event_once(
    live_x2: ThreadSandbox, redis_url: str, tmp_path: Path
) -> None:
    """``celery worker --pool=prefork --concurrency=2`` on examples/sync_celery.py: the
    main process imports the module-level client and forks the pool; each pool process
    starts its own on its first task. Warm shutdown (SIGTERM) ends the pool processes
    with os._exit(), so only the example's worker_process_shutdown handler delivers
    what they still hold (see :data:`TASKS`)."""
    live = live_x2
    log = tmp_path / "celery.log"
    env = subprocess_env(live, CELERY_BROKER_URL=redis_url, CELERY_RESULT_BACKEND=redis_url)
    command = [
        *(sys.executable, "-m", "celery", "-A", "sync_celery", "worker"),
        *("--pool=prefork", "--concurrency=2", "--loglevel=INFO", f"--hostname=integ-{os.getpid()}@%h"),
        *("--without-gossip", "--without-mingle", "--without-heartbeat"),
    ]  # fmt: skip
    sender = Celery("integ_sender", broker=redis_url, backend=redis_url)
    with log.open("wb") as out:
        worker = subprocess.Popen(command, cwd=EXAMPLES, env=env, stdout=out, stderr=out)
        try:
            wait_for(lambda: " ready." in read(log), 20, "the worker's start", log)
            results = [
                sender.send_task("sync_celery.track_trade", args=[EVM.identifier, i])
                for i in range(TASKS)
            ]
            ids = [result.get(timeout=15) for result in results]
            stored_before_stop = len(live.stored_ids())
            code = stop(worker, 20)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)
            sender.close()
    text = read(log)
    assert code == 0, text[-4000:]
    # Tasks ran in both pool processes (the pool hands them out in turn), not the main one.
    ran_in = set(re.findall(r"/(ForkPoolWorker-\d+)\] Task sync_celery\.track_trade", text))
    assert ran_in == {"ForkPoolWorker-1", "ForkPoolWorker-2"}, text[-4000:]
    assert "could not be delivered" not in text, text[-4000:]
    assert stored_before_stop < TASKS, "nothing was left for the shutdown to deliver"
    assert refused_429(live) == 0
    assert_each_stored_once(live, ids, text[-4000:] + redis_log(redis_url)[-1000:])


# -- gunicorn --preload: two sync workers serving examples/sync_flask.py ---------------
def post_trade(port: int, size: int) -> str:
    """POST /trade on a connection of its own; the dedup id returned."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        body = json.dumps({"address": EVM.identifier, "size": size})
        conn.request("POST", "/trade", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        assert response.status == 200, data
        dedup_id: str = json.loads(data)["dedup_id"]
        return dedup_id
    finally:
        conn.close()


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


@pytest.mark.slow
def test_gunicorn_preload_delivers_every_request_once_after_sigterm(
    live_x2: ThreadSandbox, tmp_path: Path
) -> None:
    """The master imports the app (and the client, which starts nothing) and forks two
    workers; each starts its own client on its first request. A graceful SIGTERM ends
    the workers through the interpreter's normal exit, whose hook delivers what they
    still hold (see :data:`REQUESTS`): every event stored once, none twice."""
    live = live_x2
    port = free_port()
    log = tmp_path / "gunicorn.log"
    command = [
        *(sys.executable, "-m", "gunicorn", "--preload", "--workers=2", "--worker-class=sync"),
        *(f"--bind=127.0.0.1:{port}", f"--chdir={EXAMPLES}", "--graceful-timeout=15"),
        *("--access-logfile=-", "--access-logformat=%(p)s %(s)s", "sync_flask:app"),
    ]  # fmt: skip
    if any(s.name == "control_socket_disable" for s in gunicorn.config.KNOWN_SETTINGS):
        command.insert(-1, "--no-control-socket")  # else recent ones make one in $HOME
    with log.open("wb") as out:
        server = subprocess.Popen(command, env=subprocess_env(live), stdout=out, stderr=out)
        try:
            wait_for(lambda: read(log).count("Booting worker") >= 2, 20, "two workers", log)
            wait_for(lambda: listening(port), 5, "the port", log)
            with ThreadPoolExecutor(4) as pool:
                ids = list(pool.map(lambda i: post_trade(port, i), range(REQUESTS)))
            stored_before_stop = len(live.stored_ids())
            # The master imported the client with the app but never used it: no thread.
            master_threads = len(os.listdir(f"/proc/{server.pid}/task"))
            code = stop(server, 20)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait(10)
    text = read(log)
    assert code == 0, text[-4000:]
    assert master_threads == 1
    # Both workers served (four requests at a time, each worker takes one at a time).
    served_by = set(re.findall(r"^<(\d+)> 200$", text, re.MULTILINE))
    assert len(served_by) == 2, text[-4000:]
    assert "could not be delivered" not in text, text[-4000:]
    assert stored_before_stop < REQUESTS, "nothing was left for the exit to deliver"
    assert refused_429(live) == 0
    assert_each_stored_once(live, ids, text[-4000:])
