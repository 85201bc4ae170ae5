"""The events waiting to be sent: a bounded queue in acceptance order, retries put back
at its front, and the solo queue of a refused batch's events (sent one by one to find
the bad ones). ``max_queue`` bounds both together, with the ``queue_full`` policy,
applied here alone: whatever enters the queue (``track()``, an adopted event) enters
through :meth:`Backlog.add` or :meth:`Backlog.adopt`.

The backlog owns the two deques and their counters: the other modules change them only
through its named operations (``take``, ``put_back``, ``requeue``, ``retry_now``,
``retry_later``, ``to_solo``, ``adopt``, ``expire``, ``settle``, ``settle_all``) and
read them through its properties.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import Callable, Iterable

from ..config import ClientConfig
from ..errors import FuulError, QueueFullError, UndeliveredError, UndeliveredReason
from ..wire.models import Event
from .ledger import Ledger, Pending
from .seams import Settlement

__all__ = ["NEVER", "Backlog"]

NEVER = sys.maxsize  # a queue length no event reaches


class Backlog:
    """The sender's queue (see the module docstring)."""

    def __init__(
        self,
        config: ClientConfig,
        ledger: Ledger,
        clock: Callable[[], float],
        wake: Callable[[], None],
    ):
        self._policy = config.queue_full
        self._max = config.max_queue
        self._retry = config.retry
        self._ledger = ledger
        self._accept = ledger.accept
        self._clock = clock
        self._wake = wake
        # The queue length at which add() wakes the sender (see wake_when).
        self._wake_at = 1
        self._queue: deque[Pending] = deque()
        self._solo: deque[Pending] = deque()
        self._room = asyncio.Event()
        self._room_waiters = 0
        self._retries = 0

    def __len__(self) -> int:
        return len(self._queue) + len(self._solo)

    @property
    def queued(self) -> int:
        """Events in the main queue (the solo queue apart)."""
        return len(self._queue)

    @property
    def solo(self) -> int:
        """Events of refused batches waiting to be sent one by one."""
        return len(self._solo)

    @property
    def retries(self) -> int:
        """Requests whose events were queued again (``stats().retries``)."""
        return self._retries

    def oldest_after(self, skip: int) -> float:
        """When the oldest event of the main queue past its first ``skip`` was accepted
        (the first event not promised to a request; 0.0 when the queue is empty)."""
        queue = self._queue
        return queue[min(len(queue) - 1, skip)].enqueued if queue else 0.0

    def oldest_age(self, now: float) -> float:
        """How long the oldest waiting event has waited (0.0 when none waits)."""
        heads = [q[0].enqueued for q in (self._queue, self._solo) if q]
        return now - min(heads) if heads else 0.0

    def wake_when(self, length: int) -> None:
        """Wake the sender when the main queue reaches ``length`` events (``NEVER``:
        no new event could change what it does; its timer covers the rest)."""
        self._wake_at = length

    def add(self, event: Event, may_raise: bool = True) -> None:
        """Accept ``event``, applying the queue-full policy (``"raise"`` acts as
        ``"drop_new"`` when ``may_raise`` is False: no caller to raise to), and wake the
        sender when the queue reaches :attr:`wake_at`. ``track()``'s hot path."""
        queue = self._queue
        if len(queue) + len(self._solo) >= self._max and not self._make_room(event, may_raise):
            return
        queue.append(self._accept(event))
        journal = self._ledger.journal
        if journal is not None:
            journal.added(event)
        if len(queue) >= self._wake_at:
            self._wake_at = NEVER
            self._wake()

    def adopt(self, events: Iterable[Event]) -> None:
        """Queue events a journal holds already (recovered at start, or taken over from
        a client that is gone): counted and bounded like :meth:`add` (``"raise"`` acts
        as ``"drop_new"``), but not written to the journal again. Wakes the sender."""
        for event in events:
            if len(self) >= self._max and not self._make_room(event, may_raise=False):
                continue
            self._queue.append(self._accept(event))
        self._wake_at = NEVER
        self._wake()

    def refuse(self, event: Event, reason: UndeliveredReason) -> None:
        """Count ``event`` as accepted and report it at once, undelivered for ``reason``
        (handed over from another thread after the sender finished)."""
        self._ledger.settle([self._accept(event)], "failed", UndeliveredError(reason, 1))

    def _make_room(self, event: Event, may_raise: bool) -> bool:
        """The queue is full: raise, drop ``event`` (False), or drop the oldest (True)."""
        ledger = self._ledger
        if self._policy == "raise" and may_raise:
            raise QueueFullError(f"queue full ({self._max} events)")
        if self._policy != "drop_old":
            ledger.drop(ledger.accept(event), self._policy)
            return False
        ledger.drop(self._queue.popleft(), self._policy)
        return True

    def take(self, count: int) -> list[Pending]:
        """The next ``count`` events, off the front."""
        pop = self._queue.popleft
        return [pop() for _ in range(count)]

    def take_solo(self) -> Pending:
        """The next event of the solo queue."""
        return self._solo.popleft()

    def requeue(self, items: Iterable[Pending]) -> None:
        """Put events back at the front, in their order: they go before newer ones."""
        self._queue.extendleft(reversed(list(items)))

    def put_back(self, items: list[Pending], solo: bool = False) -> None:
        """Events taken for a request that was never sent: back to the front of the
        queue they came from, as if never taken (no attempt, no retry counted)."""
        if solo:
            self._solo.extendleft(reversed(items))
        else:
            self.requeue(items)

    def to_solo(self, items: Iterable[Pending]) -> None:
        """A batch refused without naming its bad events: send each alone."""
        self._solo.extend(items)

    def retry_now(self, items: Iterable[Pending]) -> None:
        """A request was answered 429 or refused (401/403/404): its events go back to
        the front, charged no attempt (the lane's pause is the wait)."""
        self._retries += 1
        self.requeue(items)

    def settle(
        self, items: list[Pending], outcome: Settlement, error: UndeliveredError | None = None
    ) -> None:
        """Events that left the queue reached their end: count them (the ledger)."""
        self._ledger.settle(items, outcome, error)

    @property
    def max_elapsed(self) -> float:
        """Seconds an event may wait for delivery before it is reported (the policy's)."""
        return self._retry.max_elapsed

    def retry_later(
        self,
        items: list[Pending],
        error: FuulError,
        started: float,
        reason: UndeliveredReason = "retries_exhausted",
    ) -> None:
        """The request that started at ``started`` failed: requeue its events, or report
        those out of attempts or time (the retry policy's one rule) with ``reason``."""
        now = self._clock()
        keep: list[Pending] = []
        spent: list[Pending] = []
        for p in items:
            if p.attempts == 0:  # set here, not per request: only failures pay for it
                p.first_try = started
            p.attempts += 1
            exhausted = self._retry.exhausted(p.attempts, p.first_try, now)
            (spent if exhausted else keep).append(p)
        if keep:
            self._retries += 1
            self.requeue(keep)
        if spent:
            self._ledger.settle(spent, "failed", UndeliveredError(reason, len(spent), error))

    def expire(self, now: float, cause: FuulError) -> None:
        """While the lanes are refused (401/403/404), report the events that waited past
        the retry deadline (``max_elapsed``), oldest first."""
        deadline = now - self._retry.max_elapsed
        for queue in (self._solo, self._queue):
            expired: list[Pending] = []
            while queue and min(queue[0].enqueued, queue[0].first_try or now) <= deadline:
                expired.append(queue.popleft())
            if expired:
                error = UndeliveredError("stopped", len(expired), cause)
                self._ledger.settle(expired, "failed", error)

    def settle_all(self, reason: UndeliveredReason, cause: FuulError | None = None) -> None:
        """Report every waiting event as failed, for ``reason`` (a stop, a shutdown)."""
        items = [*self._solo, *self._queue]
        self._solo.clear()
        self._queue.clear()
        if items:
            self._ledger.settle(items, "failed", UndeliveredError(reason, len(items), cause))

    async def wait_for_room(self, stopping: Callable[[], bool]) -> None:
        """Wait until the queue has room (``atrack()``), or the sender stops."""
        while len(self) >= self._max and not stopping():
            self._room.clear()
            self._room_waiters += 1
            try:
                await self._room.wait()
            finally:
                self._room_waiters -= 1

    def tell_room(self, stopping: bool = False) -> None:
        """Wake ``atrack()`` callers if there is room now (or the sender stops)."""
        if stopping or (self._room_waiters and len(self) < self._max):
            self._room.set()
