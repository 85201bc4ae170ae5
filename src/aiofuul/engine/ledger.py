"""Where every tracked event ends up: the counters, ``flush()`` waiters, ``on_error``,
the log, and the durable outbox's journal, all told in one place (:meth:`Ledger.settle`).

Every event accepted by ``track()`` is counted once in ``tracked`` and, later, once in
exactly one of ``delivered``, ``duplicates``, ``rejected``, ``failed``, ``dropped`` or
``handed_off``; the last four also reach ``on_error`` with an
:class:`~aiofuul.UndeliveredError` saying why. What is neither is ``queued``.
"""

from __future__ import annotations

import asyncio
import bisect
import inspect
import logging
import math
import operator
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

import msgspec

from ..errors import UndeliveredError, UndeliveredReason
from ..wire.models import Event
from .seams import Journal, Observer, OnError, Settlement

if TYPE_CHECKING:
    from ..config import QueueFullPolicy

__all__ = ["Ledger", "Pending"]

log = logging.getLogger("aiofuul")

_DROP_WARN_INTERVAL = 5.0
# Dedup ids named in the log per failure reason (a shutdown can lose thousands).
_IDS_SHOWN = 100
_enqueued_of = operator.attrgetter("enqueued")


def _unknown(outcome: NoReturn) -> NoReturn:
    # typing.assert_never, which Python 3.10 lacks: mypy proves this is never called.
    raise AssertionError(f"unknown outcome {outcome!r}")


class Pending(msgspec.Struct, gc=False):
    """An accepted event on its way. A Struct, not a class with ``__init__``: one is
    built per ``track()``, on the hot path."""

    event: Event
    # When it was accepted (time.monotonic), strictly increasing from one event to the
    # next: linger measures from it, and flush() orders events by it.
    enqueued: float
    attempts: int = 0
    first_try: float = 0.0


class _FlushWaiter:
    """A flush() waiting for every event accepted up to ``target`` (a stamp) to settle.

    Waiters are kept in the order of their targets, and since each one's events include
    those of every earlier one, they finish in that order: only the first is counted
    down event by event. Events settling after a later waiter's target are counted in
    ``late`` of the last waiter before them, so that when a waiter comes first its
    remaining count is computed once (see :meth:`Ledger._promote`)."""

    __slots__ = ("done", "late", "remaining", "target", "tracked")

    def __init__(self, target: float, tracked: int, remaining: int, done: asyncio.Future[None]):
        self.target = target
        self.tracked = tracked  # events accepted when it began: all have stamps <= target
        self.remaining = remaining
        self.late = 0
        self.done = done


