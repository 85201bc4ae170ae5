"""The machinery behind :class:`~aiofuul.SyncFuulClient`: a :class:`Runner` is a loop
on a daemon thread and the :class:`~aiofuul.FuulClient` it runs, in one process.

Runners are held by this module from start until stopped, not by their SyncFuulClient:
a client the user drops without ``close()`` keeps delivering in the background, then
closes itself and stops its thread; one kept in a global is closed at exit. One exit
hook per process (registered with :func:`aiofuul._exit.on_exit`) closes them all at
once, each within its ``config.close_timeout``; Ctrl-C stops that wait and what was not
delivered is still reported (the log, ``on_error``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass

from . import lifecycle
from ._exit import on_exit
from .client import FuulClient
from .engine.seams import Stats

__all__ = ["GRACE", "Runner"]

log = logging.getLogger("aiofuul")

#: Added to a caller's timeout when waiting for the loop thread: the async call times
#: itself out first and reports properly; this only bounds a loop that is stuck.
GRACE = 1.0

#: Every runner started in this process and not stopped yet.
_runners: set[Runner] = set()
#: The parent's runners, kept alive in a forked child: collecting them there would
#: report the parent's queued events as lost and close the parent's resources.
_inherited: list[Runner] = []


def _after_fork_in_child() -> None:
    _inherited.extend(_runners)
    _runners.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """The runner's thread: the loop, closed by this thread once stopped."""
    try:
        loop.run_forever()
    finally:
        loop.close()


_FIX = "'with SyncFuulClient() as fuul:' or 'fuul.close()'"


