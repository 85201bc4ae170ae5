"""What keeps a ``FuulClient`` that was never closed delivering, and says so.

An accepted event must be delivered or reported even when the user forgot ``aclose()``:

- A client **dropped** while its loop runs (made in a coroutine, used, forgotten) is
  taken over here from its ``__del__``: it stays alive, delivers what it holds, then
  closes itself on its loop (:func:`adopt`).
- When the **loop shuts down** (``asyncio.run()`` ending, uvicorn stopping), every open
  client on it delivers within ``config.close_timeout`` before the loop closes.
  ``asyncio.run()`` first cancels every task (the sender keeps its queue when that
  happens, see :meth:`aiofuul.engine.sender.Sender.close`), then closes the async generators
  the loop knows (``loop.shutdown_asyncgens()``), then closes the loop. So one
  suspended async generator per loop, the *keeper*, is started when the first client
  binds there; its ``finally`` runs on the still-open loop and closes the clients. This
  is the documented hook every asyncio loop (uvloop included) honours.
- At **interpreter exit** (:mod:`aiofuul._exit`), a client whose loop still runs in
  another thread is closed there; one whose loop was closed by hand (no
  ``asyncio.run()``) reports what it holds while logging still works.

Either way the client then says once, at WARNING, that it was never closed, where it was
created and how to close it; what could not be delivered is reported as always (the log,
``on_error``, ``stats()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import warnings
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Protocol

from ._exit import on_exit
from .config import ClientConfig
from .engine.seams import Stats

__all__ = ["adopt", "creation_site", "describe_outcome", "forget", "watch", "warn_unclosed"]

log = logging.getLogger("aiofuul")

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
#: Creation sites already warned about: a client made per request warns once, not per request.
_warned: set[str] = set()


def creation_site() -> str:
    """``file:line`` of the first caller outside aiofuul: where the user made the client."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return "<unknown>"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def warn_unclosed(kind: str, site: str, what: str, fix: str) -> None:
    """Say once per creation site that a client of ``kind`` was never closed."""
    if site in _warned:
        log.debug("%s created at %s was never closed; %s", kind, site, what)
        return
    _warned.add(site)
    log.warning("%s created at %s was never closed; %s. Close it: %s", kind, site, what, fix)
    # Python's own signal for a resource never closed (shown with -X dev or -W default).
    message = f"{kind} created at {site} was never closed; close it: {fix}"
    warnings.warn(message, ResourceWarning, stacklevel=1)


def describe_outcome(before: Stats, after: Stats) -> str:
    """What happened to a client's events between two snapshots, for the warning:
    ``"250 event(s) delivered"``, ``"0 event(s) delivered, 20 not (reported above)"``."""
    delivered = after.delivered + after.duplicates - before.delivered - before.duplicates
    text = f"{delivered} event(s) delivered"
    missed = after.failed + after.dropped + after.rejected + after.handed_off + after.queued
    missed -= before.failed + before.dropped + before.rejected + before.handed_off
    return text + (f", {missed} not (reported above)" if missed > 0 else "")


class Closable(Protocol):
    """What this module needs of a client (:class:`~aiofuul.FuulClient` is one)."""

    config: ClientConfig

    def stats(self) -> Stats: ...

    def flush(self, timeout: float | None = None) -> Awaitable[bool]: ...

    def aclose(self, timeout: float | None = None) -> Awaitable[None]: ...


_FIX = "'async with FuulClient() as fuul:' or 'await fuul.aclose()'"


async def _close(client: Closable, site: str, when: str) -> None:
    """Close ``client`` within its ``close_timeout``, then warn."""
    before = client.stats()
    await client.aclose(client.config.close_timeout)
    warn_unclosed("FuulClient", site, f"{when}: {describe_outcome(before, client.stats())}", _FIX)


