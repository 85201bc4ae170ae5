"""``FuulClient``: one object per API key, with direct awaitable calls for every endpoint
and ``track()``, a non-blocking fire-and-forget call backed by the background sender.

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

from . import reads
from .batching import Sender
from .config import ClientConfig
from .errors import ClientStateError, PermissionDeniedError, ValidationError
from .lanes import Lane
from .ledger import OnError, Stats
from .limits import SlidingWindowLimiter
from .models import (
    BatchResult,
    Conversion,
    Event,
    EventPipeline,
    SendResult,
    User,
    decode_ingested,
    encode_batch,
    encode_event,
    required_scope,
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
    validate_event,
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
    :param project_id: sent as ``?project_id=`` on every request, as the official SDK
        does for a key that works for several projects; direct calls may name another.
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
            project_id=project_id,
        )
        limits = self.config.limits
        shared = SlidingWindowLimiter(limits.shared) if limits.shared else None
        self._remote = (
            RedisLimiter(limiter, key, hold=self.config.timeout) if limiter is not None else None
        )
        self._single = Lane("single", "POST", "events", limits.single, shared, self._remote)
        self._batch = Lane("batch", "POST", "events/batch", limits.batch, shared, self._remote)
        self._status = Lane("status", "GET", "events/status", limits.status, shared, self._remote)
        self._pipeline = Lane(
            "pipeline", "GET", "events/pipeline", limits.pipeline, shared, self._remote
        )
        self._conversions = Lane(
            "conversions", "GET", "conversions", limits.conversions, shared, self._remote
        )
        # Taken last: it locks the file, and nothing after it may fail and leave it locked.
        self._outbox = Outbox(outbox) if outbox is not None else None
        self._sender = Sender(
            self.config, self._transport, self._single, self._batch, on_error, self._outbox
        )
        self._check_format = self.config.check_identifier_format
        self._strict = self.config.strict
        # Trigger names of the project, once fetched (check_event_names).
        self._trigger_names: frozenset[str] | None = None
        self._names_loaded: asyncio.Task[None] | None = None
        self._warned_names: set[str] = set()
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
        await self.start()
        return self

    async def start(self) -> None:
        """Bind the client to the running loop and start its sender (``async with`` does
        this); with ``check_event_names``, also fetch the project's trigger names."""
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
            self._loop = loop
            self._sender.start(loop)
            if self.config.check_event_names:
                self._names_loaded = loop.create_task(self._load_trigger_names())
        return loop

    async def _load_trigger_names(self) -> None:
        try:
            found = await self.conversions()
        except Exception as exc:  # the check is a help; tracking goes on without it
            log.warning("check_event_names: could not fetch the conversions (%s)", exc)
            return
        self._trigger_names = frozenset(t.name for c in found for t in c.triggers)

    def _check_trigger_name(self, name: str) -> None:
        rule = (
            "no trigger of this project has this name (names are case-sensitive: "
            "'trade' is not 'Trade'; see fuul.conversions())"
        )
        if self._strict:
            raise ValidationError("name", rule, name, tier=2)
        if name not in self._warned_names and len(self._warned_names) < _KNOWN_USERS:
            self._warned_names.add(name)
            log.warning("name %r: %s; sent anyway, the server decides", name, rule)

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
        timestamp: int | str | None,
        stamp: bool,
    ) -> Event:
        # The hot path of track(): the common case (short ASCII name, a user seen
        # before, small args) is decided inline; the check_* functions own the rules
        # and the messages, and run whenever the inline test is not conclusive.
        if (
            type(name) is not str
            or not 0 < len(name) <= MAX_ID_LENGTH
            or not name.isascii()
            or "\x00" in name
        ):
            name = check_name(name)
        if self._trigger_names is not None and name not in self._trigger_names:
            self._check_trigger_name(name)
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
            args = check_args(args, strict=self._strict)
        if timestamp is None:
            if stamp:
                timestamp = time.time_ns() // 1_000_000
        else:
            check_timestamp(timestamp)
        return Event(name, user, dedup_id, args, timestamp)

    def _make_full_event(self, event: Event, stamp: bool) -> Event:
        """An event with tracking fields, or without a user: every rule, no shortcut."""
        if not event.dedup_id:
            event.dedup_id = f"{self._id_prefix}{next(self._ids)}"
        if event.timestamp is None and stamp:
            event.timestamp = time.time_ns() // 1_000_000
        checked = validate_event(event, self._check_format, strict=self._strict)
        if self._trigger_names is not None and checked.name not in self._trigger_names:
            self._check_trigger_name(checked.name)
        return checked

    def _learn_user(self, user: User) -> User:
        # The cache maps a user to its checked form (plain strings), which is what is
        # queued: equal users then share one object, and a User holding str subclasses
        # that compares equal to a checked one is sent as that one.
        checked = check_user(user, self._check_format)
        if len(self._known_users) >= _KNOWN_USERS:
            self._known_users.clear()
        self._known_users[checked] = checked
        return checked

    def _event(
        self,
        name: str,
        user: User | None,
        dedup_id: str | None,
        args: Mapping[str, Any] | None,
        timestamp: int | str | None,
        stamp: bool,
        tracking: _Tracking,
    ) -> Event:
        if user is not None and tracking == _NO_TRACKING:
            return self._make_event(name, user, dedup_id, args, timestamp, stamp)
        event = Event(name, user, dedup_id or "", args, timestamp, *tracking)  # type: ignore[arg-type]
        if dedup_id is not None:
            check_dedup_id(dedup_id)
        return self._make_full_event(event, stamp)

    def track(
        self,
        name: str,
        user: User | None = None,
        *,
        dedup_id: str | None = None,
        args: Mapping[str, Any] | None = None,
        timestamp: int | str | None = None,
        metadata: Mapping[str, Any] | None = None,
        user_address: str | None = None,
        signature: str | None = None,
        signature_message: str | None = None,
        signature_public_key: str | None = None,
        account_chain_id: int | None = None,
        project_id: str | None = None,
    ) -> str:
        """Queue an event for delivery and return its ``dedup_id`` at once.

        Validates first (raising :class:`~aiofuul.ValidationError` before anything is
        queued), generates a unique ``dedup_id`` when none is given, and stamps the
        current time when ``timestamp`` (ms) is None, so a delayed batch keeps the real
        time. Never awaits, never blocks, never raises for a network problem: failures
        reach ``on_error``, the log and :meth:`stats`. Call it on the client's loop.

        ``metadata`` and the ``signature*`` / ``account_chain_id`` fields are those of a
        tracking event (``pageview``, ``connect_wallet``); every field left None is left
        out of the body. ``user`` may be None only for an event that names someone
        otherwise (``user_address``, or ``metadata={"tracking_id": ...}``).
        ``project_id`` names the event's project in its body (as the official SDK does);
        the ``?project_id=`` of every request is the client's.

        Example::

            fuul.track("deposit", user, dedup_id=f"dep-{tx_hash}", args={"chain_id": 1})
            fuul.track("connect_wallet", user, metadata={"tracking_id": tid})
        """
        if self._loop is None or self._closed or self._forked:
            self._check_usable()
        elif asyncio._get_running_loop() is not self._loop:
            self._bind()
        if (
            user is not None
            and metadata is None
            and user_address is None
            and signature is None
            and signature_message is None
            and signature_public_key is None
            and account_chain_id is None
            and project_id is None
        ):
            event = self._make_event(name, user, dedup_id, args, timestamp, True)
        else:
            tracking = (
                user_address,
                metadata,
                signature,
                signature_message,
                signature_public_key,
                account_chain_id,
                project_id,
            )
            event = self._event(name, user, dedup_id, args, timestamp, True, tracking)
        self._sender.enqueue(event)
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
        metadata: Mapping[str, Any] | None = None,
        user_address: str | None = None,
        signature: str | None = None,
        signature_message: str | None = None,
        signature_public_key: str | None = None,
        account_chain_id: int | None = None,
        project_id: str | None = None,
    ) -> str:
        """Like :meth:`track`, but when the queue is full wait for room instead of
        applying the ``queue_full`` policy."""
        self._check_usable()
        tracking = (
            user_address,
            metadata,
            signature,
            signature_message,
            signature_public_key,
            account_chain_id,
            project_id,
        )
        event = self._event(name, user, dedup_id, args, timestamp, True, tracking)
        await self._sender.wait_for_room()
        if self._closed:
            raise ClientStateError("this FuulClient is closed")
        self._sender.enqueue(event)
        return event.dedup_id

    def track_threadsafe(
        self,
        name: str,
        user: User | None = None,
        *,
        dedup_id: str | None = None,
        args: Mapping[str, Any] | None = None,
        timestamp: int | str | None = None,
        metadata: Mapping[str, Any] | None = None,
        user_address: str | None = None,
        signature: str | None = None,
        signature_message: str | None = None,
        signature_public_key: str | None = None,
        account_chain_id: int | None = None,
        project_id: str | None = None,
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
        tracking = (
            user_address,
            metadata,
            signature,
            signature_message,
            signature_public_key,
            account_chain_id,
            project_id,
        )
        event = self._event(name, user, dedup_id, args, timestamp, True, tracking)
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
        user: User | None = None,
        *,
        dedup_id: str | None = None,
        args: Mapping[str, Any] | None = None,
        timestamp: int | str | None = None,
        metadata: Mapping[str, Any] | None = None,
        user_address: str | None = None,
        signature: str | None = None,
        signature_message: str | None = None,
        signature_public_key: str | None = None,
        account_chain_id: int | None = None,
        project_id: str | None = None,
    ) -> SendResult:
        """``POST /v1/events`` now, with retries; returns when the server answered.

        ``duplicate=True`` in the result means the server already had this ``dedup_id``
        (409): not an error, the event exists. Raises :class:`~aiofuul.APIError`
        subclasses for refusals and :class:`~aiofuul.TransportError` when retries run out.
        The fields are those of :meth:`track`; ``project_id`` is also sent as
        ``?project_id=``, in place of the client's.
        """
        self._check_usable()
        tracking = (
            user_address,
            metadata,
            signature,
            signature_message,
            signature_public_key,
            account_chain_id,
            project_id,
        )
        event = self._event(name, user, dedup_id, args, timestamp, False, tracking)
        try:
            response = await self._single.call(
                self._transport,
                self.config.retry,
                body=encode_event(event),
                params=_project(project_id),
            )
        except PermissionDeniedError as exc:
            raise exc.for_scope(required_scope(event.name)) from None
        return SendResult(event.dedup_id, duplicate=response.action is Action.DUPLICATE)

    async def send_batch(
        self, events: Sequence[Event], *, project_id: str | None = None
    ) -> BatchResult:
        """``POST /v1/events/batch`` now: 1 to 100 events in one atomic request.

        Known dedup ids are skipped by the server, not refused: ``result.skipped``.
        """
        self._check_usable()
        checked = validate_batch(events, self._check_format, strict=self._strict)
        if self._trigger_names is not None:
            for event in checked:
                if event.name not in self._trigger_names:
                    self._check_trigger_name(event.name)
        try:
            response = await self._batch.call(
                self._transport,
                self.config.retry,
                body=encode_batch(checked),
                params=_project(project_id),
            )
        except PermissionDeniedError as exc:
            scopes = sorted({required_scope(event.name) for event in checked})
            raise exc.for_scope(" and ".join(scopes)) from None
        ingested = decode_ingested(response.body)
        if ingested is None or not 0 <= ingested <= len(checked):
            ingested = len(checked)
        return BatchResult(ingested=ingested, skipped=len(checked) - ingested)

    async def event_status(self, user: User, name: str, *, project_id: str | None = None) -> bool:
        """``GET /v1/events/status``: whether ANY event ``name`` exists for ``user``
        (not a given dedup id). Event names are case-sensitive."""
        self._check_usable()
        return await reads.event_status(
            self._status,
            self._transport,
            self.config.retry,
            user,
            name,
            check_format=self._check_format,
            project_id=project_id,
        )

    async def event_pipeline(
        self,
        event_id: str | None = None,
        *,
        dedup_id: str | None = None,
        event_name: str | None = None,
        project_id: str | None = None,
    ) -> EventPipeline | None:
        """``GET /v1/events/pipeline``: what became of one event (by ``event_id``, or by
        ``dedup_id`` and ``event_name``): the triggers it ran, with their ``status``, and
        the attributions, payouts and movements it produced. None when the server does not
        know the event (404), which can mean "not yet".

        Example::

            p = await fuul.event_pipeline(dedup_id="swap-123", event_name="swap")
            if p is not None:
                print(p.trigger_executions[0].status, len(p.attributions), len(p.payouts))
        """
        self._check_usable()
        query = reads.pipeline_query(event_id, dedup_id, event_name)
        return await reads.event_pipeline(
            self._pipeline, self._transport, self.config.retry, query, project_id
        )

    async def wait_for_pipeline(
        self,
        event_id: str | None = None,
        *,
        dedup_id: str | None = None,
        event_name: str | None = None,
        timeout: float = 60.0,
        interval: float = 3.0,
        project_id: str | None = None,
    ) -> EventPipeline | None:
        """Poll :meth:`event_pipeline` every ``interval`` seconds (Fuul suggests 2 to 5)
        until attributions or payouts appear or ``timeout`` seconds pass; returns the
        last answer, or None if the event was never found. Polls never exceed the
        pipeline endpoint's rate limit (its lane waits for a slot)."""
        self._check_usable()
        query = reads.pipeline_query(event_id, dedup_id, event_name)
        return await reads.wait_for_pipeline(
            self._pipeline,
            self._transport,
            self.config.retry,
            query,
            timeout=timeout,
            interval=interval,
            project_id=project_id,
        )

    async def conversions(self, *, project_id: str | None = None) -> list[Conversion]:
        """``GET /v1/conversions``: the project's conversions, each with the triggers
        whose names events must carry (case-sensitive)."""
        self._check_usable()
        return await reads.conversions(
            self._conversions, self._transport, self.config.retry, project_id
        )


#: The tracking-event fields, in Event's order after timestamp.
_Tracking = tuple[
    "str | None",
    "Mapping[str, Any] | None",
    "str | None",
    "str | None",
    "str | None",
    "int | None",
    "str | None",
]
_NO_TRACKING: _Tracking = (None, None, None, None, None, None, None)


def _project(project_id: str | None) -> dict[str, str] | None:
    return None if project_id is None else {"project_id": project_id}