@dataclass(eq=False)
class Runner:
    """A loop on a daemon thread and the async client it runs, in one process. Closed
    by its SyncFuulClient, by itself once that was dropped, or at exit."""

    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    client: FuulClient
    pid: int
    site: str
    close_at_exit: bool = True
    dropped: bool = False
    _closing: asyncio.Task[int] | None = None
    _draining: asyncio.Task[None] | None = None
    _before: Stats | None = None  # the counters when the close began

    @classmethod
    def start(cls, client: FuulClient, site: str, close_at_exit: bool) -> Runner:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=_serve, args=(loop,), name="aiofuul-sync", daemon=True)
        thread.start()
        runner = cls(loop, thread, client, os.getpid(), site, close_at_exit)
        try:
            asyncio.run_coroutine_threadsafe(client.start(), loop).result()
        except BaseException:
            runner.stop(0.0)
            raise
        lifecycle.forget(client, loop)  # the runner closes it, not the loop's end
        _runners.add(runner)
        return runner

    # -- on the loop ----------------------------------------------------------------------
    async def _close(self, timeout: float) -> int:
        """Close the client (once, however many ask), returning how many events ended
        undelivered on the way (or are still queued)."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._shut(timeout))
        return await asyncio.shield(self._closing)

    async def _shut(self, timeout: float) -> int:
        before = self._before = self.client.stats()
        try:
            await self.client.aclose(timeout)
        except Exception:  # already reported by the client; the count below says what
            log.debug("closing the client failed", exc_info=True)
        return self._lost_since(before)

    def _lost_since(self, before: Stats) -> int:
        after = self.client.stats()
        return after.failed + after.dropped + after.queued - before.failed - before.dropped

    def _begin_drain(self) -> None:
        if self._closing is None:  # not closed (at exit) meanwhile
            self._draining = self.loop.create_task(self._drain())

    async def _drain(self) -> None:
        before = self.client.stats()
        await self.client.flush()
        await self._close(self.client.config.close_timeout)
        self._say_unclosed("it was dropped, so it closed itself in the background", before)
        _runners.discard(self)
        self.loop.call_soon(self.loop.stop)

    async def _interrupt(self) -> int:
        """Stop a close under way (Ctrl-C at exit): what it had not delivered is reported
        now (the log, on_error); returns how many."""
        if self._closing is not None and not self._closing.done():
            self._closing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._closing
        for _ in range(3):  # let the on_error calls queued by the settlement run
            await asyncio.sleep(0)
        return self._lost_since(self._before or self.client.stats())

    # -- from another thread --------------------------------------------------------------
    def drop(self, close_at_exit: bool) -> None:
        """Its SyncFuulClient was collected: deliver what is queued, close, stop."""
        self.dropped, self.close_at_exit = True, close_at_exit
        with contextlib.suppress(RuntimeError):  # the loop is gone: nothing to do
            self.loop.call_soon_threadsafe(self._begin_drain)

    def _say_unclosed(self, when: str, before: Stats) -> None:
        if self.dropped:
            what = f"{when}: {lifecycle.describe_outcome(before, self.client.stats())}"
            lifecycle.warn_unclosed("SyncFuulClient", self.site, what, _FIX)

    def begin_close(self, timeout: float) -> concurrent.futures.Future[int]:
        return asyncio.run_coroutine_threadsafe(self._close(timeout), self.loop)

    def end_close(self, future: concurrent.futures.Future[int], wait: float) -> int:
        """Wait up to ``wait`` s for the close begun with ``future``, stop the loop."""
        try:
            lost = future.result(wait)
        except concurrent.futures.TimeoutError:  # the loop is stuck: report what we can
            lost = self.interrupt()
        except Exception:
            log.debug("closing the client failed", exc_info=True)
            lost = self.client.stats().queued
        self.halt()
        return lost

    def interrupt(self) -> int:
        """Stop the close under way; return how many events it leaves undelivered (each
        also reported to the log and on_error, if the loop still answers)."""
        lost = self.client.stats().queued
        with contextlib.suppress(Exception):
            lost = asyncio.run_coroutine_threadsafe(self._interrupt(), self.loop).result(GRACE)
        return lost

    def halt(self) -> None:
        _runners.discard(self)
        with contextlib.suppress(RuntimeError):  # closed already
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(GRACE)

    def stop(self, timeout: float) -> int:
        """Close the client within ``timeout`` s, stop the loop; return the number of
        events that ended undelivered on the way (or are still queued)."""
        return self.end_close(self.begin_close(timeout), timeout + GRACE)


def _close_all_at_exit() -> None:
    """The exit hook of every SyncFuulClient in this process (see :mod:`aiofuul._exit`):
    close them all at once, each within its ``close_timeout``. Ctrl-C stops the wait;
    what was not delivered is still reported."""
    mine = [r for r in list(_runners) if r.pid == os.getpid()]
    for runner in mine:
        queued = runner.client.stats().queued
        if not runner.close_at_exit and queued:
            log.warning(
                "SyncFuulClient(close_at_exit=False) created at %s: %d event(s) still "
                "queued at exit are not delivered",
                runner.site, queued,
            )  # fmt: skip
    runners = [r for r in mine if r.close_at_exit]
    if not runners:
        return
    started = time.monotonic()
    closing = []
    try:  # from the first close begun: a Ctrl-C may come as soon as one is under way
        for runner in runners:
            before = runner.client.stats()
            timeout = runner.client.config.close_timeout
            closing.append((runner, before, runner.begin_close(timeout), timeout + GRACE))
        for runner, before, future, wait in closing:
            lost = runner.end_close(future, max(0.0, started + wait - time.monotonic()))
            runner._say_unclosed("it was dropped, and closed itself at interpreter exit", before)
            if lost:
                log.warning("SyncFuulClient closed: %d event(s) could not be delivered", lost)
    except KeyboardInterrupt:
        for runner in runners:
            if runner in _runners:
                _interrupted(runner)


def _interrupted(runner: Runner) -> None:
    lost = runner.client.stats().queued
    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: say what we know
        lost = runner.interrupt()
    log.error(
        "SyncFuulClient: delivery at exit interrupted (KeyboardInterrupt): %d event(s) "
        "not delivered",
        lost,
    )
    with contextlib.suppress(KeyboardInterrupt):
        runner.halt()


on_exit(_close_all_at_exit)