class _LoopState:
    """The open clients of one loop, and its keeper."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.open: weakref.WeakKeyDictionary[Closable, str] = weakref.WeakKeyDictionary()
        self.dropped: dict[Closable, str] = {}  # held here until they have closed
        #: How each client reports what it holds when it cannot close (its loop is gone).
        self.reports: weakref.WeakKeyDictionary[Closable, Callable[[], None]] = (
            weakref.WeakKeyDictionary()
        )
        self.tasks: set[asyncio.Task[None]] = set()
        self.flushing: dict[Closable, asyncio.Task[None]] = {}  # dropped, still delivering
        # Weak: the keeper holds its loop (the loop's finalizer hook), and this state is
        # a value of a dict keyed weakly by that loop. The clients hold the keeper.
        self.keeper: weakref.ref[AsyncGenerator[None, None]] | None = None

    def unclosed(self) -> dict[Closable, str]:
        return {**self.open, **self.dropped}

    async def close_all(self, when: str) -> None:
        # A dropped client still delivering stops waiting and is closed below; one that
        # is closing already finishes (cancelling its close would report its queue).
        for task in list(self.flushing.values()):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        closing = [_close(c, site, when) for c, site in self.unclosed().items()]
        for error in await asyncio.gather(*closing, return_exceptions=True):
            if isinstance(error, BaseException):
                log.error("closing a FuulClient %s failed", when, exc_info=error)
        self.dropped.clear()

    async def keep(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            # The loop is shutting down: close on it every client still open.
            await self.close_all("its event loop shut down, so it closed itself")

    def finish_dropped(self, client: Closable, site: str) -> None:
        """On the loop (the handle that calls this holds ``client``): deliver what it
        holds, close it, let go. If the loop shuts down meanwhile, the keeper closes it."""
        self.open.pop(client, None)
        self.dropped[client] = site
        task = asyncio.get_running_loop().create_task(self._finish(client, site))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _finish(self, client: Closable, site: str) -> None:
        before = client.stats()
        task = asyncio.current_task()
        assert task is not None
        self.flushing[client] = task
        try:
            await client.flush()  # cancelled by the loop's shutdown: the keeper closes it
        finally:
            self.flushing.pop(client, None)
        try:
            await client.aclose(client.config.close_timeout)
        except Exception:
            log.exception("closing a dropped FuulClient failed")
        what = f"it was dropped, so it closed itself: {describe_outcome(before, client.stats())}"
        warn_unclosed("FuulClient", site, what, _FIX)
        self.dropped.pop(client, None)


_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
    weakref.WeakKeyDictionary()
)


def watch(
    client: Closable, loop: asyncio.AbstractEventLoop, site: str, report: Callable[[], None]
) -> object:
    """``client`` was bound to ``loop`` (running, in this thread): close it when the
    loop shuts down, unless :func:`forget` comes first; ``report()`` reports what it
    holds if it cannot (its loop stopped for good before exit). ``report`` must not
    hold the client. Returns the loop's keeper: the client must hold it (the loop holds
    it only weakly)."""
    state = _loops.get(loop)
    if state is None:
        state = _loops[loop] = _LoopState()
    keeper = state.keeper() if state.keeper is not None else None
    if keeper is None:
        keeper = state.keep()
        state.keeper = weakref.ref(keeper)
        # Run it to its first ``yield`` now: the loop registers a generator when it is
        # first iterated, and only a suspended one runs its ``finally`` when closed.
        with contextlib.suppress(StopIteration):
            keeper.asend(None).send(None)
    state.open[client] = site
    state.reports[client] = report
    return keeper


def forget(client: Closable, loop: asyncio.AbstractEventLoop | None) -> None:
    """``client`` is closing: nothing more to do for it here."""
    state = _loops.get(loop) if loop is not None else None
    if state is not None:
        state.open.pop(client, None)
        state.reports.pop(client, None)


def adopt(client: Closable, loop: asyncio.AbstractEventLoop, site: str) -> bool:
    """From ``client.__del__``: hold the dropped client, and let it deliver and close
    on its loop. False if that is not possible (the loop is closed, the interpreter is
    exiting): the caller reports what it loses."""
    state = _loops.get(loop)
    if state is None or loop.is_closed() or sys.is_finalizing():
        return False
    try:
        loop.call_soon_threadsafe(state.finish_dropped, client, site)
    except RuntimeError:  # closed meanwhile
        return False
    return True


def _at_exit() -> None:
    """At interpreter exit, the clients never closed whose loop still runs in another
    thread are closed there, within their ``close_timeout``; those whose loop stopped
    for good (``loop.close()`` without ``asyncio.run()``) report what they hold, while
    logging still works."""
    for loop, state in list(_loops.items()):
        clients = state.unclosed()
        if state.pid != os.getpid() or not clients:
            continue
        if loop.is_running():
            wait = max(c.config.close_timeout for c in clients) + 1.0
            when = "the interpreter exited with its loop still running, so it closed itself"
            try:  # a Ctrl-C may come as soon as the close is under way
                future = asyncio.run_coroutine_threadsafe(state.close_all(when), loop)
                future.result(wait)
            except KeyboardInterrupt:  # Ctrl-C: stop waiting, say what is left
                left = sum(c.stats().queued for c in clients)
                log.error(
                    "FuulClient: delivery at exit interrupted (KeyboardInterrupt): "
                    "%d event(s) not delivered",
                    left,
                )
                return
            except Exception:
                log.debug("closing FuulClients at exit failed", exc_info=True)
            continue
        for client in clients:
            report = state.reports.get(client)
            if report is not None:
                report()
            state.dropped.pop(client, None)
            state.open.pop(client, None)


on_exit(_at_exit)
