"""The life cycle of clients, in this process: a dropped async client delivers and
closes itself while its loop runs; ``close()`` from the client's own thread changes
nothing; one exit hook serves every sync client; the one private stdlib hook exists;
Ctrl-C during the exit drain still reports what it leaves (a real script, SIGINT)."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import multiprocessing.process
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable

import pytest

from aiofuul import (
    ClientStateError,
    Event,
    FuulClient,
    FuulTimeoutError,
    SyncFuulClient,
    UndeliveredError,
    _exit,
)
from aiofuul.sandbox import Sandbox
from aiofuul.testing import MockRequest, MockTransport, respond
from aiofuul.wire.transport import Response
from conftest import API_KEY, EVM, fast_config, sigint_default


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll ``condition``; the deadline only fails a real hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


# -- a dropped async client ------------------------------------------------------------------
async def test_dropped_async_client_delivers_then_closes_itself(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aiofuul")

    def use_and_forget() -> list[str]:
        fuul = FuulClient(API_KEY, base_url=sandbox.url, config=fast_config())
        return [fuul.track("trade", EVM, args={"i": i}) for i in range(250)]

    ids = use_and_forget()
    gc.collect()
    await wait_until(lambda: all(sandbox.stored_count(i) == 1 for i in ids), "every event stored")
    await wait_until(lambda: "never closed" in caplog.text, "the warning")
    warnings = [r for r in caplog.records if "never closed" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    message = warnings[0].getMessage()
    assert f"{__file__}:" in message and "async with FuulClient() as fuul:" in message
    assert "250 event(s) delivered" in message


# -- close() on the client's own thread --------------------------------------------------
def test_close_from_on_error_raises_and_changes_nothing() -> None:
    raised: list[BaseException] = []
    reported = threading.Event()

    def handler(request: MockRequest) -> Response:
        body = request.json()
        names = [e["name"] for e in body] if isinstance(body, list) else [body["name"]]
        if "bad" in names:
            return respond(400, json={"message": ["bad event"]})
        return respond(201) if request.path == "events" else respond(200, json={})

    def on_error(events: list[Event], error: UndeliveredError) -> None:
        try:
            fuul.close()
        except ClientStateError as exc:
            raised.append(exc)
        reported.set()

    fuul = SyncFuulClient(
        API_KEY, config=fast_config(), transport=MockTransport(handler), on_error=on_error
    )
    fuul.track("bad", EVM)
    assert reported.wait(10)
    assert len(raised) == 1
    # Nothing changed: the client takes events, flush() waits for them, close() works.
    for i in range(100):
        fuul.track("trade", EVM, args={"i": i})
    assert fuul.flush(10)
    stats = fuul.stats()
    assert (stats.delivered, stats.rejected, stats.queued) == (100, 1, 0)
    fuul.close(5)
    with pytest.raises(ClientStateError):
        fuul.track("trade", EVM)


def test_blocking_call_past_its_timeout_raises_fuul_timeout_error() -> None:
    release = threading.Event()

    async def handler(request: MockRequest) -> Response:
        await asyncio.to_thread(release.wait, 10)
        return respond(201)

    with SyncFuulClient(API_KEY, config=fast_config(), transport=MockTransport(handler)) as fuul:
        with pytest.raises(FuulTimeoutError):
            fuul.send_event("trade", EVM, timeout=0.2)
        release.set()


# -- one exit hook -------------------------------------------------------------------------
def test_one_exit_hook_however_many_clients() -> None:
    def handler(request: MockRequest) -> Response:
        return respond(201)

    hooks, ours = len(threading._threading_atexits), list(_exit._hooks)  # type: ignore[attr-defined]
    for _ in range(1000):
        SyncFuulClient(API_KEY, config=fast_config(), transport=MockTransport(handler)).close()
    for _ in range(20):  # started: a loop thread each
        fuul = SyncFuulClient(API_KEY, config=fast_config(), transport=MockTransport(handler))
        fuul.track("trade", EVM)
        fuul.close(5)
    assert len(threading._threading_atexits) == hooks  # type: ignore[attr-defined]
    assert _exit._hooks == ours


def alive(kind: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), kind))  # no proxies


def test_closed_and_dropped_clients_leave_nothing_behind() -> None:
    # Other tests of this process may leave clients of their own: count from here.
    kinds = (FuulClient, SyncFuulClient, asyncio.AbstractEventLoop)
    before = {kind: alive(kind) for kind in kinds}

    def handler(request: MockRequest) -> Response:
        return respond(201)

    for _ in range(30):
        fuul = SyncFuulClient(API_KEY, config=fast_config(), transport=MockTransport(handler))
        fuul.track("trade", EVM)
        fuul.close(5)
    del fuul

    async def per_request() -> None:
        for _ in range(30):  # dropped unclosed, one per "request"
            FuulClient(API_KEY, config=fast_config(), transport=MockTransport(handler)).track(
                "trade", EVM
            )
            await asyncio.sleep(0)
        await wait_until(
            lambda: alive(FuulClient) <= before[FuulClient], "the dropped clients to close"
        )

    asyncio.run(per_request())
    # Loops too: the keeper of a loop must not keep it alive.
    after = {kind: alive(kind) for kind in kinds}
    assert all(after[kind] <= before[kind] for kind in kinds), (before, after)


def test_the_private_exit_hook_exists() -> None:
    """aiofuul delivers at exit from ``threading._register_atexit`` (see aiofuul._exit):
    if a Python version removes it, pool children stop delivering at exit. Fail loudly."""
    assert hasattr(threading, "_register_atexit"), (
        "threading._register_atexit is gone in this Python: aiofuul._exit falls back to "
        "atexit, which multiprocessing children never run; find its replacement"
    )
    assert _exit.EARLY_EXIT_HOOK
    # multiprocessing children leave through os._exit(): they run these hooks only
    # because BaseProcess._bootstrap calls threading._shutdown() first.
    bootstrap = inspect.getsource(multiprocessing.process.BaseProcess._bootstrap)
    assert "threading._shutdown()" in bootstrap, (
        "multiprocessing children no longer call threading._shutdown(): register "
        "aiofuul._exit._run_hooks with multiprocessing.util.Finalize in each child"
    )

    # Registered as a partial (3.10-3.12) or a lambda (3.13) around the function.
    def wraps_ours(call: object) -> bool:
        if getattr(call, "func", None) is _exit._run_hooks:
            return True
        cells = getattr(call, "__closure__", None) or ()
        return any(cell.cell_contents is _exit._run_hooks for cell in cells)

    registered = threading._threading_atexits  # type: ignore[attr-defined]
    assert any(wraps_ours(call) for call in registered)


# -- Ctrl-C during the exit drain ----------------------------------------------------------
CTRL_C = """
import asyncio, logging, sys, threading, time
from aiofuul import ClientConfig, SyncFuulClient, User
from aiofuul.testing import MockTransport

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
lost = []

async def handler(request):
    await asyncio.sleep(3600)  # the server never answers

def watch():
    while fuul._runner is None or fuul._runner._closing is None:
        time.sleep(0.01)
    print("DRAINING", flush=True)  # the exit hook is closing the client: tell the test

def on_error(events, error):
    lost.append(len(events))
    print("on_error", sum(lost), flush=True)

fuul = SyncFuulClient("k", config=ClientConfig(close_timeout=120),
                      transport=MockTransport(handler), on_error=on_error)
user = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")
for i in range(3000):
    fuul.track("trade", user, dedup_id=f"ctrl-c-{i}")
threading.Thread(target=watch, daemon=True).start()
"""


def test_ctrl_c_during_the_exit_drain_reports_what_is_lost() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CTRL_C)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_default,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "DRAINING", line + proc.stderr.read()  # type: ignore[union-attr]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "interrupted (KeyboardInterrupt): 3000 event(s) not delivered" in err, err
    assert "on_error 3000" in out, out + err
    assert "Traceback" not in err, err
