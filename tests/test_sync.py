"""``SyncFuulClient`` against a sandbox serving from a thread of its own (the client under
test runs its own loop in another thread, and the tests block)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiofuul import (
    AuthenticationError,
    ClientStateError,
    FuulClient,
    SyncFuulClient,
    ValidationError,
)
from aiofuul.sync import leftover_outboxes, outbox_for_pid
from conftest import API_KEY, EVM, fast_config
from test_cli import ThreadSandbox

KEYS = {API_KEY: ["send:trigger_event"]}


@pytest.fixture
def live() -> Iterator[ThreadSandbox]:
    """A sandbox with the limits of ``fast_config()``, accepting only :data:`API_KEY`."""
    ts = ThreadSandbox(limits=fast_config().limits, keys=KEYS)
    yield ts
    ts.close()


def make(live: ThreadSandbox, **kwargs: object) -> SyncFuulClient:
    return SyncFuulClient(API_KEY, base_url=live.sb.url, config=fast_config(), **kwargs)  # type: ignore[arg-type]


def seen(live: ThreadSandbox, ids: list[str]) -> list[int]:
    async def read() -> list[int]:
        return [live.sb.seen_count(i) for i in ids]

    return live.call(read())


# -- the basics -----------------------------------------------------------------------
def test_track_from_threads_then_flush(live: ThreadSandbox) -> None:
    fuul = make(live)
    ids: list[str] = []

    def worker(n: int) -> None:
        ids.extend(fuul.track("trade", EVM, args={"n": n, "i": i}) for i in range(50))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fuul.flush(timeout=10) is True
    stats = fuul.stats()
    assert (stats.tracked, stats.delivered, stats.queued) == (200, 200, 0)
    assert sorted(live.stored_ids()) == sorted(ids)
    fuul.close()


def test_lazy_start_and_zero_stats(live: ThreadSandbox) -> None:
    before = threading.active_count()
    fuul = make(live)
    assert threading.active_count() == before  # a pre-fork master starts nothing
    assert fuul.stats().tracked == 0
    assert fuul.flush(1) is True
    fuul.close()


def test_validation_raises_in_caller(live: ThreadSandbox) -> None:
    with make(live) as fuul, pytest.raises(ValidationError):
        fuul.track("", EVM)


def test_send_event_answers_and_raises_like_async(live: ThreadSandbox) -> None:
    with make(live) as fuul:
        first = fuul.send_event("deposit", EVM, dedup_id="dep-1", timeout=10)
        again = fuul.send_event("deposit", EVM, dedup_id="dep-1", timeout=10)
        assert (first.dedup_id, first.duplicate, again.duplicate) == ("dep-1", False, True)

    async def async_error() -> type[BaseException]:
        async with FuulClient("sk_wrong_key_000000", base_url=live.sb.url) as bad:
            try:
                await bad.send_event("deposit", EVM)
            except Exception as exc:
                return type(exc)
        return type(None)

    bad = SyncFuulClient("sk_wrong_key_000000", base_url=live.sb.url)
    with bad, pytest.raises(AuthenticationError) as caught:
        bad.send_event("deposit", EVM, timeout=10)
    assert type(caught.value) is asyncio.run(async_error())


def test_close_is_idempotent_and_final(live: ThreadSandbox) -> None:
    fuul = make(live)
    fuul.track("trade", EVM)
    fuul.close(5)
    fuul.close(5)
    assert fuul.stats().delivered == 1
    with pytest.raises(ClientStateError, match="closed"):
        fuul.track("trade", EVM)
    with pytest.raises(ClientStateError, match="closed"):
        fuul.send_event("trade", EVM)
    assert "sk_" not in repr(fuul)


def test_gevent_patching_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("gevent.monkey")
    fake.is_module_patched = lambda name: name == "threading"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gevent.monkey", fake)
    with pytest.raises(ClientStateError, match="gevent"):
        SyncFuulClient(API_KEY)


def test_serverless_flush_per_invocation(live: ThreadSandbox) -> None:
    """A handler that tracks and flushes before returning: each invocation's events are
    stored when it returns (the platform may freeze the process right after)."""
    fuul = make(live)

    def handler(n: int) -> int:
        for i in range(5):
            fuul.track("trade", EVM, dedup_id=f"inv-{n}-{i}")
        assert fuul.flush(timeout=5)
        return n

    for n in range(3):
        handler(n)
        assert len(live.stored_ids()) == 5 * (n + 1)
    fuul.close()


# -- exit and fork --------------------------------------------------------------------
SCRIPT = """
import logging, sys
from aiofuul import ClientConfig, SyncFuulClient, User
logging.basicConfig(level=logging.WARNING)
fuul = SyncFuulClient({key!r}, base_url={url!r}, config=ClientConfig(close_timeout={close}))
user = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")
for i in range({n}):
    fuul.track("trade", user, dedup_id=f"script-{{i}}")
