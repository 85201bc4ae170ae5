"""Clients held the way users hold them, run as real scripts in subprocesses against a
sandbox served on loopback by this process: every event tracked must be stored once,
whether the client was closed, kept in a global, dropped, or lives in a forked child,
a ``multiprocessing.Pool`` or a ``ProcessPoolExecutor`` worker.

Each script reads ``FUUL_API_KEY`` and ``FUUL_BASE_URL`` from the environment and
tracks events whose dedup ids it prints nothing about: the test knows them in advance.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from aiofuul.sandbox import Sandbox
from conftest import API_KEY, fast_config, free_port

T = TypeVar("T")
KEYS = {API_KEY: ["send:trigger_event"]}

#: The head of every script: the key and the sandbox come from the environment, the
#: client's limits are the sandbox's (compressed to one-second periods), so that a
#: script's delivery takes a fraction of a second and its exit path is what is tested.
HEAD = """
import logging, os, sys
from aiofuul import ClientConfig, DEFAULT_LIMITS, SyncFuulClient, FuulClient, User
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
CONFIG = ClientConfig(limits=DEFAULT_LIMITS.scaled(1 / 60), linger=0.05, close_timeout=20)
USER = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")
"""


class LiveSandbox:
    """A sandbox serving from a loop in a daemon thread of this process."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def make() -> Sandbox:
            sb = Sandbox(limits=fast_config().limits, keys=KEYS)
            await sb.start()
            return sb

        self.sb = self.call(make())

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stored(self) -> list[str]:
        async def read() -> list[str]:
            return self.sb.stored_ids()

        return self.call(read())

    def close(self) -> None:
        self.call(self.sb.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveSandbox]:
    ts = LiveSandbox(tmp_path)
    yield ts
    ts.close()


