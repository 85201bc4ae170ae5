"""The events waiting to be sent: a bounded queue in acceptance order, retries put back
at its front, and the solo queue of a refused batch's events (sent one by one to find
the bad ones). ``max_queue`` bounds both together, with the ``queue_full`` policy.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import Callable, Iterable

from .config import ClientConfig
from .errors import FuulError, QueueFullError, UndeliveredError
from .ledger import Ledger, Pending
from .models import Event

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
        #: The queue length at which :meth:`add` wakes the sender; the sender sets it
        #: after each pass, to ``NEVER`` while no event could change what it does.
        self.wake_at = 1
        self.queue: deque[Pending] = deque()
        self.solo: deque[Pending] = deque()
        self._room = asyncio.Event()
        self._room_waiters = 0
        self.retries = 0

    def __len__(self) -> int:
        return len(self.queue) + len(self.solo)

    def oldest_age(self, now: float) -> float:
        """How long the oldest waiting event has waited (0.0 when none waits)."""
        heads = [q[0].enqueued for q in (self.queue, self.solo) if q]
        return now - min(heads) if heads else 0.0

    def add(self, event: Event, may_raise: bool = True) -> None:
        """Accept ``event``, applying the queue-full policy (``"raise"`` acts as
        ``"drop_new"`` when ``may_raise`` is False: no caller to raise to), and wake the
        sender when the queue reaches :attr:`wake_at`. ``track()``'s hot path."""
        queue = self.queue
        if len(queue) + len(self.solo) >= self._max and not self._make_room(event, may_raise):
            return
        queue.append(self._accept(event))
        journal = self._ledger.journal
        if journal is not None:
            journal.added(event)
        if len(queue) >= self.wake_at:
            self.wake_at = NEVER
            self._wake()

    def _make_room(self, event: Event, may_raise: bool) -> bool:
        """The queue is full: raise, drop ``event`` (False), or drop the oldest (True)."""
        ledger = self._ledger
        if self._policy == "raise" and may_raise:
            raise QueueFullError(f"queue full ({self._max} events)")
        if self._policy != "drop_old":
            ledger.drop(ledger.accept(event), self._policy)
            return False
        ledger.drop(self.queue.popleft(), self._policy)
        return True

    def take(self, count: int) -> list[Pending]:
        """The next ``count`` events, off the front."""
        pop = self.queue.popleft
        return [pop() for _ in range(count)]

    def requeue(self, items: Iterable[Pending]) -> None:
        """Put events back at the front, in their order: they go before newer ones."""
        self.queue.extendleft(reversed(list(items)))

    def put_back(self, items: list[Pending], solo: bool = False) -> None:
        """Events taken for a request that was never sent: back to the front of the
        queue they came from, as if never taken (no attempt, no retry counted)."""
        if solo:
            self.solo.extendleft(reversed(items))
        else:
            self.requeue(items)

    def retry_now(self, items: Iterable[Pending]) -> None:
        """A request was answered 429 or refused (401/403/404): its events go back to
        the front, charged no attempt (the lane's pause is the wait)."""
        self.retries += 1
        self.requeue(items)

    @property
    def max_elapsed(self) -> float:
        """Seconds an event may wait for delivery before it is reported (the policy's)."""
        return self._retry.max_elapsed

    def retry_later(
        self,
        items: list[Pending],
        error: FuulError,
        started: float,
        reason: str = "retries_exhausted",
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
            self.retries += 1
            self.requeue(keep)
        if spent:
            self._ledger.settle(spent, "failed", UndeliveredError(reason, len(spent), error))

    def expire(self, now: float, cause: FuulError) -> None:
        """While the lanes are refused (401/403/404), report the events that waited past
        the retry deadline (``max_elapsed``), oldest first."""
        deadline = now - self._retry.max_elapsed
        for queue in (self.solo, self.queue):
            expired: list[Pending] = []
            while queue and min(queue[0].enqueued, queue[0].first_try or now) <= deadline:
                expired.append(queue.popleft())
            if expired:
                error = UndeliveredError("stopped", len(expired), cause)
                self._ledger.settle(expired, "failed", error)

    def settle_all(self, reason: str, cause: FuulError | None = None) -> None:
        """Report every waiting event as failed, for ``reason`` (a stop, a shutdown)."""
        items = [*self.solo, *self.queue]
        self.solo.clear()
        self.queue.clear()
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
