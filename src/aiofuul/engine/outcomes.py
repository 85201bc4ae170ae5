"""What a request's answer does to its events: the one place an outcome of
:func:`~aiofuul.engine.delivery.deliver` changes the queue and the counters.

Delivered and duplicate events are settled; a 429 puts them back at the front; a
failure retries them later (or reports those out of attempts or time); a refused batch
reports the events the server named and sends the rest again; a refusal of the key
(401/403/404) pauses the lane, which probes again: its events wait without being charged
an attempt, and one ERROR says what is wrong with the key (once per problem).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    PermissionDeniedError,
    UndeliveredError,
)
from ..wire.models import required_scope
from .backlog import Backlog
from .delivery import Delivered, Duplicate, Outcome, RateLimited, Rejected, Retry, Stopped
from .flights import Flight
from .lanes import Lane
from .ledger import Pending

__all__ = ["Outcomes"]

log = logging.getLogger("aiofuul")


class Outcomes:
    """Applies the outcomes of the sender's requests (see the module docstring), and
    counts the batches that were delivered."""

    def __init__(
        self,
        backlog: Backlog,
        batch: Lane,
        clock: Callable[[], float],
        max_refusals: int,
    ):
        self._backlog = backlog
        self._batch = batch
        self._clock = clock
        self._paused: set[Lane] = set()  # lanes refused since their last delivery
        self._said: set[tuple[type, str]] = set()  # the refusals logged, by kind and scope
        self._key_worked = False  # some request of this sender was accepted
        # Refusals in a row: at the retry policy's max_attempts, a flush() without a
        # timeout stops waiting (the events stay queued; see Sender.flush).
        self._refusals = 0
        self._max_refusals = max_refusals
        #: Set while the key has been refused ``max_refusals`` times in a row.
        self.refused = asyncio.Event()
        self.batches = self.batched_events = 0

    def apply(self, flight: Flight, outcome: Outcome, started: float) -> None:
        """Apply the outcome of ``flight``, a request that started at ``started``."""
        items, lane = flight.items, flight.lane
        if not isinstance(outcome, (Stopped, Retry, RateLimited)):
            self._accepted()
        if isinstance(outcome, Delivered):
            if lane in self._paused:
                self._paused.discard(lane)
                log.warning("%s %s accepted again: lane resumed", lane.method, lane.path)
                if not self._paused:
                    self._said.clear()
            if lane is self._batch:
                self.batches += 1
                self.batched_events += len(items)
            # The server does not say which were known already; the counts are exact.
            self._backlog.settle(items[: outcome.ingested], "delivered")
            self._backlog.settle(items[outcome.ingested :], "duplicates")
        elif isinstance(outcome, Duplicate):
            self._backlog.settle(items, "duplicates")
        elif isinstance(outcome, RateLimited):
            self._backlog.retry_now(items)
        elif isinstance(outcome, Retry):
            self._backlog.retry_later(items, outcome.cause, started)
        elif isinstance(outcome, Rejected):
            self._reject(items, outcome)
        else:
            self._stopped(lane, items, outcome)

    def _accepted(self) -> None:
        """An answer that got past the key's checks: the key works."""
        self._key_worked = True
        self._refusals = 0
        self.refused.clear()

    def _reject(self, items: list[Pending], outcome: Rejected) -> None:
        """A refused request. For an atomic batch: report the events the server named,
        send the rest again; if it named none, send each alone to find the bad ones."""
        if len(items) == 1:
            self._backlog.settle(items, "rejected", UndeliveredError("rejected", 1, outcome.cause))
            return
        if outcome.by_index is None:
            self._backlog.to_solo(items)
            return
        status = outcome.cause.status
        for index, messages in outcome.by_index.items():
            cause = BadRequestError(status, messages)
            self._backlog.settle([items[index]], "rejected", UndeliveredError("rejected", 1, cause))
        self._backlog.requeue(p for i, p in enumerate(items) if i not in outcome.by_index)

    def _stopped(self, lane: Lane, items: list[Pending], outcome: Stopped) -> None:
        """Refused for the key (401/403/404): the lane is paused and probes again. The
        events wait, charged no attempt (a key revoked for an hour must not spend a
        backlog's attempts in seconds); those past the retry deadline are reported
        (:meth:`~aiofuul.engine.backlog.Backlog.expire`)."""
        cause = outcome.cause
        if isinstance(cause, PermissionDeniedError):
            cause = lane.stopped = cause.for_scope(required_scope(items[0].event.name))
        self._refusals += 1
        if self._refusals >= self._max_refusals:
            self.refused.set()
        self._paused.add(lane)
        problem = (type(cause), getattr(cause, "needed_scope", ""))
        if problem not in self._said:  # once per problem, not per request nor per lane
            self._said.add(problem)
            log.error("%s", self._diagnose(lane, cause))
        self._backlog.retry_now(items)

    def _diagnose(self, lane: Lane, cause: APIError) -> str:
        """The ERROR line of a refusal: what is wrong with the key (never its value),
        and what happens to the events meanwhile."""
        if isinstance(cause, AuthenticationError):
            what = (
                "the API key, accepted until now, was refused: revoked or rotated?"
                if self._key_worked
                else "the API key was refused from the first request: it is mistyped, "
                "revoked, or for another environment (check api_key= or FUUL_API_KEY)"
            )
        elif isinstance(cause, PermissionDeniedError):
            scope = cause.needed_scope or "a send"
            what = f"the API key lacks the {scope} scope: grant it, or use a key that has it"
        else:
            what = "the endpoint or project was not found: check base_url and project_id"
        wait = self._backlog.max_elapsed
        return (
            f"{lane.method} {lane.path} refused ({cause}): {what}. The lane paused: it "
            "probes again with one request at a time, backing off; events stay queued, "
            f"and those not accepted within max_elapsed ({wait:g} s) are reported 'stopped'"
        )
