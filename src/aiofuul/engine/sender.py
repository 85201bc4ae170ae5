"""The background sender behind ``track()``: a bounded queue and one worker task.

The worker wakes on a new event, a finished request, a flush, a close, or the time the
next slot frees; each time it asks :func:`~aiofuul.engine.scheduler.decide` what to start,
starts it, and sleeps again. Each request runs :func:`~aiofuul.engine.delivery.deliver` in a
slot of its lane, and its outcome is applied to the queue in one place
(:mod:`~aiofuul.engine.outcomes`). A shutdown timeout bounds every wait, ``Retry-After`` included.

Every event ends in exactly one counter of the :class:`~aiofuul.engine.ledger.Ledger`:
delivered, duplicate, rejected, failed, dropped, or handed off (left at close in a
shared outbox, for another client); the last four also reach ``on_error`` and the log.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

from ..config import ClientConfig
from ..wire.models import Event
from ..wire.transport import Transport
from .backlog import NEVER, Backlog
from .flights import Flights
from .lanes import Lane
from .ledger import Ledger
from .outcomes import Outcomes
from .overload import OverloadMonitor
from .scheduler import LaneState, Launch, QueueState, decide, events_to_wake
from .seams import Journal, OnError, Stats

__all__ = ["Sender"]

log = logging.getLogger("aiofuul")

_LAST_COMMIT = 2.0  # seconds a close past its timeout waits for the journal's last write
# Seconds a close waits for cancelled tasks to end: a task that ignores its cancellation
# (a library swallowing CancelledError) must not hold aclose() forever.
_STUCK = 5.0


class Sender:
    """Owns the queue and the worker task; the client delegates ``track()`` here."""

    def __init__(
        self,
        config: ClientConfig,
        transport: Transport,
        single: Lane,
        batch: Lane,
        on_error: OnError | None,
        journal: Journal | None = None,
        clock: Callable[[], float] | None = None,
    ):
        self._config = config
        self._clock = clock or single.clock
        self.ledger = Ledger(on_error, journal, config.max_queue, self._clock)
        self._wake = asyncio.Event()
        #: The queue, which ``track()`` adds to (:meth:`Backlog.add`, its hot path). It
        #: wakes the sender only at the queue length that changes its decision (see
        #: _dispatch): below it, track() leaves a sender that can do nothing.
        self.queue = Backlog(config, self.ledger, self._clock, self._wake.set)
        self._linger = config.effective_linger
        self._transport = transport
        self._single = single
        self._batch = batch
        self._outcomes = Outcomes(self.queue, batch, self._clock, config.retry.max_attempts)
        self._flights = Flights(
            (single, batch),
            transport,
            self.queue,
            max_batch=config.max_batch,
            max_waiting=max(1, config.max_in_flight // 2),
            clock=self._clock,
            wake=self._wake.set,
            apply=self._outcomes.apply,
        )
        self._ready = asyncio.Event()  # set once the outbox's leftovers are queued
        self._hurry = 0
        self._stopping = False
        self._worker: asyncio.Task[None] | None = None
        self._suspended = False  # the worker was cancelled by its loop, not by close()
        self._on_end: Callable[[], None] | None = None
        self._finished = False
        self._overload = OverloadMonitor(
            config, lambda: self.ledger.tracked, lambda: len(self.queue), self._clock
        )

    # -- intake (called by the client on the loop) --------------------------------
    def start(
        self, loop: asyncio.AbstractEventLoop, on_end: Callable[[], None] | None = None
    ) -> None:
        """Start the worker on ``loop``; ``on_end()`` is called when it ends."""
        self._on_end = on_end
        self._start_worker(loop)
        self._overload.start(loop)

    def _start_worker(self, loop: asyncio.AbstractEventLoop) -> None:
        self._suspended = False
        self._worker = loop.create_task(self._run(), name="aiofuul-sender")
        self._worker.add_done_callback(self._worker_done)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        self._overload.stop()
        if self._on_end is not None:
            self._on_end()
        if task.cancelled() and not self._stopping:
            # The loop is shutting down without aclose(): asyncio.run() cancels every
            # task before it lets the client close itself (see aiofuul.lifecycle). The
            # queue waits for close(), which resumes delivery; a client that is never
            # closed reports it when it is collected or at exit.
            self._suspended = True
            return
        if self.backlog and not self._stopping:
            log.error(
                "aiofuul sender ended (event loop closing without aclose()?) "
                "with %d event(s) queued",
                self.backlog,
            )
        self.abandon()

    @property
    def in_flight(self) -> int:
        """Events in requests under way."""
        return self._flights.in_flight

    @property
    def backlog(self) -> int:
        """Events waiting to be sent, retries included (what ``max_queue`` bounds)."""
        return len(self.queue)

    def enqueue(self, event: Event) -> None:
        """Queue an event that passed validation (``track()`` calls ``queue.add``
        itself: one call less on its hot path)."""
        self.queue.add(event)

    def enqueue_from_thread(self, event: Event) -> None:
        """:meth:`enqueue` for an event handed over from another thread: there is no
        caller to raise to, so ``"raise"`` acts as ``"drop_new"``; and one that arrives
        after the sender finished (a close raced it) is reported at once."""
        if self._finished:
            self.queue.refuse(event, "shutdown")
        else:
            self.queue.add(event, may_raise=False)

    async def wait_for_room(self) -> None:
        """Wait until the queue has room (``atrack()``)."""
        await self.queue.wait_for_room(lambda: self._stopping)

    # -- the worker ------------------------------------------------------------------
    async def _recover(self, journal: Journal) -> None:
        try:
            events = await journal.recover()
        except Exception:
            log.exception("could not read the outbox; events tracked now are not durable")
            self.ledger.journal = None
            return
        finally:
            self._ready.set()
        if events:
            log.info("resending %d event(s) a previous run left in the outbox", len(events))
        self._adopt(events)
        journal.attach(self._adopt, self._room)

    def _adopt(self, events: list[Event]) -> None:
        """Queue events the journal recovered, or took over from a client that is gone
        (they are in the journal already). Once closing, none: they stay there."""
        if self._stopping or not events:
            return
        self.queue.adopt(events)

    def _room(self) -> int:
        """How many events the journal may hand over now: what the key can take in two
        periods, less this client's backlog (the clients with least to send adopt
        first, and none takes more than it can send soon), within ``max_queue``."""
        if self._stopping:
            return 0
        soon = int(2 * self._overload.ceiling * self._overload.period)
        return max(0, min(soon, self._config.max_queue) - len(self.queue))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        if self.ledger.journal is not None and not self._ready.is_set():
            await self._recover(self.ledger.journal)
        self._ready.set()
        while True:
            self._wake.clear()
            try:
                delay = self._dispatch(self._clock())
            except Exception:  # a bug must not silence the sender for good
                log.exception("aiofuul sender error; continuing")
                delay = 0.1
                self.queue.wake_when(1)
            if self._stopping and not self.backlog and not self._flights.tasks:
                return
            timer = None
            if delay < math.inf:
                # Never 0: a slot estimate that is early by a hair must not spin the loop.
                timer = loop.call_later(max(delay, 0.001), self._wake.set)
            try:
                await self._wake.wait()
            finally:
                if timer is not None:
                    timer.cancel()

    def _dispatch(self, now: float) -> float:
        """Start every request that may start now, set the queue length at which
        ``track()`` must wake the sender, and return how long until it must look again."""
        stopped = self._single.stopped or self._batch.stopped
        if stopped is not None:
            self.queue.expire(now, stopped)
        while True:
            queue = self._queue_state()
            single, batch = self._state(self._single, now), self._state(self._batch, now)
            step = decide(queue, single, batch, now)
            if not isinstance(step, Launch):
                break
            self._flights.launch(step, now)
        self.queue.tell_room()
        # Below this length a new event changes nothing (see events_to_wake): track()
        # leaves a sender that can do nothing asleep, and the timer covers the rest.
        more, wait = events_to_wake(queue, single, batch, now)
        self.queue.wake_when(queue.queued + more if more else NEVER)
        return min(step, wait)

    def _queue_state(self) -> QueueState:
        backlog, promises, config = self.queue, self._flights.promises, self._config
        single, batch = promises.events(self._single), promises.events(self._batch)
        return QueueState(
            backlog.queued, single, batch, backlog.solo, backlog.oldest_after(single + batch),
            len(self._flights.tasks), config.max_in_flight, config.max_batch, self._linger,
            self._hurry > 0,
        )  # fmt: skip

    def _state(self, lane: Lane, now: float) -> LaneState:
        usable, free, next_free = lane.launchable(now, self._flights.flying(lane))
        return LaneState(usable, free, next_free, self._flights.promises.room(lane))

    # -- flush and close ---------------------------------------------------------------
    async def flush(self, timeout: float | None) -> bool:
        if not self._ready.is_set():
            started = self._clock()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except asyncio.TimeoutError:
                return False
            if timeout is not None:
                timeout = max(0.0, timeout - (self._clock() - started))
        done = self.ledger.flush_waiter()
        if done is None:
            return True
        self._hurry += 1
        self._wake.set()
        # Without a timeout, bounded by the retry policy: once the key has been refused
        # (401/403/404) max_attempts times in a row, stop waiting. The events stay
        # queued: delivered if the key is accepted again, else reported after max_elapsed.
        refused = (
            None if timeout is not None else asyncio.ensure_future(self._outcomes.refused.wait())
        )
        try:
            waits: set[asyncio.Future[Any]] = {done} if refused is None else {done, refused}
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            return done.done()
        finally:
            self._hurry -= 1
            if refused is not None:
                refused.cancel()

    async def close(self, timeout: float) -> None:
        """Deliver what is queued within ``timeout``, report the rest; then let on_error run."""
        started = self._clock()
        await self._close(timeout)
        left = timeout - (self._clock() - started)
        await self.ledger.wait_for_callbacks(max(0.1, min(1.0, left)))

    async def _close(self, timeout: float) -> None:
        self._stopping = True
        self._hurry += 1
        self.queue.tell_room(stopping=True)
        self._wake.set()
        if self._suspended:  # cancelled by the loop's shutdown: deliver now, on it
            self._start_worker(asyncio.get_running_loop())
        worker = self._worker
        if worker is None or worker.done():
            self.abandon()
            return
        try:
            await asyncio.wait_for(asyncio.shield(worker), timeout)
        except asyncio.TimeoutError:
            # A shared journal hands off only what it wrote: let it write the last ones
            # (briefly: Redis may be down).
            if self.ledger.journal is not None:
                # asyncio.wait, not wait_for: a commit that ignores its cancellation
                # (inside a Redis client) is left behind rather than waited for.
                last = asyncio.ensure_future(self.ledger.journal.commit())
                done, _ = await asyncio.wait({last}, timeout=_LAST_COMMIT)
                if done and last.exception() is not None:
                    log.error("the journal's last write failed", exc_info=last.exception())
                elif not done:
                    last.cancel()
            worker.cancel()
            for task in list(self._flights.tasks):
                task.cancel()
            ended, stuck = await asyncio.wait({worker, *self._flights.tasks}, timeout=_STUCK)
            for task in ended:  # retrieved, as gather() did: a bug was logged when it ended
                if not task.cancelled():
                    task.exception()
            if stuck:
                log.error("%d sender task(s) ignored their cancellation at close", len(stuck))
        except asyncio.CancelledError:
            # The close itself was cancelled (wait_for(aclose(), ...)): still settle
            # every event now, since nobody will await anything for them later.
            worker.cancel()
            self._flights.abandon()
            self.abandon()
            raise
        self.abandon()

    def abandon(self) -> None:
        """Report everything still queued as left at shutdown; from now on, an event
        handed over late (from another thread) is reported at once."""
        self._finished = True
        self.queue.settle_all("shutdown")

    def stats(self) -> Stats:
        ledger, single, batch, outcomes = self.ledger, self._single, self._batch, self._outcomes
        return Stats(
            tracked=ledger.tracked,
            delivered=ledger.delivered,
            duplicates=ledger.duplicates,
            rejected=ledger.rejected,
            failed=ledger.failed,
            dropped=ledger.dropped,
            handed_off=ledger.handed_off,
            queued=ledger.tracked - ledger.settled(),
            in_flight=self.in_flight,
            requests_single=single.requests,
            requests_batch=batch.requests,
            rate_limited_single=single.rate_limited,
            rate_limited_batch=batch.rate_limited,
            retries=self.queue.retries,
            batches=outcomes.batches,
            mean_batch_size=outcomes.batched_events / outcomes.batches if outcomes.batches else 0.0,
            oldest_queued_age=self.queue.oldest_age(self._clock()),
            arrival_rate=self._overload.rate,
        )
