"""The sandbox: a real HTTP server on loopback that behaves like the Fuul events API.

It stores what it is sent, answers with the API's statuses and bodies, enforces the
rate limits per key and per endpoint, and injects failures on demand (see
:class:`~aiofuul.sandbox.Faults`). The validation it runs is :mod:`aiofuul.validation`,
the very code the client runs.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType

import msgspec
from aiohttp import hdrs, web

from ..limits import DEFAULT_LIMITS, Limits
from ..models import Event
from .faults import Faults, _error_body, _garbage_body, _roll
from .parsing import BadRequest, parse_batch, parse_event, parse_status_query
from .store import EventStore
from .throttle import Endpoint, RetryAfter, Throttle, retry_after_value

__all__ = ["SEND_SCOPES", "RecordedRequest", "RetryAfter", "Sandbox"]

_log = logging.getLogger("aiofuul.sandbox")

_API = "/api/v1/"
#: A key needs one of these scopes to send events (the status query needs none).
SEND_SCOPES = frozenset({"send:trigger_event", "send:tracking_event", "service_role"})
_JSON = "application/json"
_MAX_BODY = 8 * 1024 * 1024
# How often a hung request looks whether its client gave up.
_HANG_POLL = 0.05
# How long stop() lets requests still being processed finish.
_SHUTDOWN_TIMEOUT = 1.0

_encode = msgspec.json.Encoder().encode
_EMPTY = b"{}"
_UNAUTHORIZED = _encode({"message": "Unauthorized", "statusCode": 401})
_FORBIDDEN = _encode({"message": "Forbidden: missing SendTrackingEvent scope", "statusCode": 403})
_CONFLICT = _encode({"message": "Event with this dedup_id already exists", "statusCode": 409})
_TOO_MANY = _encode({"message": "ThrottlerException: Too Many Requests", "statusCode": 429})
_CREATED_TRUE = _encode({"created": True})
_CREATED_FALSE = _encode({"created": False})


@dataclass(frozen=True)
class RecordedRequest:
    """One request the sandbox received.

    ``status`` is 0 when no response was sent (dropped or hung), ``at`` is
    ``time.monotonic()`` at arrival, ``events`` the number of events in the body (0 when
    it was not read), ``key_id`` a short sha256 prefix of the API key (never the key).
    """

    method: str
    path: str
    status: int
    at: float
    events: int = 0
    key_id: str | None = None


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
    failures; ``check_format`` turns the identifier format checks on or off.

    Use it as ``async with Sandbox() as sb:`` or with :meth:`start` and :meth:`stop`.
    ``sb.faults``, ``sb.limits``, ``sb.retry_after`` and ``sb.check_format`` may be
    changed while it runs.
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
    ):
        self.host = host
        self.port = port
        self.retry_after: RetryAfter = retry_after
        self.faults = faults if faults is not None else Faults()
        self.check_format = check_format
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

    async def _not_found(self, request: web.Request) -> web.Response:
        self._record(request, 404, time.monotonic(), 0, None)
        message = f"Cannot {request.method} {request.path}"
        body = _encode({"message": message, "error": "Not Found", "statusCode": 404})
        return web.Response(status=404, body=body, content_type=_JSON)

    def _record(
        self, request: web.Request, status: int, at: float, events: int, key_id: str | None
    ) -> None:
        self.requests.append(
            RecordedRequest(request.method, request.path, status, at, events, key_id)
        )

    async def _serve(self, request: web.Request, endpoint: Endpoint) -> web.Response:
        # Order: auth -> rate limit -> faults -> parse/validate -> store -> response faults.
        at = time.monotonic()
        key = _bearer(request.headers.get(hdrs.AUTHORIZATION, ""))
        key_id = None if key is None else _key_id(key)

        def answer(status: int, body: bytes, events: int = 0, ctype: str = _JSON) -> web.Response:
            self._record(request, status, at, events, key_id)
            return web.Response(status=status, body=body, content_type=ctype)

        if key is None or key_id is None or (self._keys is not None and key not in self._keys):
            return answer(401, _UNAUTHORIZED)
        scopes = None if self._keys is None else self._keys[key]
        if endpoint != "status" and scopes is not None and scopes.isdisjoint(SEND_SCOPES):
            return answer(403, _FORBIDDEN)
        wait = self._throttle.admit(key_id, endpoint, at)
        if wait is not None:
            response = answer(429, _TOO_MANY)
            retry_after = retry_after_value(self.retry_after, wait)
            if retry_after is not None:
                response.headers[hdrs.RETRY_AFTER] = retry_after
            return response

        faults, rng = self.faults, self._random()
        if faults.latency > 0:
            await self._pause(faults.latency)
        if _roll(rng, faults.hang_rate):
            self._record(request, 0, at, 0, key_id)
            await self._hang(request)
            return _drop(request)
        drop = _roll(rng, faults.drop_rate)
        drop_after_store = drop and _roll(rng, faults.drop_after_store)
        if drop and not drop_after_store:
            self._record(request, 0, at, 0, key_id)
            return _drop(request)
        if faults.error_statuses and _roll(rng, faults.error_rate):
            status = rng.choice(faults.error_statuses)
            body, ctype = _error_body(rng, status)
            return answer(status, body, ctype=ctype)

        status, body, events = await self._process(request, endpoint)
        if drop_after_store:
            self._record(request, 0, at, events, key_id)
            return _drop(request)
        if 200 <= status < 300 and _roll(rng, faults.garbage_rate):
            body, ctype = _garbage_body(body, self._garbage_html)
            self._garbage_html = not self._garbage_html
            return answer(status, body, events, ctype)
        return answer(status, body, events)

    async def _process(self, request: web.Request, endpoint: Endpoint) -> tuple[int, bytes, int]:
        """Parse, validate and store: ``(status, body, events in the body)``."""
        store = self._store
        try:
            if endpoint == "status":
                triple = parse_status_query(request.query)
                return 200, _CREATED_TRUE if store.created(*triple) else _CREATED_FALSE, 0
            raw = await request.read()
            if endpoint == "single":
                event = parse_event(raw, self.check_format)
                store.saw((event.dedup_id,))
                return (201, _EMPTY, 1) if store.add(event) else (409, _CONFLICT, 1)
            events = parse_batch(raw, self.check_format)
        except BadRequest as exc:
            return 400, _bad_request(exc.messages), exc.events
        store.saw(event.dedup_id for event in events)
        ingested = store.add_all(events)
        return 201, _encode({"ingested_events": ingested}), len(events)

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