def run(live: LiveSandbox, body: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run HEAD + ``body`` as a script file (spawned children import it by path)."""
    env = dict(os.environ, FUUL_API_KEY=API_KEY, FUUL_BASE_URL=live.sb.url)
    script = live.directory / "script.py"
    script.write_text(HEAD + textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_stored_once(live: LiveSandbox, expected: list[str], proc: Any) -> None:
    stored = live.stored()
    missing = sorted(set(expected) - set(stored))
    assert not missing, f"{len(missing)} not stored, e.g. {missing[:3]}\n{proc.stderr}"
    assert sorted(stored) == sorted(expected), proc.stderr


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(n)]


# -- the sync client --------------------------------------------------------------------
def test_local_sync_client_in_main(live: LiveSandbox) -> None:
    proc = run(
        live,
        """
        def main():
            fuul = SyncFuulClient(config=CONFIG)
            for i in range(300):
                fuul.track("trade", USER, dedup_id=f"main-{i}")

        if __name__ == "__main__":
            main()
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert_stored_once(live, ids("main", 300), proc)
    # It says once that it was never closed, where, and how to close it.
    warnings = [line for line in proc.stderr.splitlines() if "never closed" in line]
    assert len(warnings) == 1, proc.stderr
    assert "script.py:" in warnings[0] and "with SyncFuulClient() as fuul:" in warnings[0]


def test_sync_client_on_a_temporary(live: LiveSandbox) -> None:
    proc = run(
        live,
        """
        for i in range(20):
            SyncFuulClient(config=CONFIG).track("trade", USER, dedup_id=f"temp-{i}")
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert_stored_once(live, ids("temp", 20), proc)
    assert proc.stderr.count("never closed") == 1, proc.stderr  # once per creation site


def test_dropped_sync_client_delivers_in_the_background(live: LiveSandbox) -> None:
    proc = run(
        live,
        """
        import threading, time

        def work():
            fuul = SyncFuulClient(config=CONFIG)
            for i in range(50):
                fuul.track("trade", USER, dedup_id=f"bg-{i}")

        work()
        # The dropped client delivers and stops its thread without waiting for exit.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not any(t.name == "aiofuul-sync" for t in threading.enumerate()):
                break
            time.sleep(0.05)
        else:
            sys.exit("the dropped client's thread is still running")
        print("stopped before exit")
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert "stopped before exit" in proc.stdout
    assert_stored_once(live, ids("bg", 50), proc)


# -- the async client ---------------------------------------------------------------------
def test_async_client_never_closed_in_asyncio_run(live: LiveSandbox) -> None:
    proc = run(
        live,
        """
        import asyncio

        async def main():
            fuul = FuulClient(config=CONFIG)
            for i in range(300):
                fuul.track("trade", USER, dedup_id=f"async-{i}")

        asyncio.run(main())
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert_stored_once(live, ids("async", 300), proc)
    warnings = [line for line in proc.stderr.splitlines() if "never closed" in line]
    assert len(warnings) == 1 and "async with FuulClient() as fuul:" in warnings[0], proc.stderr


def test_async_client_kept_but_never_closed_delivers_at_loop_shutdown(
    live: LiveSandbox,
) -> None:
    proc = run(
        live,
        """
        import asyncio

        FUUL = []

        async def main():
            FUUL.append(FuulClient(config=CONFIG))
            for i in range(300):
                FUUL[0].track("trade", USER, dedup_id=f"kept-{i}")
            await asyncio.sleep(0)  # requests start, and are cancelled with the loop's tasks

        asyncio.run(main())
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert_stored_once(live, ids("kept", 300), proc)
    assert "never closed" in proc.stderr


def test_async_client_dropped_just_before_the_loop_ends(live: LiveSandbox) -> None:
    proc = run(
        live,
        """
        import asyncio, gc

        def use():
            fuul = FuulClient(config=CONFIG)
            for i in range(1000):
                fuul.track("trade", USER, dedup_id=f"late-{i}")

        async def main():
            use()  # dropped: it starts delivering what it holds on its own...
            gc.collect()
            await asyncio.sleep(0)  # ...and is still at it when the loop shuts down

        asyncio.run(main())
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert_stored_once(live, ids("late", 1000), proc)
    assert proc.stderr.count("never closed") == 1, proc.stderr


SERVER = """
from aiohttp import web

FUUL = []

async def trade(request):
    if not FUUL:  # made on first use, never closed: the server's end must deliver
        FUUL.append(FuulClient(config=CONFIG))
    n = int(request.query["n"])
    for i in range(100):
        FUUL[0].track("trade", USER, dedup_id=f"served-{n}-{i}")
    return web.Response(text="ok")

app = web.Application()
app.router.add_get("/trade", trade)
print("SERVING", flush=True)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def test_async_server_stopping_delivers_what_its_client_holds(live: LiveSandbox) -> None:
    # aiohttp's run_app ends like asyncio.run() and uvicorn: cancel the tasks, close the
    # async generators, close the loop.
    port = free_port()
    script = live.directory / "server.py"
    script.write_text(HEAD + SERVER)
    env = dict(os.environ, FUUL_API_KEY=API_KEY, FUUL_BASE_URL=live.sb.url)
    server = subprocess.Popen(
        [sys.executable, str(script), str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "SERVING"
        for n in range(5):
            get(port, f"/trade?n={n}")
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    expected = [f"served-{n}-{i}" for n in range(5) for i in range(100)]
    assert_stored_once(live, expected, subprocess.CompletedProcess([], 0, "", err))
    assert "never closed" in err, err


def get(port: int, path: str) -> None:
    """GET ``path``, retrying while the server starts listening (a real hang fails)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", path)
            assert connection.getresponse().status == 200
            connection.close()
            return
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "the server never listened"
            time.sleep(0.05)


# -- processes ----------------------------------------------------------------------------
def test_forked_child_that_falls_off_the_end(live: LiveSandbox) -> None:
    proc = run(
        live,
        """
        fuul = SyncFuulClient(config=CONFIG)
        for i in range(100):
            fuul.track("trade", USER, dedup_id=f"parent-{i}")
        pid = os.fork()
        who = "child" if pid == 0 else "parent2"
        for i in range(100):
            fuul.track("trade", USER, dedup_id=f"{who}-{i}")
        if pid:
            os.waitpid(pid, 0)
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert_stored_once(live, ids("parent", 100) + ids("child", 100) + ids("parent2", 100), proc)


POOL = """
import multiprocessing

fuul = SyncFuulClient(config=CONFIG)

def task(i):
    fuul.track("trade", USER, dedup_id=f"pool-{i}")
    return os.getpid()

if __name__ == "__main__":
    pool = multiprocessing.get_context("METHOD").Pool(3)
    pids = set(pool.map(task, range(200), chunksize=5))
    pool.close()
    pool.join()
    print(len(pids), "workers")
"""


@pytest.mark.parametrize("method", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])
def test_multiprocessing_pool_closed_and_joined(live: LiveSandbox, method: str) -> None:
    proc = run(live, POOL.replace("METHOD", method))
    assert proc.returncode == 0, proc.stderr
    assert_stored_once(live, ids("pool", 200), proc)


def test_process_pool_executor_workers(live: LiveSandbox) -> None:
    proc = run(
        live,
        """
        from concurrent.futures import ProcessPoolExecutor

        fuul = SyncFuulClient(config=CONFIG)

        def task(i):
            fuul.track("trade", USER, dedup_id=f"ppe-{i}")

        if __name__ == "__main__":
            with ProcessPoolExecutor(3) as pool:
                list(pool.map(task, range(200)))
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert_stored_once(live, ids("ppe", 200), proc)


def test_with_pool_flushing_each_task(live: LiveSandbox) -> None:
    # The README's recipe for a pool whose workers are SIGTERMed at the end of the block.
    proc = run(
        live,
        """
        from multiprocessing import Pool

        fuul = SyncFuulClient(config=CONFIG)

        def task(i):
            fuul.track("trade", USER, dedup_id=f"with-pool-{i}")
            fuul.flush(timeout=10)

        if __name__ == "__main__":
            with Pool(3) as pool:
                pool.map(task, range(60))
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert_stored_once(live, ids("with-pool", 60), proc)


# -- loops that end otherwise ---------------------------------------------------------------
def test_async_client_on_a_loop_in_another_thread_delivers_at_exit(live: LiveSandbox) -> None:
    proc = run(
        live,
        """
        import asyncio, threading

        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()

        async def track():
            fuul = FuulClient(config=CONFIG)
            for i in range(300):
                fuul.track("trade", USER, dedup_id=f"thread-{i}")
            return fuul

        FUUL = asyncio.run_coroutine_threadsafe(track(), loop).result()
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert_stored_once(live, ids("thread", 300), proc)


UNREACHABLE = """
import asyncio, os, sys
from aiofuul import ClientConfig, FuulClient, SyncFuulClient, User

CONFIG = ClientConfig(close_timeout=1)
USER = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")
lost = []

def on_error(events, error):
    lost.append(len(events))
    print("on_error", sum(lost), file=sys.stderr)
"""


def run_unreachable(body: str) -> subprocess.CompletedProcess[str]:
    """``body`` after UNREACHABLE, against a port nobody listens on, with no logging
    configured and stdout to /dev/null: the report must reach stderr anyway."""
    env = dict(os.environ, FUUL_API_KEY=API_KEY, FUUL_BASE_URL="http://127.0.0.1:9/api/v1/")
    return subprocess.run(
        [sys.executable, "-c", UNREACHABLE + textwrap.dedent(body)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            """
            def main():
                fuul = SyncFuulClient(config=CONFIG, on_error=on_error)
                for i in range(20):
                    fuul.track("trade", USER)
            main()
            """,
            id="dropped-sync",
        ),
        pytest.param(
            """
            async def main():
                fuul = FuulClient(config=CONFIG, on_error=on_error)
                for i in range(20):
                    fuul.track("trade", USER)
            asyncio.run(main())
            """,
            id="async-in-asyncio-run",
        ),
        pytest.param(
            """
            loop = asyncio.new_event_loop()

            async def main():
                fuul = FuulClient(config=CONFIG, on_error=on_error)
                for i in range(20):
                    fuul.track("trade", USER)
                return fuul

            FUUL = loop.run_until_complete(main())
            loop.close()  # closed-by-hand: nothing closes the client with the loop
            """,
            id="async-loop-closed-by-hand",
        ),
    ],
)
def test_what_cannot_be_delivered_is_reported_at_exit(body: str) -> None:
    proc = run_unreachable(body)
    assert proc.returncode == 0, proc.stderr
    # The log says how many, with logging unconfigured and stdout gone.
    assert re.search(r"\b20 event(s|\(s\)) (could )?not( be)? delivered", proc.stderr), proc.stderr
    if "closed-by-hand" not in body:
        assert "on_error 20" in proc.stderr, proc.stderr
    else:  # requests under way when the loop closed never end: on_error has the queue
        assert "on_error" in proc.stderr, proc.stderr


def test_readme_sync_example_runs_as_written(live: LiveSandbox) -> None:
    # README, "From sync code": the first block, as a script that falls off the end.
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("\n### From sync code (") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    script = live.directory / "readme_sync.py"
    script.write_text(code.group(1))
    env = dict(os.environ, FUUL_API_KEY=API_KEY, FUUL_BASE_URL=live.sb.url)
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "dep-1" in live.stored() and len(live.stored()) == 2, proc.stderr
