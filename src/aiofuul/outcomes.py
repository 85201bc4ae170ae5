"""What a request's answer does to its events: the one place an outcome of
:func:`~aiofuul.delivery.deliver` changes the queue and the counters.

Delivered and duplicate events are settled; a 429 puts them back at the front; a
failure retries them later (or reports those out of attempts or time); a refused batch
reports the events the server named and sends the rest again; a refusal of the key
(401/403/404) pauses the lane, which probes again, and logs that once per change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .backlog import Backlog
from .delivery import Delivered, Duplicate, Outcome, RateLimited, Rejected, Retry, Stopped
from .errors import BadRequestError, PermissionDeniedError, UndeliveredError
from .flights import Flight
from .lanes import Lane
from .ledger import Ledger, Pending
from .models import required_scope

__all__ = ["Outcomes"]

log = logging.getLogger("aiofuul")


class Outcomes:
    """Applies the outcomes of the sender's requests (see the module docstring), and
    counts the batches that were delivered."""

    def __init__(self, backlog: Backlog, ledger: Ledger, batch: Lane, clock: Callable[[], float]):
        self._backlog = backlog
        self._ledger = ledger
        self._batch = batch
        self._clock = clock
        self._paused: set[str] = set()  # lanes whose pause was logged
        self.batches = self.batched_events = 0

    def apply(self, flight: Flight, outcome: Outcome, started: float) -> None:
        """Apply the outcome of ``flight``, a request that started at ``started``."""
        items, lane = flight.items, flight.lane
        if isinstance(outcome, Delivered):
            if lane.name in self._paused:
                self._paused.discard(lane.name)
                log.warning("%s %s accepted again: lane resumed", lane.method, lane.path)
            if lane is self._batch:
                self.batches += 1
                self.batched_events += len(items)
            # The server does not say which were known already; the counts are exact.
            self._ledger.settle(items[: outcome.ingested], "delivered")
            self._ledger.settle(items[outcome.ingested :], "duplicates")
        elif isinstance(outcome, Duplicate):
            self._ledger.settle(items, "duplicates")
        elif isinstance(outcome, RateLimited):
            self._backlog.retries += 1
            self._backlog.requeue(items)
        elif isinstance(outcome, Retry):
            self._backlog.retry_later(items, outcome.cause, started)
        elif isinstance(outcome, Rejected):
            self._reject(items, outcome)
        else:
            self._stopped(lane, items, outcome)

    def _reject(self, items: list[Pending], outcome: Rejected) -> None:
        """A refused request. For an atomic batch: report the events the server named,
        send the rest again; if it named none, send each alone to find the bad ones."""
        if len(items) == 1:
            self._ledger.settle(items, "rejected", UndeliveredError("rejected", 1, outcome.cause))
            return
        if outcome.by_index is None:
            self._backlog.solo.extend(items)
            return
        status = outcome.cause.status
        for index, messages in outcome.by_index.items():
            cause = BadRequestError(status, messages)
            self._ledger.settle([items[index]], "rejected", UndeliveredError("rejected", 1, cause))
        self._backlog.requeue(p for i, p in enumerate(items) if i not in outcome.by_index)

    def _stopped(self, lane: Lane, items: list[Pending], outcome: Stopped) -> None:
        """Refused for the key (401/403/404): the lane is paused and probes again; the
        events wait, and those past the retry deadline are reported."""
        cause = outcome.cause
        if isinstance(cause, PermissionDeniedError):
            cause = lane.stopped = cause.for_scope(required_scope(items[0].event.name))
        if lane.name not in self._paused:  # once per change of state, not per request
            self._paused.add(lane.name)
            log.error("%s %s refused (%s): lane paused; probing again with one request "
                      "at a time, backing off", lane.method, lane.path, cause)  # fmt: skip
        self._backlog.retry_later(items, cause, self._clock(), reason="stopped")
