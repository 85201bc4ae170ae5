"""The requests under way: each runs as a task that holds a slot of its lane, sends
its events with :func:`~aiofuul.engine.delivery.deliver`, and hands the outcome to the sender.

With a shared (Redis) limiter a request waits for its shared slot before it takes its
events (see :mod:`aiofuul.engine.scheduler`): meanwhile they stay queued, *promised* to it.
A task's bookkeeping lives in its done callback, which runs however it ended (even
cancelled before its first step, when the loop shuts down).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..errors import BadRequestError, FuulError, UndeliveredError
from ..wire.models import encode_batch_in_steps, encode_event
from ..wire.transport import Transport
from .backlog import Backlog
from .delivery import Outcome, Rejected, Retry, accept_batch, accept_event, deliver
from .lanes import Lane
from .ledger import Pending
from .scheduler import Launch

__all__ = ["Flight", "Flights", "Promises"]

log = logging.getLogger("aiofuul")

#: Called with each finished request, its outcome, and when it started.
ApplyOutcome = Callable[["Flight", Outcome, float], None]


class Flight:
    """One request under way: its lane, its events (or, waiting for a shared slot, how
    many it was promised), and whether its events still count in flight."""

    __slots__ = ("counted", "items", "lane", "promised", "running", "solo")

    def __init__(
        self, lane: Lane, items: list[Pending], promised: int = 0, solo: bool = False
    ) -> None:
        self.lane = lane
        self.items = items
        self.promised = promised
        self.solo = solo  # its event came from the solo queue
        self.counted = False
        self.running = False  # its coroutine started, so its slot will be given back


class Promises:
    """Events promised to requests that wait for their shared slot (see
    :mod:`aiofuul.engine.scheduler`): per lane, how many events and how many requests."""

    def __init__(self, lanes: tuple[Lane, Lane], max_waiting: int):
        self._events = dict.fromkeys(lanes, 0)
        self._waiting = dict.fromkeys(lanes, 0)
        self._max_waiting = max_waiting

    def events(self, lane: Lane) -> int:
        """Events promised to the requests of ``lane`` waiting for their slot."""
        return self._events[lane]

    def make(self, lane: Lane, count: int) -> None:
        self._events[lane] += count
        self._waiting[lane] += 1

    def withdraw(self, lane: Lane, count: int) -> None:
        """The request got its slot (or was cancelled): it no longer waits."""
        self._events[lane] -= count
        self._waiting[lane] -= 1

    def room(self, lane: Lane) -> bool:
        # Waiting requests may fill half the in-flight budget per lane, so that each
        # lane always has room to send.
        return lane.remote is None or self._waiting[lane] < self._max_waiting


class Flights:
    """Starts requests and tracks them until their outcome is applied; ``in_flight``
    counts the events they carry."""

    def __init__(
        self,
        lanes: tuple[Lane, Lane],
        transport: Transport,
        backlog: Backlog,
        *,
        max_batch: int,
        max_waiting: int,
        clock: Callable[[], float],
        wake: Callable[[], None],
        apply: ApplyOutcome,
    ):
        self._lanes = lanes  # (single, batch)
        self._transport = transport
        self._backlog = backlog
        self._max_batch = max_batch
        self._clock = clock
        self._wake = wake
        self._apply = apply
        self.promises = Promises(lanes, max_waiting)
        self._flying = dict.fromkeys(lanes, 0)  # requests under way, per lane
        self.tasks: dict[asyncio.Task[None], Flight] = {}
        self.in_flight = 0

    def __len__(self) -> int:
        return len(self.tasks)

    def launch(self, step: Launch, now: float) -> None:
        """Start the request ``step`` decided. With a shared limiter the events stay
        queued until the request has its shared slot: many processes wait for the same
        slots, and events held by a waiting request could have left by this process's
        other lane meanwhile. A waiting batch is promised a full batch, and takes what
        is there (up to that) when its slot comes."""
        lane = self._lanes[0] if step.lane == "single" else self._lanes[1]
        lane.try_acquire(now)
        if step.solo:
            self._start(Flight(lane, [self._backlog.take_solo()], solo=True))
        elif lane.remote is None:
            self._start(Flight(lane, self._backlog.take(step.count)))
        else:
            count = self._max_batch if lane is self._lanes[1] else step.count
            self.promises.make(lane, count)
            self._start(Flight(lane, [], promised=count))

    def flying(self, lane: Lane) -> int:
        """Requests of this sender under way on ``lane`` (waiting for a slot included)."""
        return self._flying[lane]

    def _start(self, flight: Flight) -> None:
        self._flying[flight.lane] += 1
        self._count_in(flight)
        task = asyncio.get_running_loop().create_task(self._fly(flight))
        self.tasks[task] = flight
        task.add_done_callback(self._task_done)

    def _count_in(self, flight: Flight) -> None:
        flight.counted = True
        self.in_flight += len(flight.items)

    def count_out(self, flight: Flight) -> None:
        """The request is over: its events leave ``in_flight`` before they are settled
        or requeued (so stats() adds up)."""
        if flight.counted:
            flight.counted = False
            self.in_flight -= len(flight.items)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        # Bookkeeping lives here, not in _fly: a task cancelled before its first step
        # (the loop shutting down) never runs a line of its coroutine, and its slot was
        # taken when it was launched.
        flight = self.tasks.pop(task)
        self._flying[flight.lane] -= 1
        if flight.promised:  # cancelled while waiting for its shared slot
            self.promises.withdraw(flight.lane, flight.promised)
            flight.promised = 0
        if not flight.running:  # never sent: its slot goes back without counting
            flight.lane.cancel()
        if task.cancelled():
            # By a close past its timeout (which then reports the queue), or by the loop
            # shutting down (the queue waits for close() to resume delivery). The server
            # may have them: sending them again is harmless, their dedup ids say so.
            self.count_out(flight)
            self._backlog.requeue(flight.items)
        elif task.exception() is not None:  # a bug (a shared limiter's, say): retry later
            log.error("request failed unexpectedly; will retry", exc_info=task.exception())
            flight.lane.on_failure()  # never retried without backing off
            self.count_out(flight)
            error = FuulError(f"unexpected error: {task.exception()!r}")
            self._backlog.retry_later(flight.items, error, self._clock())
        self._wake()

    async def _fly(self, flight: Flight) -> None:
        lane = flight.lane
        flight.running = True
        try:
            async with lane.slot(taken=True):
                if flight.promised:
                    self._claim(flight)
                    if not flight.items:  # the single lane, or a shutdown, took them
                        return
                started = self._clock()
                try:
                    outcome = await self._send(flight)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.exception(
                        "unexpected error delivering %d event(s); will retry", len(flight.items)
                    )
                    outcome = Retry(FuulError(f"unexpected error: {exc!r}"))
        except asyncio.CancelledError:
            raise
        except Exception:
            # No slot: the shared limiter raised. The lane backed off and said so (see
            # Lane.remote_acquire); the flight's events, if it took any, wait for the next.
            self.count_out(flight)
            self._backlog.put_back(flight.items, solo=flight.solo)
            flight.items = []
            return
        self.count_out(flight)
        self._apply(flight, outcome, started)

    def _claim(self, flight: Flight) -> None:
        """The shared slot is ours: take the events promised (what is left of them)."""
        lane, promises = flight.lane, self.promises
        promises.withdraw(lane, flight.promised)
        others = 0 if lane is self._lanes[0] else promises.events(self._lanes[0])
        take = max(0, min(flight.promised, self._backlog.queued - others))
        flight.promised = 0
        flight.items = self._backlog.take(take)
        self._count_in(flight)
        self._wake()  # another request may start waiting for the next slot

    async def _send(self, flight: Flight) -> Outcome:
        items, lane = flight.items, flight.lane
        n = len(items)
        try:
            if lane is self._lanes[1]:
                body = await encode_batch_in_steps([p.event for p in items])
                accept = accept_batch(n)
            else:
                body, accept = encode_event(items[0].event), accept_event
        except (TypeError, ValueError, UnicodeError) as exc:
            # Validation should make this impossible; if it happens, find the culprit
            # alone instead of failing its companions.
            log.error("could not encode %d event(s): %r", n, exc)
            cause = BadRequestError(400, f"cannot encode the event: {exc!r}")
            return Rejected(cause, None)
        return await deliver(lane, self._transport, accept, body=body, events=n)

    def abandon(self) -> None:
        """The close was cancelled: report the events of every request still under way
        now (``shutdown``; the server may have stored some), and cancel the requests."""
        for task, flight in self.tasks.items():
            if task.done():  # its outcome was applied already
                continue
            task.cancel()
            self.count_out(flight)
            items, flight.items = flight.items, []
            self._backlog.settle(items, "failed", UndeliveredError("shutdown", len(items)))
