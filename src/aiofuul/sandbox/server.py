"""The sandbox: a real HTTP server on loopback that behaves like the Fuul events API.

It stores what it is sent, answers with the API's statuses and bodies, enforces the
rate limits per key and per endpoint and the send scopes per event, and injects failures
on demand (see :class:`~aiofuul.sandbox.Faults`). It judges events by its own table of
the variants the vendor documents (:mod:`aiofuul.sandbox.documented`), not by the
client's :mod:`aiofuul.wire.validation`: a client rule stricter than the docs shows up as a
client refusal of something the sandbox accepts.

Endpoints: ``POST events``, ``POST events/batch``, ``GET events/status``,
``GET events/pipeline`` (what became of one event) and ``GET conversions``; each takes
an optional ``?project_id=`` (recorded, as the official SDK sends it). This module is
the server and what every request goes through (key, scopes, rate limit, faults); the
endpoints' own answers are in :mod:`~aiofuul.sandbox.sends` and
:mod:`~aiofuul.sandbox.reads`. The reads beyond events (referrers, codes, affiliates,
leaderboards, payouts, claim checks, audiences, the affiliate portal) are the table of
:mod:`~aiofuul.sandbox.api_reads`, answered from :attr:`Sandbox.state`; the writes
(referrers, codes, audience entries) are that of :mod:`~aiofuul.sandbox.api_writes`,
applied to it.

Example (any HTTP client will do; the sandbox only sees the wire)::

    async with Sandbox(limits=DEFAULT_LIMITS.scaled(1 / 60)) as sb:
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer k"}) as http:
            await http.post(sb.url + "events", data=encode_event(event))
        assert sb.stored_count(event.dedup_id) == 1
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import msgspec
from aiohttp import hdrs, web

from ..engine.limits import DEFAULT_LIMITS, LaneName, Limits
from ..wire.models import Event
from .api_reads import API_LANES, ROUTES, answer_route
from .api_writes import WRITES, answer_write
from .exchange import MAX_BODY, Exchange, RecordedRequest, drop
from .faults import Dice, Faults, error_body, roll
from .parsing import BadRequest
from .reads import answer_conversions, answer_pipeline, answer_status, default_conversions
from .sends import NO_SEND_SCOPE, SEND_LANES, TOO_LARGE, answer_send, may_send
from .state import FuulState
from .store import EventStore
from .throttle import RetryAfter, Throttle, retry_after_value
from .webhooks import WebhookRetry, WebhookSender

__all__ = ["Sandbox"]

_log = logging.getLogger("aiofuul.sandbox")

_API = "/api/v1/"
_JSON = "application/json"
# How often a hung request looks whether its client gave up.
_HANG_POLL = 0.05
# How long stop() lets requests still being processed finish.
_SHUTDOWN_TIMEOUT = 1.0
# What each lane answers: (method, path under the base URL, lane).
_ROUTES: tuple[tuple[str, str, LaneName], ...] = (
    ("POST", "events", "single"),
    ("POST", "events/batch", "batch"),
    ("GET", "events/status", "status"),
    ("GET", "events/pipeline", "pipeline"),
    ("GET", "conversions", "conversions"),
)
_UNAUTHORIZED = msgspec.json.encode({"message": "Unauthorized", "statusCode": 401})
_TOO_MANY = msgspec.json.encode(
    {"message": "ThrottlerException: Too Many Requests", "statusCode": 429}
)


def _bearer(header: str) -> str | None:
    scheme, _, key = header.partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


def _key_id(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _scopes(scopes: Iterable[str]) -> frozenset[str]:
    # A lone scope string would otherwise become a set of its characters.
    return frozenset((scopes,) if isinstance(scopes, str) else scopes)


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
    (``"success"``: with one attribution, and the payouts :attr:`state` made of it).
    Given ``webhook_url``, it POSTs a ``reward.earned`` there for each payout the state
    makes, retried per ``webhook_retry`` (see :mod:`~aiofuul.sandbox.webhooks`;
    :attr:`webhooks` tells what was sent).

    :attr:`state` (a :class:`~aiofuul.sandbox.state.FuulState`) is the small Fuul the reads
    beyond events answer from: set referrers, codes, affiliates and audiences there;
    payouts are made from the stored events.

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
        webhook_url: str | None = None,
        webhook_retry: WebhookRetry | None = None,
    ):
        self.host = host
        self.port = port
        self.retry_after: RetryAfter = retry_after
        self.faults = faults if faults is not None else Faults()
        self.check_format = check_format
        self.record_bodies = record_bodies
        #: What ``GET conversions`` answers, served as JSON as is.
        self.conversions: list[dict[str, Any]] = (
            default_conversions() if conversions is None else [dict(c) for c in conversions]
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
        #: Referrers, codes, affiliates, payouts...: what the reads beyond events serve.
        self.state = FuulState(
            self._store,
            lambda: self.conversions,
            lambda: (self.pipeline_status, self.pipeline_delay),
        )
        self._dice = Dice()
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        #: Who POSTs the webhooks (None without ``webhook_url``): its attempts and counts.
        self.webhooks = (
            None if webhook_url is None else WebhookSender(webhook_url, webhook_retry, self.state)
        )

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        """Start serving; :attr:`url` is known from then on."""
        if self._runner is not None:
            return
        app = web.Application(client_max_size=MAX_BODY)
        for method, path, lane in _ROUTES:
            app.router.add_route(method, _API + path, functools.partial(self._serve, lane=lane))
        for route in ROUTES:
            serve = functools.partial(self._serve, lane=route.lane)
            app.router.add_route("GET", _API + route.path, serve)
        for write in WRITES:
            serve = functools.partial(self._serve, lane=write.lane)
            app.router.add_route(write.method, _API + write.path, serve)
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
        if self.webhooks is not None:
            self.webhooks.start()
        _log.info("sandbox listening on %s", self.url)

    async def stop(self) -> None:
        """Stop serving. Hung requests are let go at once; requests still being processed
        get a moment to finish."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping.set()
        await runner.cleanup()
        if self.webhooks is not None:
            await self.webhooks.close()
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
        self.state.clear()
        self.requests.clear()
        self._throttle.clear()
        self._dice.reset()

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
    async def _not_found(self, request: web.Request) -> web.Response:
        message = f"Cannot {request.method} {request.path}"
        body = msgspec.json.encode({"message": message, "error": "Not Found", "statusCode": 404})
        return await self._answer(Exchange(request, None), 404, body)

    async def _record(self, ex: Exchange, status: int, events: int = 0) -> None:
        self.requests.append(await ex.record(status, events, self.record_bodies))

    async def _answer(
        self, ex: Exchange, status: int, body: bytes, events: int = 0, ctype: str = _JSON
    ) -> web.Response:
        await self._record(ex, status, events)
        return web.Response(status=status, body=body, content_type=ctype)

    async def _serve(self, request: web.Request, lane: LaneName) -> web.Response:
        # Order: auth -> send scope -> rate limit -> faults -> parse/validate -> the
        # events' scopes -> store -> response faults.
        key = _bearer(request.headers.get(hdrs.AUTHORIZATION, ""))
        key_id = None if key is None else _key_id(key)
        ex = Exchange(request, key_id)
        if key is None or key_id is None or (self._keys is not None and key not in self._keys):
            return await self._answer(ex, 401, _UNAUTHORIZED)
        scopes = None if self._keys is None else self._keys[key]
        if lane in SEND_LANES and not may_send(scopes):
            # No send scope at all: refused before the body is read, whatever it holds.
            return await self._answer(ex, 403, NO_SEND_SCOPE)
        wait = self._throttle.admit(key_id, lane, ex.at)
        if wait is not None:
            response = await self._answer(ex, 429, _TOO_MANY)
            retry_after = retry_after_value(self.retry_after, wait)
            if retry_after is not None:
                response.headers[hdrs.RETRY_AFTER] = retry_after
            return response
        return await self._with_faults(ex, lane, scopes)

    async def _with_faults(
        self, ex: Exchange, lane: LaneName, scopes: frozenset[str] | None
    ) -> web.Response:
        """Process the request, with the faults the dice choose around it."""
        faults = self.faults
        rng = self._dice.rng(faults)
        if faults.latency > 0:
            await self._pause(faults.latency)
        if roll(rng, faults.hang_rate):
            await self._record(ex, 0)
            await self._hang(ex.request)
            return drop(ex.request)
        dropped = roll(rng, faults.drop_rate)
        drop_after_store = dropped and roll(rng, faults.drop_after_store)
        if dropped and not drop_after_store:
            await self._record(ex, 0)
            return drop(ex.request)
        if faults.error_statuses and roll(rng, faults.error_rate):
            status = rng.choice(faults.error_statuses)
            body, ctype = error_body(rng, status)
            return await self._answer(ex, status, body, ctype=ctype)
        # "2xx garbage, nothing stored" must be decided before the store is touched; the
        # garbage that follows a store is rolled after, as it always was, so seeded runs
        # repeat the same faults as before this option existed.
        lost = not (drop_after_store or faults.garbage_stores) and roll(rng, faults.garbage_rate)
        status, body, events = await self._process(ex, lane, scopes, store=not lost)
        if drop_after_store:
            await self._record(ex, 0, events)
            return drop(ex.request)
        ok = 200 <= status < 300
        if ok and (lost or (faults.garbage_stores and roll(rng, faults.garbage_rate))):
            body, ctype = self._dice.garbage_body(body)
            return await self._answer(ex, status, body, events, ctype)
        return await self._answer(ex, status, body, events)

    async def _process(
        self, ex: Exchange, lane: LaneName, scopes: frozenset[str] | None, store: bool
    ) -> tuple[int, bytes, int]:
        """Parse, validate, check the scopes and (when ``store``) store:
        ``(status, body, events in the body)``."""
        try:
            if lane in SEND_LANES:
                body = await ex.read()
                into = self._store if store else None
                before = len(self._store.events)
                answer = answer_send(lane, body, scopes, self.check_format, into)
                if self.webhooks is not None and len(self._store.events) > before:
                    self.webhooks.nudge()  # their payouts, and webhooks, soon: not in this request
                return answer
            if lane in API_LANES and ex.request.method != "GET":
                return (*await self._answer_write(ex, scopes), 0)
            return (*self._answer_read(lane, ex.request, scopes), 0)
        except BadRequest as exc:
            return 400, exc.body(), exc.events
        except web.HTTPRequestEntityTooLarge:
            return 413, TOO_LARGE, 0

    async def _answer_write(self, ex: Exchange, scopes: frozenset[str] | None) -> tuple[int, bytes]:
        request = ex.request
        resource = request.match_info.route.resource
        path = "" if resource is None else resource.canonical.removeprefix(_API)
        route = next(w for w in WRITES if w.path == path and w.method == request.method)
        body = await ex.read()
        return answer_write(route, self.state, request.query, request.match_info, body, scopes)

    def _answer_read(
        self, lane: LaneName, request: web.Request, scopes: frozenset[str] | None
    ) -> tuple[int, bytes]:
        query = request.query
        if lane in API_LANES:
            resource = request.match_info.route.resource
            path = "" if resource is None else resource.canonical.removeprefix(_API)
            route = next(r for r in ROUTES if r.path == path)
            return answer_route(route, self.state, query, request.match_info, scopes)
        if lane == "status":
            return answer_status(self._store, query)
        if lane == "conversions":
            return answer_conversions(self.conversions)
        return answer_pipeline(
            self._store, query, self.conversions, self.pipeline_status, self.pipeline_delay,
            self.state.payouts_of_event,
        )  # fmt: skip

    # -- faults --------------------------------------------------------------------
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