"""


def run_script(url: str, n: int, close: float) -> subprocess.CompletedProcess[str]:
    """Run SCRIPT; a script that has not exited after a minute hangs (the default retry
    policy would try for ten minutes: only ``close_timeout`` ends it sooner)."""
    code = textwrap.dedent(SCRIPT.format(key=API_KEY, url=url, n=n, close=close))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.slow
def test_script_falling_off_the_end_delivers_everything(live: ThreadSandbox) -> None:
    # "localhost": the exit hook must still be able to resolve names.
    url = live.sb.url.replace("127.0.0.1", "localhost")
    proc = run_script(url, 1000, close=20)
    assert proc.returncode == 0, proc.stderr
    ids = live.stored_ids()
    assert sorted(ids) == sorted(f"script-{i}" for i in range(1000))
    assert set(seen(live, ids)) == {1}


@pytest.mark.slow
def test_exit_is_bounded_and_reports_the_loss() -> None:
    proc = run_script("http://127.0.0.1:9/api/v1/", 20, close=1)  # bounded: it returns
    assert proc.returncode == 0, proc.stderr
    assert "20 event(s) could not be delivered" in proc.stderr


def test_fork_child_gets_a_fresh_client(live: ThreadSandbox) -> None:
    fuul = make(live)
    before = [fuul.track("trade", EVM, dedup_id=f"parent-pre-{i}") for i in range(30)]
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        ok = False
        try:
            assert fuul.stats().tracked == 0  # the parent's events are the parent's
            for i in range(40):
                fuul.track("trade", EVM, dedup_id=f"child-{i}")
            ok = fuul.flush(10) and fuul.stats().delivered == 40
            fuul.close(5)
        finally:
            os._exit(0 if ok else 1)
    after = [fuul.track("trade", EVM, dedup_id=f"parent-{i}") for i in range(25)]
    assert fuul.flush(10)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    fuul.close(5)
    expected = [*before, *after, *(f"child-{i}" for i in range(40))]
    assert sorted(live.stored_ids()) == sorted(expected)
    assert set(seen(live, expected)) == {1}  # none sent twice
    assert fuul.stats().delivered == 55


def test_forked_child_uses_its_own_outbox(live: ThreadSandbox, tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    fuul = make(live, outbox=path)
    fuul.track("trade", EVM, dedup_id="parent-0")
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            fuul.track("trade", EVM, dedup_id="child-0")
            ok = fuul.flush(10) and outbox_for_pid(path, os.getpid()).exists()
            fuul.close(5)
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert fuul.flush(10)
    fuul.close(5)
    assert sorted(live.stored_ids()) == ["child-0", "parent-0"]
    assert leftover_outboxes(path) == [outbox_for_pid(path, pid)]


def test_outbox_for_pid() -> None:
    assert outbox_for_pid("/x/events.db", 42) == Path("/x/events.42.db")
