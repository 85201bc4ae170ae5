"""One request, what its answer means, and the one retry loop of the package.

:func:`judge` is the one table from an answer (or a failure to get one) to an
:data:`Outcome`; :func:`deliver` sends one request in a slot the caller holds and
judges it; :func:`call` is the retry loop of every awaited call (``send_event``,
``send_batch``, the read endpoints, the bulk import). The background sender uses
:func:`deliver` and applies each outcome to its queue itself.

A 2xx is proof only when its body is the API's answer (or empty, which API-NOTES
allows): an HTML page, a truncated JSON or a body of the wrong shape behind a 2xx (a
proxy, a captive portal, a cut connection) is retried like a transport error, with the
same dedup ids, which the server skips if it did store them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from ..config import RetryPolicy
from ..errors import (
    AmbiguousWriteError,
    APIError,
    BadRequestError,
    ConnectError,
    FuulError,
    RateLimitError,
    TransportError,
)
from ..wire.models import DECODE_ERRORS, decode_ingested
from ..wire.transport import Response, Transport
from .lanes import Lane

__all__ = [
    "Delivered",
    "Duplicate",
    "Outcome",
    "RateLimited",
    "Rejected",
    "Retry",
    "Stopped",
    "accept_batch",
    "accept_event",
    "call",
    "deliver",
    "judge",
    "unsent",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Delivered(Generic[T]):
    """The server took the request. For events, ``ingested`` were stored (the rest of a
    batch it knew already); for a read, ``value`` is the answer."""

    ingested: int
    value: T


@dataclass(frozen=True)
class Duplicate:
    """409: the server already had this dedup id; the event exists."""


@dataclass(frozen=True)
class Retry:
    """No usable answer (transport error, 5xx, 408, a 2xx that is not the API's answer):
    the same request may succeed later. ``after`` is the server's ``Retry-After``."""

    cause: FuulError
    after: float | None = None


@dataclass(frozen=True)
class RateLimited:
    """429: wait ``after`` seconds (the server's hint) or a slot's worth, then again."""

    cause: RateLimitError
    after: float | None


@dataclass(frozen=True)
class Rejected:
    """400 (or another 4xx): this payload can never succeed. For a batch, ``by_index``
    holds the server's messages by the index of the event they name (None: unknown)."""

    cause: APIError
    by_index: dict[int, list[str]] | None = None


@dataclass(frozen=True)
class Stopped:
    """401, 403, 404: nothing this key sends here can succeed now."""

    cause: APIError


Outcome = Delivered[Any] | Duplicate | Retry | RateLimited | Rejected | Stopped

#: Reads a 2xx body: the value it carries, or None when it is not the API's answer.
Accept = Callable[[bytes], T | None]


def accept_event(body: bytes) -> int | None:
    """A single event's 2xx: empty, or any JSON object (its content is not published)."""
    if not body.strip():
        return 1
    try:
        return 1 if isinstance(msgspec.json.decode(body), dict) else None
    except DECODE_ERRORS:  # a body nested too deep too: not the API's answer
        return None


def accept_batch(count: int) -> Accept[int]:
    """A batch's 2xx: ``{"ingested_events": N}`` with N in ``0..count``, or empty."""

    def accept(body: bytes) -> int | None:
        if not body.strip():
            return count
        ingested = decode_ingested(body)
        return ingested if ingested is not None and 0 <= ingested <= count else None

    return accept


def judge(response: Response, accept: Accept[Any], events: int = 0) -> Outcome:
    """The one table from an answer to an outcome. ``events`` is how many events the
    request carried (a refused batch's messages are matched to them by index)."""
    status = response.status
    if 200 <= status < 300:
        value = accept(response.body)
        if value is None:
            cause = TransportError(f"HTTP {status} with a body that is not the API's answer")
            return Retry(cause)
        return Delivered(value if events else 0, value)
    if status == 409:
        return Duplicate()
    error = response.error()
    if isinstance(error, RateLimitError):
        return RateLimited(error, response.retry_after)
    if status >= 500 or status == 408:
        return Retry(error, response.retry_after)
    if status in (401, 403, 404):
        return Stopped(error)
    by_index = None
    if isinstance(error, BadRequestError) and events > 1:
        by_index = error.event_errors(events)
    return Rejected(error, by_index)


async def deliver(
    lane: Lane,
    transport: Transport,
    accept: Accept[Any],
    *,
    body: bytes | None = None,
    params: Mapping[str, str] | None = None,
    events: int = 0,
    path: str | None = None,
    method: str | None = None,
) -> Outcome:
    """Send one request in a slot of ``lane`` the caller holds, judge the answer, and let
    the lane learn from it (counters, pauses, a stop). ``path`` and ``method``: another
    than the lane's (a lane of :mod:`aiofuul.api` serves a group of endpoints, its reads
    and its writes)."""
    lane.requests += 1
    if lane.params is not None:
        params = lane.params if params is None else {**lane.params, **params}
    try:
        response = await transport.request(
            method or lane.method, lane.path if path is None else path, body=body, params=params
        )
    except FuulError as exc:
        outcome: Outcome = Retry(exc)
    else:
        outcome = judge(response, accept, events)
    _learn(lane, outcome)
    return outcome


def _learn(lane: Lane, outcome: Outcome) -> None:
    """What the lane makes of an outcome: pauses, a stop, or a clean slate."""
    if isinstance(outcome, RateLimited):
        lane.on_rate_limited(outcome.after)
    elif isinstance(outcome, Retry):
        lane.on_failure(outcome.after)
    elif isinstance(outcome, Stopped) and not _absent(lane, outcome):
        lane.on_stop(outcome.cause)
    else:
        lane.on_answer(delivered=isinstance(outcome, Delivered))


def _absent(lane: Lane, outcome: Stopped) -> bool:
    """A 404 to a read names a thing that does not exist (not an affiliate, an event not
    known yet): an answer about that thing, not about the key, so the lane does not pause."""
    return lane.method == "GET" and outcome.cause.status == 404


async def call(
    lane: Lane,
    transport: Transport,
    policy: RetryPolicy,
    accept: Accept[T],
    *,
    body: bytes | None = None,
    params: Mapping[str, str] | None = None,
    events: int = 0,
    path: str | None = None,
    method: str | None = None,
    idempotent: bool = True,
) -> Delivered[T] | Duplicate:
    """Send until a final answer: a :class:`Delivered` or :class:`Duplicate`; raises the
    :class:`~aiofuul.errors.APIError` of a refusal, or the last error once the policy's
    attempts or elapsed time run out (waiting for a slot past the deadline included).

    ``idempotent=False`` (a request that must not take effect twice) sends it again only
    when it surely did not reach the handler (:func:`unsent`); after any other failure
    it raises :class:`~aiofuul.errors.AmbiguousWriteError`: it may have taken effect."""
    deadline = lane.clock() + policy.max_elapsed
    attempts = 0
    error: FuulError | None = None
    while True:
        async with lane.slot(deadline=deadline, error=error):
            outcome = await deliver(
                lane, transport, accept, body=body, params=params, events=events, path=path,
                method=method,
            )  # fmt: skip
        if isinstance(outcome, (Delivered, Duplicate)):
            return outcome
        error = outcome.cause
        if isinstance(outcome, (Rejected, Stopped)):
            raise error
        if not idempotent and isinstance(outcome, Retry) and not unsent(error):
            where = lane.path if path is None else path
            raise AmbiguousWriteError(method or lane.method, where, error)
        attempts += 1
        if policy.exhausted(attempts, deadline - policy.max_elapsed, lane.clock()):
            raise error


def unsent(cause: FuulError) -> bool:
    """Whether a failed request surely did not reach the handler: no connection was made,
    or the server answered 503 (unavailable: it did not take the request). A 429 is
    another outcome (:class:`RateLimited`), never applied either."""
    return isinstance(cause, ConnectError) or (isinstance(cause, APIError) and cause.status == 503)
