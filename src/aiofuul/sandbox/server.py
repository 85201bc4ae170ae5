"""The sandbox: a real HTTP server on loopback that behaves like the Fuul events API.

It stores what it is sent, answers with the API's statuses and bodies, enforces the
rate limits per key and per endpoint and the send scopes per event, and injects failures
on demand (see :class:`~aiofuul.sandbox.Faults`). It judges events by its own table of
the variants the vendor documents (:mod:`aiofuul.sandbox.documented`), not by the
client's :mod:`aiofuul.validation`: a client rule stricter than the docs shows up as a
client refusal of something the sandbox accepts.

Endpoints: ``POST events``, ``POST events/batch``, ``GET events/status``,
``GET events/pipeline`` (what became of one event) and ``GET conversions``; each takes
an optional ``?project_id=`` (recorded, as the official SDK sends it).

Example (any HTTP client will do; the sandbox only sees the wire)::

    async with Sandbox(limits=DEFAULT_LIMITS.scaled(1 / 60)) as sb:
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer k"}) as http:
            await http.post(sb.url + "events", data=encode_event(event))
        assert sb.stored_count(event.dedup_id) == 1
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

import msgspec
from aiohttp import hdrs, web

from ..limits import DEFAULT_LIMITS, Limits
from ..models import Event, required_scope
from .faults import Faults, _error_body, _garbage_body, _roll
from .parsing import (
    BadRequest,
    parse_batch,
    parse_event,
    parse_pipeline_query,
    parse_status_query,
)
from .store import EventStore, StoredEvent
from .throttle import Endpoint, RetryAfter, Throttle, retry_after_value

__all__ = ["SEND_SCOPES", "RecordedRequest", "RetryAfter", "Sandbox"]

_log = logging.getLogger("aiofuul.sandbox")

_API = "/api/v1/"
#: A key needs one of these scopes to send events (the read endpoints need none): a
#: trigger event needs ``send:trigger_event``, a tracking event ``send:tracking_event``,
#: and ``service_role`` may send both.
SEND_SCOPES = frozenset({"send:trigger_event", "send:tracking_event", "service_role"})
_SERVICE_ROLE = "service_role"
_ANY_SEND = "send:trigger_event or send:tracking_event"
_SENDS: frozenset[Endpoint] = frozenset({"single", "batch"})
_JSON = "application/json"
_MAX_BODY = 8 * 1024 * 1024
# How often a hung request looks whether its client gave up.
_HANG_POLL = 0.05
# How long stop() lets requests still being processed finish.
_SHUTDOWN_TIMEOUT = 1.0
# Stable ids for what the sandbox makes up (conversions, executions, payouts).
_ID_SPACE = uuid.UUID("6f1c3f0e-4b0e-4d5c-9a59-5a4e2f2a7c11")
_DEFAULT_TRIGGERS = ("trade", "deposit", "swap", "custom_conversion", "pageview", "connect_wallet")
_CONFIGURED_AT = "2026-01-01T00:00:00.000Z"

_encode = msgspec.json.Encoder().encode
_EMPTY = b"{}"
_UNAUTHORIZED = _encode({"message": "Unauthorized", "statusCode": 401})
_CONFLICT = _encode({"message": "Event with this dedup_id already exists", "statusCode": 409})
_TOO_LARGE = _encode(
    {"message": "request entity too large", "error": "Payload Too Large", "statusCode": 413}
)
_TOO_MANY = _encode({"message": "ThrottlerException: Too Many Requests", "statusCode": 429})
_EVENT_NOT_FOUND = _encode({"message": "Event not found", "statusCode": 404})
_CREATED_TRUE = _encode({"created": True})
_CREATED_FALSE = _encode({"created": False})


@dataclass(frozen=True)
class RecordedRequest:
    """One request the sandbox received.

    ``status`` is 0 when no response was sent (dropped or hung), ``at`` is
    ``time.monotonic()`` at arrival, ``events`` the number of events in the body (0 when
    it was not read), ``key_id`` a short sha256 prefix of the API key (never the key),
    ``project_id`` the ``?project_id=`` query parameter, and ``body`` the raw request body
    as received when the sandbox was made with ``record_bodies=True`` (None otherwise, and
    for a body over the size cap).
    """

    method: str
    path: str
    status: int
    at: float
    events: int = 0
    key_id: str | None = None
    project_id: str | None = None
    body: bytes | None = None


class _Exchange:
    """One request being answered, and what its record needs."""

    __slots__ = ("at", "body", "key_id", "request", "too_large")

    def __init__(self, request: web.Request, key_id: str | None) -> None:
        self.request = request
        self.at = time.monotonic()
        self.key_id = key_id
        self.body: bytes | None = None
        self.too_large = False

    async def read(self) -> bytes:
        """The body, read once; ``web.HTTPRequestEntityTooLarge`` past the size cap."""
        if self.too_large:
            # The stream was left half read: reading again would return its tail.
            raise web.HTTPRequestEntityTooLarge(_MAX_BODY)
        if self.body is None:
            try:
                self.body = await self.request.read()
            except web.HTTPRequestEntityTooLarge:
                self.too_large = True
                raise
        return self.body

    async def body_if_any(self) -> bytes | None:
        """The body, or None when it is over the size cap."""
        with contextlib.suppress(web.HTTPRequestEntityTooLarge):
            return await self.read()
        return None


def _bearer(header: str) -> str | None:
    scheme, _, key = header.partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


def _key_id(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _scopes(scopes: Iterable[str]) -> frozenset[str]:
    # A lone scope string would otherwise become a set of its characters.
    return frozenset((scopes,) if isinstance(scopes, str) else scopes)


def _bad_request(messages: list[str]) -> bytes:
    return _encode({"message": messages, "error": "Bad Request", "statusCode": 400})


def _forbidden(scope: str) -> bytes:
    message = f"Forbidden: this API key lacks the {scope} scope"
    return _encode({"message": message, "statusCode": 403})


def _missing_scope(scopes: frozenset[str] | None, events: list[Event]) -> str | None:
    """The first scope the events need that the key lacks (every event's is needed)."""
    if scopes is None or _SERVICE_ROLE in scopes:
        return None
    for event in events:
        needed = required_scope(event.name)
        if needed not in scopes:
            return needed
    return None


def _made_up_id(*parts: str) -> str:
    """A uuid that is the same every time for the same parts (stable across polls)."""
    return str(uuid.uuid5(_ID_SPACE, "/".join(parts)))


def _iso(wall: float) -> str:
    moment = datetime.fromtimestamp(wall, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _default_conversions() -> list[dict[str, Any]]:
    """One conversion whose triggers are the event names the docs use."""
    triggers = [
        {
            "id": _made_up_id("trigger", name),
            "name": name,
            "description": f"Fires on {name} events (sandbox)",
            "type": "off-chain-event",
        }
        for name in _DEFAULT_TRIGGERS
    ]
    conversion = {
        "id": _made_up_id("conversion", "sandbox"),
        "external_id": 1,
        "name": "Sandbox conversion",
        "slug": "sandbox-conversion",
        "triggers": triggers,
        "payout_terms": [],
        "created_at": _CONFIGURED_AT,
        "updated_at": _CONFIGURED_AT,
    }
    return [conversion]


def _who(event: Event) -> str | None:
    """Whom the event is attributed to: the user, the deprecated address, or the tracking id."""
    if event.user is not None:
        return event.user.identifier
    if event.user_address is not None:
        return event.user_address
    tracking = (event.metadata or {}).get("tracking_id")
    return tracking if isinstance(tracking, str) else None


def _drop(request: web.Request) -> web.Response:
    """Close the connection without answering: the client sees it reset or disconnected.

    The response returned is never written (aiohttp finds the transport closing and
    treats it as a client disconnect, without logging a traceback)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=500)


class Sandbox:
    """A Fuul API on ``127.0.0.1`` (a free port by default), for tests and demos.

    ``keys`` maps each accepted API key to its scopes (``None``: any non-empty key is
    accepted with every scope); ``limits`` are enforced per key and per endpoint;
    ``retry_after`` chooses the form of ``Retry-After`` on a 429; ``faults`` injects
    failures; ``check_format`` turns the identifier format checks on or off;
    ``record_bodies`` keeps each request's raw body in :attr:`requests` (off by default:
    load tests send hundreds of thousands of events); ``conversions`` is what
    ``GET conversions`` answers (a list of JSON objects; default one "Sandbox conversion"
    whose triggers are ``trade``, ``deposit``, ``swap``, ``custom_conversion``,
    ``pageview`` and ``connect_wallet``).

    ``GET events/pipeline`` reports an event as ``"pending"`` until
    :attr:`pipeline_delay` seconds after it was stored, then as :attr:`pipeline_status`
    (``"success"``: with one attribution and one payout).

    Use it as ``async with Sandbox() as sb:`` or with :meth:`start` and :meth:`stop`.
    ``sb.faults``, ``sb.limits``, ``sb.retry_after``, ``sb.check_format``,
    ``sb.conversions``, ``sb.pipeline_status`` and ``sb.pipeline_delay`` may be changed
    while it runs.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        keys: Mapping[str, Iterable[str]] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        retry_after: RetryAfter = "seconds",
        faults: Faults | None = None,
        check_format: bool = True,
        record_bodies: bool = False,
        conversions: Sequence[Mapping[str, Any]] | None = None,
    ):
        self.host = host
        self.port = port
        self.retry_after: RetryAfter = retry_after
        self.faults = faults if faults is not None else Faults()
        self.check_format = check_format
        self.record_bodies = record_bodies
        #: What ``GET conversions`` answers, served as JSON as is.
        self.conversions: list[dict[str, Any]] = (
            _default_conversions() if conversions is None else [dict(c) for c in conversions]
        )
        #: The status a stored event's trigger execution reaches once processed.
        self.pipeline_status: str = "success"
        #: Seconds after storing during which an event's pipeline is ``"pending"``.
        self.pipeline_delay: float = 0.0
        #: Every request received, in arrival order.
        self.requests: list[RecordedRequest] = []
        self._keys = None if keys is None else {k: _scopes(v) for k, v in keys.items()}
        self._throttle = Throttle(limits)
        self._store = EventStore()
        self._rng = random.Random()
        self._rng_for: tuple[Faults, int | None] | None = None
        self._garbage_html = True
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        """Start serving; :attr:`url` is known from then on."""
        if self._runner is not None:
            return
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_post(_API + "events", self._post_event)
        app.router.add_post(_API + "events/batch", self._post_batch)
        app.router.add_get(_API + "events/status", self._get_status)
        app.router.add_get(_API + "events/pipeline", self._get_pipeline)
        app.router.add_get(_API + "conversions", self._get_conversions)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = int(runner.addresses[0][1])
        self._stopping = asyncio.Event()
        self._runner = runner
        _log.info("sandbox listening on %s", self.url)

    async def stop(self) -> None:
        """Stop serving. Hung requests are let go at once; requests still being processed
        get a moment to finish."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping.set()
        await runner.cleanup()
        _log.info("sandbox stopped")

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """The base URL a client uses: ``http://127.0.0.1:PORT/api/v1/``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{_API}"

    # -- state -------------------------------------------------------------------
    @property
    def limits(self) -> Limits:
        """The enforced limits; setting new ones forgets what was counted so far."""
        return self._throttle.limits

    @limits.setter
    def limits(self, limits: Limits) -> None:
        self._throttle = Throttle(limits)

    @property
    def events(self) -> list[Event]:
        """The stored events, in arrival order."""
        return self._store.events

    def reset(self) -> None:
        """Forget the stored events, the recorded requests and the rate counts (and
        restart the faults' random sequence from its seed)."""
        self._store.clear()
        self.requests.clear()
        self._throttle.clear()
        self._rng_for = None
        self._garbage_html = True

    def stored_ids(self) -> list[str]:
        """The dedup ids of the stored events, in arrival order."""
        return self._store.stored_ids()

    def stored_count(self, dedup_id: str) -> int:
        """How many times this dedup id was stored: 0 or 1 (assert exactly-once with it)."""
        return self._store.stored_count(dedup_id)

    def seen_count(self, dedup_id: str) -> int:
        """How many valid requests carried this dedup id, retries and duplicates included."""
        return self._store.seen_count(dedup_id)

    def event_id(self, dedup_id: str) -> str | None:
        """The sandbox's id of the stored event with this dedup id (what
        ``GET events/pipeline?event_id=`` takes), or None when none is stored."""
        return self._store.event_id(dedup_id)

    def count(self, path: str | None = None, status: int | None = None) -> int:
        """How many recorded requests went to ``path`` (``"/api/v1/events/batch"``, or
        relative to the base URL: ``"events/batch"``) and got ``status``."""
        if path is not None and not path.startswith("/"):
            path = _API + path
        return sum(
            1
            for r in self.requests
            if (path is None or r.path == path) and (status is None or r.status == status)
        )

    # -- handlers ------------------------------------------------------------------
    async def _post_event(self, request: web.Request) -> web.Response:
        return await self._serve(request, "single")

    async def _post_batch(self, request: web.Request) -> web.Response:
        return await self._serve(request, "batch")

    async def _get_status(self, request: web.Request) -> web.Response:
        return await self._serve(request, "status")

    async def _get_pipeline(self, request: web.Request) -> web.Response:
        return await self._serve(request, "pipeline")

    async def _get_conversions(self, request: web.Request) -> web.Response:
        return await self._serve(request, "conversions")

    async def _not_found(self, request: web.Request) -> web.Response:
        message = f"Cannot {request.method} {request.path}"
        body = _encode({"message": message, "error": "Not Found", "statusCode": 404})
        return await self._answer(_Exchange(request, None), 404, body)

    async def _record(self, ex: _Exchange, status: int, events: int = 0) -> None:
        body = await ex.body_if_any() if self.record_bodies else None
        request = ex.request
        project_id = request.query.get("project_id")
        self.requests.append(
            RecordedRequest(
                request.method, request.path, status, ex.at, events, ex.key_id, project_id, body
            )
        )

    async def _answer(
        self, ex: _Exchange, status: int, body: bytes, events: int = 0, ctype: str = _JSON
    ) -> web.Response:
        await self._record(ex, status, events)
        return web.Response(status=status, body=body, content_type=ctype)

    async def _serve(self, request: web.Request, endpoint: Endpoint) -> web.Response:
        # Order: auth -> send scope -> rate limit -> faults -> parse/validate -> the
        # events' scopes -> store -> response faults.
        key = _bearer(request.headers.get(hdrs.AUTHORIZATION, ""))
        key_id = None if key is None else _key_id(key)
        ex = _Exchange(request, key_id)
        if key is None or key_id is None or (self._keys is not None and key not in self._keys):
            return await self._answer(ex, 401, _UNAUTHORIZED)
        scopes = None if self._keys is None else self._keys[key]
        if endpoint in _SENDS and scopes is not None and scopes.isdisjoint(SEND_SCOPES):
            # No send scope at all: refused before the body is read, whatever it holds.
            return await self._answer(ex, 403, _forbidden(_ANY_SEND))
        wait = self._throttle.admit(key_id, endpoint, ex.at)
        if wait is not None:
            response = await self._answer(ex, 429, _TOO_MANY)
            retry_after = retry_after_value(self.retry_after, wait)
            if retry_after is not None:
                response.headers[hdrs.RETRY_AFTER] = retry_after
            return response
        return await self._with_faults(ex, endpoint, scopes)

    async def _with_faults(
        self, ex: _Exchange, endpoint: Endpoint, scopes: frozenset[str] | None
    ) -> web.Response:
        """Process the request, with the faults the dice choose around it."""
        faults, rng = self.faults, self._random()
        if faults.latency > 0:
            await self._pause(faults.latency)
        if _roll(rng, faults.hang_rate):
            await self._record(ex, 0)
            await self._hang(ex.request)
            return _drop(ex.request)
        drop = _roll(rng, faults.drop_rate)
        drop_after_store = drop and _roll(rng, faults.drop_after_store)
        if drop and not drop_after_store:
            await self._record(ex, 0)
            return _drop(ex.request)
        if faults.error_statuses and _roll(rng, faults.error_rate):
            status = rng.choice(faults.error_statuses)
            body, ctype = _error_body(rng, status)
            return await self._answer(ex, status, body, ctype=ctype)
        # "2xx garbage, nothing stored" must be decided before the store is touched; the
        # garbage that follows a store is rolled after, as it always was, so seeded runs
        # repeat the same faults as before this option existed.
        lost = not (drop_after_store or faults.garbage_stores) and _roll(rng, faults.garbage_rate)
        status, body, events = await self._process(ex, endpoint, scopes, store=not lost)
        if drop_after_store:
            await self._record(ex, 0, events)
            return _drop(ex.request)
        ok = 200 <= status < 300
        if ok and (lost or (faults.garbage_stores and _roll(rng, faults.garbage_rate))):
            body, ctype = _garbage_body(body, self._garbage_html)
            self._garbage_html = not self._garbage_html
            return await self._answer(ex, status, body, events, ctype)
        return await self._answer(ex, status, body, events)

    async def _process(
        self, ex: _Exchange, endpoint: Endpoint, scopes: frozenset[str] | None, store: bool
    ) -> tuple[int, bytes, int]:
        """Parse, validate, check the scopes and (when ``store``) store:
        ``(status, body, events in the body)``."""
        events: list[Event]
        try:
            if endpoint not in _SENDS:
                return self._read_endpoint(ex.request, endpoint)
            raw = await ex.read()
            if endpoint == "single":
                events = [parse_event(raw, self.check_format)]
            else:
                events = parse_batch(raw, self.check_format)
        except BadRequest as exc:
            return 400, _bad_request(exc.messages), exc.events
        except web.HTTPRequestEntityTooLarge:
            return 413, _TOO_LARGE, 0
        missing = _missing_scope(scopes, events)
        if missing is not None:
            return 403, _forbidden(missing), len(events)
        if not store:
            if endpoint == "single":
                return 201, _EMPTY, 1
            unique = len({event.dedup_id for event in events})
            return 201, _encode({"ingested_events": unique}), len(events)
        return self._store_events(endpoint, events)

    def _store_events(self, endpoint: Endpoint, events: list[Event]) -> tuple[int, bytes, int]:
        store = self._store
        store.saw(event.dedup_id for event in events)
        if endpoint == "single":
            return (201, _EMPTY, 1) if store.add(events[0]) else (409, _CONFLICT, 1)
        return 201, _encode({"ingested_events": store.add_all(events)}), len(events)

    def _read_endpoint(self, request: web.Request, endpoint: Endpoint) -> tuple[int, bytes, int]:
        """The GET endpoints: ``(status, body, 0)``, or :class:`BadRequest`."""
        if endpoint == "status":
            triple = parse_status_query(request.query)
            return 200, _CREATED_TRUE if self._store.created(*triple) else _CREATED_FALSE, 0
        if endpoint == "conversions":
            return 200, _encode(self.conversions), 0
        event_id, dedup_id, name = parse_pipeline_query(request.query)
        record: StoredEvent | None
        if event_id is not None:
            record = self._store.lookup_id(event_id)
        else:
            assert dedup_id is not None
            record = self._store.lookup(dedup_id)
            if record is not None and record.event.name != name:
                record = None
        if record is None:
            return 404, _EVENT_NOT_FOUND, 0
        return 200, self._pipeline_body(record, request.query.get("project_id")), 0

    # -- the pipeline ------------------------------------------------------------------
    def _pipeline_body(self, record: StoredEvent, project_id: str | None) -> bytes:
        """What became of a stored event, as of now (see :attr:`pipeline_delay`)."""
        event = record.event
        delay = self.pipeline_delay
        done = time.monotonic() - record.at >= delay
        status = self.pipeline_status if done else "pending"
        success = done and status == "success"
        details = None
        if done and not success:
            details = f"sandbox pipeline_status is {status!r}: nothing was attributed"
        execution = {
            "id": _made_up_id(record.id, "execution"),
            "trigger_name": event.name,
            "status": status,
            "status_details": details,
            "created_at": _iso(record.wall),
            "sandbox": True,  # a field no client knows: it must be tolerated
        }
        done_at = _iso(record.wall + delay)
        payout = {
            "id": _made_up_id(record.id, "payout"),
            "amount": "0",
            "currency": "POINT",
            "status": "pending",
            "created_at": done_at,
        }
        answer = {
            "event": {**msgspec.to_builtins(event), "id": record.id},
            "trigger_executions": [execution],
            "attributions": [self._attribution(record, done_at)] if success else [],
            "payouts": [payout] if success else [],
            "movements": [],
            "project_id": project_id,  # another field no client knows
        }
        return _encode(answer)

    def _attribution(self, record: StoredEvent, created_at: str) -> dict[str, Any]:
        """The attribution of a processed event to the conversion one of whose triggers
        has its name (none: the conversion fields are null)."""
        conversion: Mapping[str, Any] = {}
        for candidate in self.conversions:
            triggers = candidate.get("triggers")
            if isinstance(triggers, list) and any(
                isinstance(t, Mapping) and t.get("name") == record.event.name for t in triggers
            ):
                conversion = candidate
                break
        return {
            "id": _made_up_id(record.id, "attribution"),
            "conversion_id": conversion.get("id"),
            "conversion_name": conversion.get("name"),
            "user_identifier": _who(record.event),
            "attributor": None,
            "created_at": created_at,
        }

    # -- faults --------------------------------------------------------------------
    def _random(self) -> random.Random:
        """The faults' random source, reseeded when the faults or their seed change."""
        faults = self.faults
        if (
            self._rng_for is None
            or self._rng_for[0] is not faults
            or self._rng_for[1] != faults.seed
        ):
            self._rng = random.Random(faults.seed)
            self._rng_for = (faults, faults.seed)
        return self._rng

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the sandbox stops meanwhile."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _hang(self, request: web.Request) -> None:
        """Wait until the client closes the connection or the sandbox stops."""
        while not self._stopping.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            await self._pause(_HANG_POLL)