class Ledger:
    """The counters of one client, and everyone who must hear of a settled event."""

    def __init__(
        self,
        on_error: OnError | None,
        journal: Journal | None,
        max_queue: int,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.on_error = on_error
        self.journal = journal
        self._max_queue = max_queue
        self._clock = clock
        self.tracked = 0
        self.delivered = self.duplicates = self.rejected = self.failed = self.dropped = 0
        self.handed_off = 0
        self._waiters: deque[_FlushWaiter] = deque()
        self._callbacks: set[asyncio.Future[object]] = set()
        self._ids_shown: dict[UndeliveredReason, int] = {}
        self._targets: list[float] = []  # the waiters' targets, for bisect
        self._drops_unwarned = 0
        self._drops: list[Pending] = []  # dropped this loop turn, settled just after
        self._drop_warned_at = -_DROP_WARN_INTERVAL
        self._last_stamp = -math.inf
        self._observers: tuple[Observer, ...] = ()  # see add_observer

    def settled(self) -> int:
        """Events that reached their final counter."""
        return (
            self.delivered + self.duplicates + self.rejected + self.failed + self.dropped
            + self.handed_off
        )  # fmt: skip

    def accept(self, event: Event) -> Pending:
        """Count an accepted event; returns what goes on the queue, stamped."""
        self.tracked += 1
        stamp = self._clock()
        if stamp <= self._last_stamp:  # a coarse clock: flush() needs a strict order
            stamp = math.nextafter(self._last_stamp, math.inf)
        self._last_stamp = stamp
        return Pending(event, stamp)

    def settle(
        self,
        items: Sequence[Pending],
        outcome: Settlement,
        error: UndeliveredError | None = None,
        quiet: bool = False,
    ) -> None:
        """Count ``items`` under ``outcome`` and tell the journal, the flush waiters,
        and (for failures) the log and ``on_error``."""
        if error is not None and error.reason == "shutdown" and self.journal is not None:
            rest = self._hand_off(items)
            if len(rest) < len(items):
                items, error = rest, UndeliveredError("shutdown", len(rest), error.cause)
        if not items:
            return
        self._count(outcome, len(items))
        self._tell(items, outcome, error, quiet)
        # After the report: a flush() woken here finds on_error's call queued before it.
        if self._waiters:
            self._count_down(items)

    def _count(self, outcome: Settlement, n: int) -> None:
        """Add ``n`` to the counter of ``outcome`` (a typo fails ``mypy --strict``)."""
        if outcome == "delivered":
            self.delivered += n
        elif outcome == "duplicates":
            self.duplicates += n
        elif outcome == "rejected":
            self.rejected += n
        elif outcome == "failed":
            self.failed += n
        elif outcome == "dropped":
            self.dropped += n
        elif outcome == "handed_off":
            self.handed_off += n
        else:
            _unknown(outcome)

    def add_observer(self, observer: Observer) -> Callable[[], None]:
        """Tell ``observer`` of every settlement from now on; returns what removes it."""
        self._observers = (*self._observers, observer)

        def remove() -> None:
            self._observers = tuple(o for o in self._observers if o is not observer)

        return remove

    def _observe(self, outcome: Settlement, items: Sequence[Pending]) -> None:
        now = self._clock()
        waited = [now - p.enqueued for p in items]
        for observer in self._observers:
            try:
                observer(outcome, waited)
            except Exception:  # never into the ledger's accounting
                log.exception("a settlement observer raised")

    def _tell(
        self,
        items: Sequence[Pending],
        outcome: Settlement,
        error: UndeliveredError | None,
        quiet: bool,
        on_loop: bool = False,
    ) -> None:
        """What a settlement owes beyond the counters: metrics, the journal, the report.
        ``on_loop``: already called from the loop, outside any caller's stack."""
        if self._observers:
            self._observe(outcome, items)
        if self.journal is not None:
            self.journal.settled([p.event for p in items], outcome, error)
        if error is not None:
            self._report(items, error, quiet, on_loop)

    def _hand_off(self, items: Sequence[Pending]) -> Sequence[Pending]:
        """At shutdown, the events a shared journal holds for other clients are handed
        off (counted, told, not lost); returns the others."""
        assert self.journal is not None
        hands_off = self.journal.hands_off
        kept: list[Pending] = []
        rest: list[Pending] = []
        for p in items:
            (kept if hands_off(p.event) else rest).append(p)
        if kept:
            self.handed_off += len(kept)
            log.warning(
                "%d event(s) not delivered by close were handed off: they stay in the "
                "shared outbox, and another client delivers them",
                len(kept),
            )
            self._tell(kept, "handed_off", UndeliveredError("handed_off", len(kept)), quiet=True)
            if self._waiters:
                self._count_down(kept)
        return rest

    def _report(
        self, items: Sequence[Pending], error: UndeliveredError, quiet: bool, on_loop: bool
    ) -> None:
        if not quiet:
            self._log_failure(items, error)
        if self.on_error is not None:
            events = [p.event for p in items]
            if on_loop:
                self._call_on_error(events, error)
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop left (a client collected late): call it now
                self._call_on_error(events, error)
            else:
                # Never inside the caller's stack: a callback that tracks again must not
                # recurse into track(), nor see counters halfway through a change.
                loop.call_soon(self._call_on_error, events, error)

    def _call_on_error(self, events: list[Event], error: UndeliveredError) -> None:
        assert self.on_error is not None
        try:
            result = self.on_error(events, error)
        except Exception:
            log.exception("on_error callback raised")
            return
        if inspect.isawaitable(result):  # an async def on_error: run it, awaited at close
            task = asyncio.ensure_future(result)
            self._callbacks.add(task)
            task.add_done_callback(self._callback_done)

    def _callback_done(self, task: asyncio.Future[object]) -> None:
        self._callbacks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("on_error callback raised", exc_info=task.exception())

    async def wait_for_callbacks(self, timeout: float) -> None:
        """Let the ``on_error`` calls scheduled so far run, and the async ones finish,
        for at most ``timeout`` seconds (at close); cancel what is left, saying so."""
        await asyncio.sleep(0)  # the calls scheduled with call_soon run first
        if not self._callbacks:
            return
        _, pending = await asyncio.wait(set(self._callbacks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            log.error("%d on_error call(s) still running at close were cancelled", len(pending))

    def _log_failure(self, items: Sequence[Pending], error: UndeliveredError) -> None:
        """One ERROR line per failure, naming the dedup ids (the first hundred of a
        shutdown): without on_error or an outbox, nothing else can say which were lost."""
        shown = self._ids_shown[error.reason] = self._ids_shown.get(error.reason, 0)
        room = max(0, _IDS_SHOWN - shown)
        ids = [p.event.dedup_id for p in items[:room]]
        self._ids_shown[error.reason] = shown + len(ids)
        more = len(items) - len(ids)
        names = ", ".join(ids) + (f" and {more} more" if more and ids else "")
        where = "" if self.on_error else "; pass on_error= to FuulClient to receive every one"
        if ids:
            log.error("%s; dedup ids: %s%s", error, names, where)
        else:
            log.error("%s (dedup ids beyond the first %d not listed%s)", error, _IDS_SHOWN, where)

    def drop(self, item: Pending, policy: QueueFullPolicy) -> None:
        """A full queue dropped ``item``. Under overload this runs for every new event,
        so it costs what queueing would: the counters and flush() see the drop at once,
        while the telling (journal, one ``on_error`` call, a warning at most every few
        seconds with how many since the last) is done for a loop turn's drops together."""
        self.dropped += 1
        if self._waiters:
            self._count_down((item,))
        self._drops.append(item)
        if len(self._drops) == 1:
            try:
                asyncio.get_running_loop().call_soon(self._tell_drops, policy)
            except RuntimeError:  # no loop (a client collected late): tell now
                self._tell_drops(policy)

    def _tell_drops(self, policy: QueueFullPolicy) -> None:
        items, self._drops = self._drops, []
        if not items:
            return
        self._drops_unwarned += len(items)
        now = self._clock()
        if now - self._drop_warned_at >= _DROP_WARN_INTERVAL:
            log.warning(
                "queue full (%d events): dropped %d event(s) (queue_full=%r); see stats().dropped",
                self._max_queue,
                self._drops_unwarned,
                policy,
            )
            self._drop_warned_at, self._drops_unwarned = now, 0
        error = UndeliveredError("dropped", len(items))
        self._tell(items, "dropped", error, quiet=True, on_loop=True)

    def flush_waiter(self) -> asyncio.Future[None] | None:
        """A future done when every event accepted so far has settled (None if all have)."""
        remaining = self.tracked - self.settled()
        if remaining <= 0:
            return None
        if self._waiters and self._waiters[-1].target == self._last_stamp:
            # Nothing accepted since the last flush began: wait on the same future.
            return self._waiters[-1].done
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(_FlushWaiter(self._last_stamp, self.tracked, remaining, done))
        self._targets.append(self._last_stamp)
        return done

    def _count_down(self, items: Sequence[Pending]) -> None:
        head = self._waiters[0]
        if max(map(_enqueued_of, items)) <= head.target:  # the usual case: all are older
            head.remaining -= len(items)
        else:
            for p in items:
                index = bisect.bisect_left(self._targets, p.enqueued)
                if index == 0:
                    head.remaining -= 1
                else:
                    self._waiters[index - 1].late += 1
        while self._waiters and self._waiters[0].remaining <= 0:
            finished = self._waiters.popleft()
            del self._targets[0]
            if not finished.done.done():
                finished.done.set_result(None)
            if self._waiters:
                self._promote()

    def _promote(self) -> None:
        """The first waiter finished: count what the next one still waits for. Of the
        events not settled now, those accepted after it began are not its own; of those,
        the settled ones were counted in ``late`` of it and of every waiter after it."""
        head = self._waiters[0]
        settled_after = sum(w.late for w in self._waiters)
        unsettled = self.tracked - self.settled()
        head.remaining = unsettled - ((self.tracked - head.tracked) - settled_after)
