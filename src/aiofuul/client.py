"""``FuulClient``: one object per API key, with direct awaitable calls for every endpoint
and ``track()``, a non-blocking fire-and-forget call backed by the background sender.

The data path: :mod:`~aiofuul.engine.events` builds and checks each event, :mod:`~aiofuul.engine.sender`
queues it and asks :mod:`~aiofuul.engine.scheduler` when to send what, :mod:`~aiofuul.engine.delivery`
sends a request in a slot of its :mod:`~aiofuul.engine.lanes` lane over the
:mod:`~aiofuul.wire.transport`, and :mod:`~aiofuul.engine.ledger` counts where each event ended.

Example::

    from aiofuul import FuulClient, User

    async with FuulClient() as fuul:                 # key from FUUL_API_KEY
        user = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")
        fuul.track("trade", user, args={"size": 2.5})          # returns at once
        result = await fuul.send_event("deposit", user, dedup_id="dep-0xabc")
        created = await fuul.event_status(user, "trade")
        pipeline = await fuul.event_pipeline(dedup_id="dep-0xabc", event_name="deposit")
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec

from . import lifecycle
from .api import ApiGroups
from .api.endpoints import project_query
from .api.events_reads import ReadEndpoints
from .api.events_writes import DirectSends
from .config import ClientConfig
from .engine.events import EventFactory, EventFields
from .engine.handoff import Handoff
from .engine.lanes import make_lanes
from .engine.redis_limiter import RedisLimiter
from .engine.seams import Journal, Observer, OnError, Stats
from .engine.sender import Sender
from .errors import ClientStateError
from .lifecycle import creation_site
from .storage.outbox import Outbox
from .storage.redis_outbox import RedisOutbox, check_shared, is_redis_url
from .wire.models import User
from .wire.transport import AiohttpTransport, Transport, resolve_base_url

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["FuulClient"]

log = logging.getLogger("aiofuul")

# Seconds aclose() waits for the outbox to close (its last write included): a Redis that
# stops answering, or a task that ignores cancellation, must not hold aclose() forever.
_OUTBOX_CLOSE = 15.0


async def _close_outbox(outbox: Journal) -> None:
    task = asyncio.ensure_future(outbox.close())
    done, _ = await asyncio.wait({task}, timeout=_OUTBOX_CLOSE)
    if not done:
        log.error("the outbox did not close within %g s; left closing", _OUTBOX_CLOSE)
    else:
        task.result()


_clients: weakref.WeakSet[FuulClient] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._forked = client._inactive = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _mark_inactive(ref: weakref.ref[FuulClient]) -> Callable[[], None]:
    """What the sender calls when its worker ends: the client must not be kept alive by
    its own worker, or a client dropped without ``aclose()`` would never be reported."""

    def ended() -> None:
        client = ref()
        if client is not None:
            client._inactive = True

    return ended


def _report_unclosed(sender: Sender, site: str) -> None:
    """A client collected without ``aclose()`` after its loop ended (so it could not
    close itself, see :mod:`~aiofuul.lifecycle`): report what it loses."""
    lost = sender.ledger.tracked - sender.ledger.settled()
    sender.abandon()  # each queued event to the log and on_error, with its dedup id
    if lost:
        fix = "use 'async with FuulClient() as fuul:' or 'await fuul.aclose()'"
        log.error(
            "FuulClient created at %s was garbage-collected without aclose() after its "
            "event loop ended: %d event(s) not delivered; %s",
            site, lost, fix,
        )  # fmt: skip
        warnings.warn(
            f"FuulClient garbage-collected with undelivered events; {fix}",
            ResourceWarning,
            stacklevel=1,
        )


class FuulClient(DirectSends, ReadEndpoints, ApiGroups):
    """The Fuul events API client. Use one per API key and event loop, ideally as
    ``async with FuulClient(...) as fuul:`` (or call :meth:`aclose` yourself). A client
    never closed still delivers what it accepted: dropped, it closes itself on its loop;
    when its loop shuts down (``asyncio.run()`` ending), it closes within
    ``close_timeout`` first. It then warns once where it was created (see
    :mod:`~aiofuul.lifecycle`).

    :param api_key: the key; defaults to ``$FUUL_API_KEY``. Never logged or shown.
    :param base_url: defaults to ``$FUUL_BASE_URL``, else ``https://api.fuul.xyz/api/v1/``.
    :param config: every other knob, see :class:`~aiofuul.ClientConfig`.
    :param session: an aiohttp session to use (the client will not close it).
    :param on_error: ``on_error(events, error)``, called on the loop for tracked events
        that were not delivered; ``error`` is an :class:`~aiofuul.UndeliveredError`.
    :param limiter: ``"redis://host:port/db"`` to share the key's limits with every
        process using it (see :mod:`aiofuul.engine.redis_limiter`); None: this process alone.
    :param outbox: a SQLite file that keeps accepted events until delivered, so a crash
        loses nothing committed (see :mod:`aiofuul.storage.outbox`; one client per file), or
        ``"redis://host:port/db"``: a backlog shared by every process using the key,
        where live workers adopt a dead one's events (see :mod:`aiofuul.storage.redis_outbox`).
    :param project_id: sent as ``?project_id=`` on every request, as the official SDK
        does for a key that works for several projects; direct calls may name another.
    :param transport: anything with the :class:`~aiofuul.wire.transport.Transport` methods, in
        place of the aiohttp one (``aiofuul.testing.MockTransport`` in unit tests).
    :param clock: the monotonic clock of the limiters, the sender and the ledger.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        config: ClientConfig | None = None,
        session: aiohttp.ClientSession | None = None,
        on_error: OnError | None = None,
        outbox: str | os.PathLike[str] | None = None,
        limiter: str | None = None,
        project_id: str | None = None,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        key = api_key if api_key is not None else os.environ.get("FUUL_API_KEY", "")
        if not key or not key.strip():
            raise ClientStateError("no API key: pass api_key=... or set FUUL_API_KEY")
        config = self.config = config or ClientConfig()
        self.base_url = resolve_base_url(base_url, config.allow_insecure_http)
        self._transport: Transport = transport or AiohttpTransport(
            key,
            self.base_url,
            timeout=config.timeout,
            max_response_bytes=config.max_response_bytes,
            session=session,
        )
        self._remote = RedisLimiter(limiter, key, hold=config.timeout) if limiter else None
        lanes = self._lanes = make_lanes(
            config.limits, config.retry, project_query(project_id), self._remote, clock
        )
        # Taken last: it locks the file, and nothing after it may fail and leave it locked.
        self._outbox: Journal | None = None
        if outbox is not None:
            self._outbox = RedisOutbox(outbox, key) if is_redis_url(outbox) else Outbox(outbox)
        self._sender = Sender(
            config, self._transport, lanes["single"], lanes["batch"], on_error, self._outbox
        )
        self._events = EventFactory(config.check_identifier_format, config.strict)
        self._queue = self._sender.queue  # track() adds to it directly: its hot path
        self._names_loaded: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handoff: Handoff | None = None  # track_threadsafe()'s way in
        self._thread_id: int | None = None
        self._closed = self._forked = False
        # True unless track() may go straight to the queue: not bound yet, closed,
        # forked, or the sender gone with its loop. One flag for the hot path to read.
        self._inactive = True
        self._site = creation_site()  # for the warning if it is never closed
        self._keeper: object = None  # see lifecycle.watch
        _clients.add(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<FuulClient base_url={self.base_url!r} api_key=<redacted> {state}>"

    # -- life cycle ---------------------------------------------------------------------
    async def __aenter__(self) -> FuulClient:
        await self.start()
        return self

    async def start(self) -> None:
        """Bind the client to the running loop and start its sender (``async with`` does
        this); with ``check_event_names``, also fetch the project's trigger names. With
        a Redis limiter or outbox, first check that Redis serves them: when it refuses
        (password, ACL, TLS) the client is closed and
        :class:`~aiofuul.storage.redis_errors.RedisRefusedError` raised."""
        if self._loop is None and not self._closed:
            try:
                await check_shared(self._remote, self._outbox)
            except Exception:
                await self.aclose(0)
                raise
        self._bind()
        if self._names_loaded is not None:
            await asyncio.shield(self._names_loaded)

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose(self.config.close_timeout)

    def _bind(self) -> asyncio.AbstractEventLoop:
        """The loop this client lives on; started on the first call inside a loop."""
        if self._forked:
            raise ClientStateError(
                "this FuulClient was created before os.fork(); create a new one in the child"
            )
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise ClientStateError(
                "no running event loop: call this from a coroutine, or use "
                "track_threadsafe() from other threads"
            ) from None
        if loop is not self._loop:
            if self._loop is not None:
                raise ClientStateError(
                    "this FuulClient belongs to another event loop; create one client per loop"
                )
            if self._closed:
                raise ClientStateError("this FuulClient is closed")
            self._loop, self._thread_id = loop, threading.get_ident()
            self._handoff = Handoff(loop, self._sender.enqueue_from_thread)
            self._sender.start(loop, on_end=_mark_inactive(weakref.ref(self)))
            self._inactive = False
            # Closes it if the loop shuts down first; reports what it holds at exit if
            # the loop stopped for good (the report holds the sender, not the client).
            report = functools.partial(_report_unclosed, self._sender, self._site)
            self._keeper = lifecycle.watch(self, loop, self._site, report)
            if self.config.check_event_names:
                self._names_loaded = loop.create_task(self._events.load_names(self.conversions))
        return loop

    async def aclose(self, timeout: float | None = None) -> None:
        """Stop taking events, deliver what is queued within ``timeout`` seconds (default
        ``config.close_timeout``), report the rest through ``on_error``, close the session.
        Safe to call twice."""
        if self._closed:
            return
        if self._loop is not None and asyncio.get_running_loop() is not self._loop:
            # Before any state changes: a later aclose() on the right loop must still work.
            raise ClientStateError(
                "aclose() must be awaited on the event loop this FuulClient belongs to"
            )
        self._closed = self._inactive = True
        lifecycle.forget(self, self._loop)
        try:
            if self._loop is not None:
                if self._handoff is not None:
                    self._handoff.drain()
                await self._sender.close(self.config.close_timeout if timeout is None else timeout)
        finally:
            try:
                if self._outbox is not None:
                    await _close_outbox(self._outbox)
                if self._remote is not None:
                    await asyncio.gather(*(lane.settle() for lane in self._lanes.values()))
                    await self._remote.close()
            finally:
                await self._transport.close()

    def __del__(self) -> None:
        if getattr(self, "_closed", True) or self._forked or self._loop is None:
            return  # closed, the parent's, or never started (nothing queued)
        if not lifecycle.adopt(self, self._loop, self._site):  # it delivers and closes
            _report_unclosed(self._sender, self._site)

    # -- tracking -------------------------------------------------------------------------
    def track(
        self,
        name: str,
        user: User | None = None,
        *,
        dedup_id: str | None = None,
        args: Mapping[str, Any] | None = None,
        timestamp: int | str | None = None,
        **fields: Unpack[EventFields],
    ) -> str:
        """Queue an event for delivery and return its ``dedup_id`` at once.

        Validates first (raising :class:`~aiofuul.ValidationError` before anything is
        queued), generates a unique ``dedup_id`` when none is given, and stamps the
        current time when ``timestamp`` (ms) is None, so a delayed batch keeps the real
        time. Never awaits, never blocks, never raises for a network problem: failures
        reach ``on_error``, the log and :meth:`stats`. Call it on the client's loop.

        ``fields`` are those of a tracking event (``metadata``, ``signature``,
        ``signature_message``, ``signature_public_key``, ``account_chain_id``), the
        deprecated ``user_address``, and ``project_id`` (the event's project, in its body
        as the official SDK sends it; the ``?project_id=`` of requests is the client's).
        Unset fields are left out of the body. ``user`` may be None only for an event
        that names someone otherwise (``user_address``, or ``metadata["tracking_id"]``).

        Example::

            fuul.track("deposit", user, dedup_id=f"dep-{tx_hash}", args={"chain_id": 1})
            fuul.track("connect_wallet", user, metadata={"tracking_id": tid})
        """
        if self._inactive or threading.get_ident() != self._thread_id:
            self._check_usable()
        event = self._events.make(name, user, dedup_id, args, timestamp, fields)
        self._queue.add(event)
        return event.dedup_id

    def _check_usable(self) -> None:
        if self._closed:
            raise ClientStateError("this FuulClient is closed")
        self._bind()

    async def atrack(
        self,
        name: str,
        user: User | None = None,
        *,
        dedup_id: str | None = None,
        args: Mapping[str, Any] | None = None,
        timestamp: int | str | None = None,
        **fields: Unpack[EventFields],
    ) -> str:
        """Like :meth:`track`, but when the queue is full wait for room instead of
        applying the ``queue_full`` policy."""
        self._check_usable()
        event = self._events.make(name, user, dedup_id, args, timestamp, fields)
        await self._sender.wait_for_room()
        if self._closed:
            raise ClientStateError("this FuulClient is closed")
        self._queue.add(event)
        return event.dedup_id

    def track_threadsafe(
        self,
        name: str,
        user: User | None = None,
        *,
        dedup_id: str | None = None,
        args: Mapping[str, Any] | None = None,
        timestamp: int | str | None = None,
        **fields: Unpack[EventFields],
    ) -> str:
        """:meth:`track` from another thread (sync code, a thread pool). Validates in the
        calling thread and hands the event to the client's loop. The client must have
        been started (``async with`` or a first call) on its loop. With
        ``queue_full="raise"`` a full queue counts the event as dropped instead."""
        loop = self._loop
        if loop is None or self._closed or loop.is_closed():
            raise ClientStateError("the client is not running: start it on its event loop first")
        if self._forked:
            raise ClientStateError("this FuulClient was created before os.fork()")
        event = self._events.make(name, user, dedup_id, args, timestamp, fields)
        if threading.get_ident() == self._thread_id:
            self._queue.add(event)
            return event.dedup_id
        assert self._handoff is not None  # made with self._loop
        try:
            self._handoff.put(event)
        except RuntimeError:  # the loop closed meanwhile: nothing was accepted
            raise ClientStateError("the client's event loop is closed") from None
        return event.dedup_id

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event tracked before this call is delivered or reported.
        Sends partial batches at once instead of lingering. Returns False if
        ``timeout`` seconds passed first. Without a timeout it is bounded by the retry
        policy: once the key has been refused (401/403/404) ``max_attempts`` times in a
        row, it returns False and the events stay queued (delivered if the key is
        accepted again, else reported ``stopped`` after ``max_elapsed``)."""
        if self._loop is None:
            return True
        self._bind()
        if self._handoff is not None:
            self._handoff.drain()  # events handed over before this call count too
        done = await self._sender.flush(timeout)
        if self._outbox is not None:
            await self._outbox.commit()
        return done

    def add_observer(self, observer: Observer) -> Callable[[], None]:
        """Tell ``observer(outcome, waited)`` of every settlement of a tracked event from
        now on (see :class:`~aiofuul.engine.seams.Observer`), on the client's loop; returns a
        function that removes it. This is how :mod:`aiofuul.metrics` times deliveries.

        Example::

            remove = fuul.add_observer(lambda outcome, waited: print(outcome, len(waited)))
            ...
            remove()
        """
        return self._sender.ledger.add_observer(observer)

    def stats(self) -> Stats:
        """A snapshot of the counters (see :class:`~aiofuul.Stats`)."""
        stats = self._sender.stats()
        if self._remote is not None and self._remote.down:
            stats = msgspec.structs.replace(stats, shared_limiter_down=True)
        if self._outbox is not None and self._outbox.down:
            stats = msgspec.structs.replace(stats, outbox_down=True)
        return stats

    # -- direct calls: one retry loop (delivery.call) for all ------------------------------
