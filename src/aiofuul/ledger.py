"""Where every tracked event ends up: the counters, ``flush()`` waiters, ``on_error``,
the log, and the durable outbox's journal, all told in one place (:meth:`Ledger.settle`).

Every event accepted by ``track()`` is counted once in ``tracked`` and, later, once in
exactly one of ``delivered``, ``duplicates``, ``rejected``, ``failed`` or ``dropped``;
the last three also reach ``on_error`` with an :class:`~aiofuul.UndeliveredError`
saying why. What is neither is ``queued``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import operator
import time
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import msgspec

from .errors import UndeliveredError
from .models import Event

__all__ = ["Journal", "Ledger", "OnError", "Outcome", "Stats"]

log = logging.getLogger("aiofuul")

#: ``on_error(events, error)``: called on the loop with events that were not delivered.
OnError = Callable[[list[Event], UndeliveredError], object]
#: The counter an event ends in.
Outcome = Literal["delivered", "duplicates", "rejected", "failed", "dropped"]

_DROP_WARN_INTERVAL = 5.0
_monotonic = time.monotonic
_enqueued_of = operator.attrgetter("enqueued")


class Stats(msgspec.Struct, frozen=True):
    """A snapshot of the client's counters; ``fuul.stats()`` costs next to nothing.

    At any moment ``tracked == delivered + duplicates + rejected + failed + dropped +
    queued``, where ``queued`` counts every accepted event not yet settled (waiting,
    awaiting a retry, or ``in_flight``).
    """

    tracked: int
    delivered: int
    duplicates: int
    rejected: int
    failed: int
    dropped: int
    queued: int
    in_flight: int
    requests_single: int
    requests_batch: int
    rate_limited_single: int
    rate_limited_batch: int
    retries: int
    batches: int
    mean_batch_size: float
    shared_limiter_down: bool = False
    """True while the shared (Redis) limiter is unreachable and the local one, lowered,
    stands in."""


class Journal(Protocol):
    """Told of every accepted and every settled event (the durable outbox)."""

    def added(self, event: Event) -> None: ...

    def settled(
        self, events: Sequence[Event], outcome: str, error: UndeliveredError | None
    ) -> None: ...

    async def recover(self) -> list[Event]: ...


class _Pending(msgspec.Struct, gc=False):
    """An accepted event on its way. A Struct, not a class with ``__init__``: one is
    built per ``track()``, on the hot path."""

    event: Event
    # When it was accepted (time.monotonic), strictly increasing from one event to the
    # next: linger measures from it, and flush() orders events by it.
    enqueued: float
    attempts: int = 0
    first_try: float = 0.0


class _FlushWaiter:
    __slots__ = ("done", "remaining", "target")

    def __init__(self, target: float, remaining: int, done: asyncio.Future[None]):
        self.target = target
        self.remaining = remaining
        self.done = done


class Ledger:
    """The counters of one client, and everyone who must hear of a settled event."""

    def __init__(self, on_error: OnError | None, journal: Journal | None, max_queue: int):
        self.on_error = on_error
        self.journal = journal
        self._max_queue = max_queue
        self.tracked = 0
        self.delivered = self.duplicates = self.rejected = self.failed = self.dropped = 0
        self._waiters: list[_FlushWaiter] = []
        self._drops_unwarned = 0
        self._drop_warned_at = -_DROP_WARN_INTERVAL
        self._last_stamp = -math.inf

    def settled(self) -> int:
        """Events that reached their final counter."""
        return self.delivered + self.duplicates + self.rejected + self.failed + self.dropped

    def accept(self, event: Event) -> _Pending:
        """Count an accepted event; returns what goes on the queue, stamped."""
        self.tracked += 1
        stamp = _monotonic()
        if stamp <= self._last_stamp:  # a coarse clock: flush() needs a strict order
            stamp = math.nextafter(self._last_stamp, math.inf)
        self._last_stamp = stamp
        return _Pending(event, stamp)

    def settle(
        self,
        items: Sequence[_Pending],
        outcome: Outcome,
        error: UndeliveredError | None = None,
        quiet: bool = False,
    ) -> None:
        """Count ``items`` under ``outcome`` and tell the journal, the flush waiters,
        and (for failures) the log and ``on_error``."""
        if not items:
            return
        setattr(self, outcome, getattr(self, outcome) + len(items))
        if self.journal is not None:
            self.journal.settled([p.event for p in items], outcome, error)
        if self._waiters:
            newest = max(map(_enqueued_of, items))
            for waiter in self._waiters:
                if newest <= waiter.target:  # the usual case: all were accepted before
                    waiter.remaining -= len(items)
                else:
                    waiter.remaining -= sum(1 for p in items if p.enqueued <= waiter.target)
                if waiter.remaining <= 0 and not waiter.done.done():
                    waiter.done.set_result(None)
            self._waiters = [w for w in self._waiters if not w.done.done()]
        if error is None:
            return
        if not quiet:
            log.error("%s", error)
        if self.on_error is not None:
            try:
                self.on_error([p.event for p in items], error)
            except Exception:
                log.exception("on_error callback raised")

    def drop(self, item: _Pending, policy: str) -> None:
        """A full queue dropped ``item``: counted, reported, and warned of at most once
        every few seconds (with how many since the last warning)."""
        self._drops_unwarned += 1
        now = time.monotonic()
        if now - self._drop_warned_at >= _DROP_WARN_INTERVAL:
            log.warning(
                "queue full (%d events): dropped %d event(s) (queue_full=%r); see stats().dropped",
                self._max_queue,
                self._drops_unwarned,
                policy,
            )
            self._drop_warned_at, self._drops_unwarned = now, 0
        self.settle([item], "dropped", UndeliveredError("dropped", 1), quiet=True)

    def flush_waiter(self) -> asyncio.Future[None] | None:
        """A future done when every event accepted so far has settled (None if all have)."""
        remaining = self.tracked - self.settled()
        if remaining <= 0:
            return None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(_FlushWaiter(self._last_stamp, remaining, done))
        return done
