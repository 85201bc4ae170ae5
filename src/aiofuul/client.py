"""``FuulClient``: one object per API key, with direct awaitable calls for every endpoint
and ``track()``, a non-blocking fire-and-forget call backed by the background sender.

Example::

    from aiofuul import FuulClient, User

    async with FuulClient() as fuul:                 # key from FUUL_API_KEY
        user = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")
        fuul.track("trade", user, args={"size": 2.5})          # returns at once
        result = await fuul.send_event("deposit", user, dedup_id="dep-0xabc")
        created = await fuul.event_status(user, "trade")
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import threading
import time
import warnings
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import msgspec

from .batching import Sender
from .config import ClientConfig
from .errors import ClientStateError, TransportError
from .lanes import Lane
from .ledger import OnError, Stats
from .limits import SlidingWindowLimiter
from .models import (
    BatchResult,
    Event,
    SendResult,
    User,
    _decode_ingested,
    encode_batch,
    encode_event,
)
from .outbox import Outbox
from .redis_limiter import RedisLimiter
from .transport import Action, Transport, resolve_base_url
from .validation import (
    MAX_ID_LENGTH,
    check_args,
    check_dedup_id,
    check_name,
    check_timestamp,
    check_user,
    validate_batch,
)

__all__ = ["FuulClient"]

log = logging.getLogger("aiofuul")

_clients: weakref.WeakSet[FuulClient] = weakref.WeakSet()
# Users already validated, so the identifier regex runs once per user, not per event.
_KNOWN_USERS = 4096


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _StatusBody(msgspec.Struct):
    created: bool


_STATUS_DECODER = msgspec.json.Decoder(_StatusBody)


class FuulClient:
    """The Fuul events API client. Use one per API key and event loop, ideally as
    ``async with FuulClient(...) as fuul:`` (or call :meth:`aclose` yourself).

    :param api_key: the key; defaults to ``$FUUL_API_KEY``. Never logged or shown.
    :param base_url: defaults to ``$FUUL_BASE_URL``, else ``https://api.fuul.xyz/api/v1/``.
    :param config: every other knob, see :class:`~aiofuul.ClientConfig`.
    :param session: an aiohttp session to use (the client will not close it).
    :param on_error: ``on_error(events, error)``, called on the loop for tracked events
        that were not delivered; ``error`` is an :class:`~aiofuul.UndeliveredError`.
    :param limiter: ``"redis://host:port/db"`` to share the key's limits with every
        process using it (see :mod:`aiofuul.redis_limiter`); None: this process alone.
    :param outbox: a SQLite file that keeps accepted events until delivered, so a crash
        loses nothing committed (see :mod:`aiofuul.outbox`). One client per file.
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
    ):
        key = api_key if api_key is not None else os.environ.get("FUUL_API_KEY", "")
        if not key or not key.strip():
            raise ClientStateError("no API key: pass api_key=... or set FUUL_API_KEY")
        self.config = config or ClientConfig()
        self.base_url = resolve_base_url(base_url, self.config.allow_insecure_http)
        self._transport = Transport(
            key,
            self.base_url,
            timeout=self.config.timeout,
            max_response_bytes=self.config.max_response_bytes,
            session=session,
        )
        limits = self.config.limits
        shared = SlidingWindowLimiter(limits.shared) if limits.shared else None
        self._remote = (
            RedisLimiter(limiter, key, hold=self.config.timeout) if limiter is not None else None
        )
        self._single = Lane("single", "POST", "events", limits.single, shared, self._remote)
        self._batch = Lane("batch", "POST", "events/batch", limits.batch, shared, self._remote)
        self._status = Lane("status", "GET", "events/status", limits.status, shared, self._remote)
        # Taken last: it locks the file, and nothing after it may fail and leave it locked.
        self._outbox = Outbox(outbox) if outbox is not None else None
        self._sender = Sender(
            self.config, self._transport, self._single, self._batch, on_error, self._outbox
        )
        self._check_format = self.config.check_identifier_format
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._forked = False
        self._ids = itertools.count()
        self._id_prefix = secrets.token_hex(8) + "-"
        self._known_users: dict[User, User] = {}
        _clients.add(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<FuulClient base_url={self.base_url!r} api_key=<redacted> {state}>"

    # -- life cycle ---------------------------------------------------------------------
    async def __aenter__(self) -> FuulClient:
        self._bind()
        return self

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
            self._loop = loop
            self._sender.start(loop)
        return loop

    async def aclose(self, timeout: float | None = None) -> None:
        """Stop taking events, deliver what is queued within ``timeout`` seconds (default
        ``config.close_timeout``), report the rest through ``on_error``, close the session.
        Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._loop is not None:
                await self._sender.close(self.config.close_timeout if timeout is None else timeout)
        finally:
            try:
                if self._outbox is not None:
                    await self._outbox.close()
                if self._remote is not None:
                    await self._remote.close()
            finally:
                await self._transport.close()

    def __del__(self) -> None:
        sender = getattr(self, "_sender", None)
        if sender is None or getattr(self, "_closed", True):
            return
        lost = sender.ledger.tracked - sender.ledger.settled()
        if lost:
            log.error("FuulClient garbage-collected without aclose(): %d event(s) lost", lost)
            warnings.warn(
                f"FuulClient garbage-collected with {lost} undelivered event(s); "
                "use 'async with FuulClient()' or 'await fuul.aclose()'",
                ResourceWarning,
                stacklevel=1,
            )

    # -- tracking -------------------------------------------------------------------------
    def _make_event(
        self,
        name: str,
        user: User,
        dedup_id: str | None,
        args: Mapping[str, Any] | None,
        timestamp: int | None,
        stamp: bool,
    ) -> Event:
        # The hot path of track(): the common case (short ASCII name, a user seen
        # before, small args) is decided inline; the check_* functions own the rules
        # and the messages, and run whenever the inline test is not conclusive.
        if type(name) is not str or not 0 < len(name) <= MAX_ID_LENGTH or not name.isascii():
            name = check_name(name)
        try:
            known = self._known_users.get(user) if type(user) is User else None
        except TypeError:  # a User holding unhashable garbage
            known = None
        user = self._learn_user(user) if known is None else known
        if dedup_id is None:
            dedup_id = f"{self._id_prefix}{next(self._ids)}"
        else:
            dedup_id = check_dedup_id(dedup_id)
        if args is not None:
            args = check_args(args, self._check_format)
        if timestamp is None:
            if stamp:
                timestamp = time.time_ns() // 1_000_000
        else:
            check_timestamp(timestamp)
        return Event(name, user, dedup_id, args, timestamp)

    def _learn_user(self, user: User) -> User:
        # The cache maps a user to its checked form (plain strings), which is what is
        # queued: equal users then share one object, and a User holding str subclasses
        # that compares equal to a checked one is sent as that one.
        checked = check_user(user, self._check_format)
        if len(self._known_users) >= _KNOWN_USERS:
            self._known_users.clear()
        self._known_users[checked] = checked
        return checked

    def track(
        self,
        name: str,
        user: User,
        *,
        dedup_id: str | None = None,
        args: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
    ) -> str:
        """Queue an event for delivery and return its ``dedup_id`` at once.

        Validates first (raising :class:`~aiofuul.ValidationError` before anything is
        queued), generates a unique ``dedup_id`` when none is given, and stamps the
        current time when ``timestamp`` (ms) is None, so a delayed batch keeps the real
        time. Never awaits, never blocks, never raises for a network problem: failures
        reach ``on_error``, the log and :meth:`stats`. Call it on the client's loop.

        Example::

            fuul.track("deposit", user, dedup_id=f"dep-{tx_hash}", args={"chain_id": 1})
        """
        if self._loop is None or self._closed or self._forked:
            self._check_usable()
        elif asyncio._get_running_loop() is not self._loop:
            self._bind()
        event = self._make_event(name, user, dedup_id, args, timestamp, True)
        self._sender.enqueue(event)
        return event.dedup_id

    def _check_usable(self) -> None:
        if self._closed:
            raise ClientStateError("this FuulClient is closed")
        self._bind()

    async def atrack(
        self,
        name: str,
        user: User,
        *,
        dedup_id: str | None = None,
        args: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
    ) -> str:
        """Like :meth:`track`, but when the queue is full wait for room instead of
        applying the ``queue_full`` policy."""
        self._check_usable()
        event = self._make_event(name, user, dedup_id, args, timestamp, True)
        await self._sender.wait_for_room()
        if self._closed:
            raise ClientStateError("this FuulClient is closed")
        self._sender.enqueue(event)
        return event.dedup_id

    def track_threadsafe(
        self,
        name: str,
        user: User,
        *,
        dedup_id: str | None = None,
        args: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
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
        event = self._make_event(name, user, dedup_id, args, timestamp, True)
        if threading.get_ident() == getattr(loop, "_thread_id", None):
            self._sender.enqueue(event)
        else:
            loop.call_soon_threadsafe(self._sender.enqueue, event, False)
        return event.dedup_id

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event tracked before this call is delivered or reported.
        Sends partial batches at once instead of lingering. Returns False if
        ``timeout`` seconds passed first."""
        if self._loop is None:
            return True
        self._bind()
        done = await self._sender.flush(timeout)
        if self._outbox is not None:
            await self._outbox.commit()
        return done

    def stats(self) -> Stats:
        """A snapshot of the counters (see :class:`~aiofuul.Stats`)."""
        stats = self._sender.stats()
        if self._remote is not None and self._remote.down:
            stats = msgspec.structs.replace(stats, shared_limiter_down=True)
        return stats

    # -- direct calls ------------------------------------------------------------------------
    async def send_event(
        self,
        name: str,
        user: User,
        *,
        dedup_id: str | None = None,
        args: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
    ) -> SendResult:
        """``POST /v1/events`` now, with retries; returns when the server answered.

        ``duplicate=True`` in the result means the server already had this ``dedup_id``
        (409): not an error, the event exists. Raises :class:`~aiofuul.APIError`
        subclasses for refusals and :class:`~aiofuul.TransportError` when retries run out.
        """
        self._check_usable()
        event = self._make_event(name, user, dedup_id, args, timestamp, False)
        response = await self._single.call(
            self._transport, self.config.retry, body=encode_event(event)
        )
        return SendResult(event.dedup_id, duplicate=response.action is Action.DUPLICATE)

    async def send_batch(self, events: Sequence[Event]) -> BatchResult:
        """``POST /v1/events/batch`` now: 1 to 100 events in one atomic request.

        Known dedup ids are skipped by the server, not refused: ``result.skipped``.
        """
        self._check_usable()
        checked = validate_batch(events, self._check_format)
        response = await self._batch.call(
            self._transport, self.config.retry, body=encode_batch(checked)
        )
        ingested = _decode_ingested(response.body)
        if ingested is None or not 0 <= ingested <= len(checked):
            ingested = len(checked)
        return BatchResult(ingested=ingested, skipped=len(checked) - ingested)

    async def event_status(self, user: User, name: str) -> bool:
        """``GET /v1/events/status``: whether ANY event ``name`` exists for ``user``
        (not a given dedup id). Event names are case-sensitive."""
        self._check_usable()
        user = check_user(user, self._check_format)
        name = check_name(name)
        params = {
            "user_identifier": user.identifier,
            "user_identifier_type": user.identifier_type,
            "event_name": name,
        }
        response = await self._status.call(self._transport, self.config.retry, params=params)
        try:
            return _STATUS_DECODER.decode(response.body).created
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise TransportError("GET events/status: unreadable response body") from None
