"""Shared fixtures: a sandbox on loopback with the documented limits compressed to
one period per second, and a client configured to match (fast retries, short linger);
the one :class:`FakeClock` of the unit tests; and :func:`wait_until` /
:func:`wait_until_sync`, which wait on a condition instead of sleeping a fixed time.

No test asserts a wall-clock bound: a deadline here only turns a hang into a failure,
so it is generous (seconds where the thing takes milliseconds)."""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from aiofuul import DEFAULT_LIMITS, ClientConfig, FuulClient, Limits, RetryPolicy, User
from aiofuul.sandbox import Sandbox

#: The documented limits with a one-second period: 100/s single, 10/s batch.
FAST_LIMITS: Limits = DEFAULT_LIMITS.scaled(1 / 60)
#: Retries measured in milliseconds, so failure tests stay fast.
FAST_RETRY = RetryPolicy(max_attempts=12, initial_backoff=0.01, max_backoff=0.2, max_elapsed=30.0)
API_KEY = "sk_test_0123456789abcdef"

EVM = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")


#: How long a wait on a condition may take before the test calls it a hang.
HANG = 30.0


class FakeClock:
    """A clock for the lanes, limiters, the sender and the ledger: a callable returning
    ``now``, which moves only when a test moves it (``clock.now = 7.0``, ``advance``)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move on by ``seconds``; the new ``now``."""
        self.now += seconds
        return self.now


async def wait_until(
    condition: Callable[[], object], timeout: float = HANG, what: str = "the condition"
) -> None:
    """Let the loop run until ``condition()`` is true (it may return an awaitable, which
    is awaited); fail after ``timeout`` seconds (a hang, not a slow machine: keep it
    generous)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


def wait_until_sync(
    condition: Callable[[], object], timeout: float = HANG, what: str = "the condition"
) -> None:
    """:func:`wait_until` for a test without a loop (another thread or process works)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def fast_config(**changes: object) -> ClientConfig:
    """A ClientConfig for tests: compressed limits, fast retries, 2 s timeout."""
    base = ClientConfig(limits=FAST_LIMITS, retry=FAST_RETRY, timeout=2.0, linger=0.05)
    return base.with_(**changes) if changes else base


@pytest.fixture
def evm_user() -> User:
    return EVM


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """A sandbox with the compressed limits; tests may change ``sb.faults``/``sb.limits``."""
    async with Sandbox(limits=FAST_LIMITS) as sb:
        yield sb


@pytest_asyncio.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[FuulClient]:
    """A FuulClient pointed at ``sandbox`` with :func:`fast_config`."""
    async with FuulClient(API_KEY, base_url=sandbox.url, config=fast_config()) as fuul:
        yield fuul


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server of its own on a free loopback port, that a test may stop (or
    kill) and start again on the same port and data directory. ``aof``: with the
    append-only file, fsynced at every write (``appendfsync always``), so that a
    restart keeps every write Redis acknowledged."""

    def __init__(self, directory: Path, aof: bool = False):
        binary = shutil.which("redis-server")
        if binary is None:
            if os.environ.get("CI"):
                pytest.fail("redis-server is missing: .ci/run should have installed it")
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        # Its log is kept: a test that sees Redis drop prints it (see redis_log).
        logfile = directory / "redis.log"
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if aof else []
        self.cmd = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            *persistence,
            "--dir", str(directory),
            "--logfile", str(logfile),
        ]  # fmt: skip
        _REDIS_LOGS[self.url] = logfile
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """Start it (again), and wait until it takes connections."""
        self.process = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.process.kill()
                    raise
                time.sleep(0.02)

    def stop(self, kill: bool = False) -> None:
        """Stop it: SIGTERM, or SIGKILL (no chance to write anything more)."""
        if self.process is not None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of its own on a free loopback port, for the module's tests (CI
    installs it: there a missing one fails instead of skipping)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for one test, which may stop and restart it; with the AOF on."""
    server = RedisServer(tmp_path, aof=True)
    yield server
    server.stop()


_REDIS_LOGS: dict[str, Path] = {}


def redis_log(url: str) -> str:
    """What the redis-server of ``redis_url`` logged so far, for a failure's message."""
    try:
        return _REDIS_LOGS[url].read_text(errors="replace")[-4000:]
    except (KeyError, OSError) as exc:
        return f"(no log: {exc!r})"


# -- a hang is a failure with a diagnosis, never a stalled run ---------------------------
# pytest-timeout fails a test after ``timeout`` (pyproject) seconds; a moment before, this
# writes every pending asyncio task's stack to stderr: the thread dump pytest-timeout
# prints shows only an event loop waiting, never the coroutine that hangs.
_DUMP_AFTER = 240.0


def _dump_tasks(name: str) -> None:
    import gc
    import io
    import sys

    tasks = [t for t in gc.get_objects() if isinstance(t, asyncio.Task) and not t.done()]
    out = io.StringIO()
    out.write(f"\n=== {name}: still running after {_DUMP_AFTER:g} s; {len(tasks)} task(s)\n")
    for task in tasks:
        out.write(f"--- {task!r}\n")
        task.print_stack(file=out)
    sys.stderr.write(out.getvalue())
    sys.stderr.flush()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    import threading

    timer = threading.Timer(_DUMP_AFTER, _dump_tasks, args=(item.nodeid,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def sigint_default() -> None:
    """``preexec_fn`` of a child the test interrupts with SIGINT, as Ctrl-C in a terminal
    would: a suite started as a background job inherits SIGINT ignored, and Python then
    installs no KeyboardInterrupt handler in the child."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
