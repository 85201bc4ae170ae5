"""The background sender behind ``track()``: a bounded queue, one worker task, two lanes.

Light traffic goes out at once, one event per ``POST /v1/events``. When more is waiting
than the single lane's free slots can carry, events are coalesced into
``POST /v1/events/batch`` requests of up to 100; a batch slot (10 a minute) is spent on
a partial batch only once its oldest event has waited ``linger`` for company, or when
``flush()``/``aclose()`` asks for everything now. The worker wakes on a new event, a
finished request, a flush, a close, or the time the next slot frees; it never sleeps
through any of them, so a shutdown timeout bounds every wait, ``Retry-After`` included.

Every event ends in exactly one counter: delivered, duplicate, rejected, failed or
dropped, and each of the last three also reaches ``on_error`` and the log.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import time
from collections import deque
from collections.abc import Iterable

from .config import ClientConfig
from .errors import (
    APIError,
    BadRequestError,
    FuulError,
    PermissionDeniedError,
    QueueFullError,
    UndeliveredError,
)
from .lanes import Lane
from .ledger import Journal, Ledger, OnError, Stats, _Pending
from .models import Event, decode_ingested, encode_batch, encode_event, required_scope
from .transport import Action, Transport

__all__ = ["Sender"]

_event_of = operator.attrgetter("event")

log = logging.getLogger("aiofuul")


class _Flight:
    """One request under way: its lane, its events, and whether it was answered (its
    slot given back, its events no longer counted in flight)."""

    __slots__ = ("answered", "claim", "items", "lane")

    def __init__(self, lane: Lane, items: list[_Pending], claim: int = 0):
        self.lane = lane
        self.items = items
        self.claim = claim  # events to take from the queue once the shared slot is ours
        self.answered = False


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
    ):
        self._config = config
        self.ledger = Ledger(on_error, journal, config.max_queue)
        self._retry = config.retry
        self._linger = config.effective_linger
        self._max_queue = config.max_queue
        self._transport = transport
        self._single = single
        self._batch = batch
        self._queue: deque[_Pending] = deque()
        self._solo: deque[_Pending] = deque()  # sent one by one after an unexplained batch 400
        self._tasks: dict[asyncio.Task[None], _Flight] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._stop_logged: set[str] = set()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room_waiters = 0
        self._claimed = {single.name: 0, batch.name: 0}
        self._waiting = {single.name: 0, batch.name: 0}
        self._max_waiting = max(1, config.max_in_flight // 2)
        self._ready = asyncio.Event()  # set once the outbox's leftovers are queued
        self._urgent = 0
        self._stopping = False
        self._worker: asyncio.Task[None] | None = None
        self.in_flight = self.retries = self.batches = self.batched_events = 0

    # -- intake (called by the client on the loop) --------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._worker = loop.create_task(self._run(), name="aiofuul-sender")
        self._worker.add_done_callback(self._worker_done)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        # Also reached when the loop shuts down without aclose() and cancels the
        # worker, possibly before it ever ran: whatever is queued is reported here.
        if self.backlog and not self._stopping:
            log.error(
                "aiofuul sender ended (event loop closing without aclose()?) "
                "with %d event(s) queued",
                self.backlog,
            )
        self.abandon()

    @property
    def backlog(self) -> int:
        """Events waiting to be sent, retries included (what ``max_queue`` bounds)."""
        return len(self._queue) + len(self._solo)

    def enqueue(self, event: Event, may_raise: bool = True) -> None:
        """Queue an event that passed validation, applying the queue-full policy
        (``"raise"`` becomes ``"drop_new"`` when there is no caller to raise to)."""
        queue = self._queue
        if len(queue) + len(self._solo) >= self._max_queue:
            policy = self._config.queue_full
            if policy == "raise" and may_raise:
                raise QueueFullError(f"queue full ({self._max_queue} events)")
            if policy != "drop_old":
                self.ledger.drop(self.ledger.accept(event), policy)
                return
            self.ledger.drop(queue.popleft(), policy)
        ledger = self.ledger
        queue.append(ledger.accept(event))
        if ledger.journal is not None:
            ledger.journal.added(event)
        if not self._wake.is_set():
            self._wake.set()

    async def wait_for_room(self) -> None:
        """Wait until the queue has room (``atrack()``)."""
        while self.backlog >= self._config.max_queue and not self._stopping:
            self._room.clear()
            self._room_waiters += 1
            try:
                await self._room.wait()
            finally:
                self._room_waiters -= 1

    def _requeue(self, items: Iterable[_Pending]) -> None:
        self._queue.extendleft(reversed(list(items)))

    def _retry_later(self, items: list[_Pending], error: FuulError, started: float) -> None:
        """The request that started at ``started`` failed: requeue its events, or report
        those out of attempts or time."""
        now = time.monotonic()
        keep: list[_Pending] = []
        spent: list[_Pending] = []
        for p in items:
            if p.attempts == 0:  # set here, not per request: only failures pay for it
                p.first_try = started
            p.attempts += 1
            expired = now - p.first_try >= self._retry.max_elapsed
            (spent if p.attempts >= self._retry.max_attempts or expired else keep).append(p)
        if keep:
            self.retries += 1
            self._requeue(keep)
        if spent:
            error = UndeliveredError("retries_exhausted", len(spent), error)
            self.ledger.settle(spent, "failed", error)

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
        for event in events:
            self._queue.append(self.ledger.accept(event))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        if self.ledger.journal is not None:
            await self._recover(self.ledger.journal)
        self._ready.set()
        while True:
            self._wake.clear()
            try:
                delay = self._dispatch(time.monotonic())
            except Exception:  # a bug must not silence the sender for good
                log.exception("aiofuul sender error; continuing")
                delay = 0.1
            if self._stopping and not self.backlog and not self._tasks:
                return
            timer = None
            if 0 < delay < float("inf"):
                timer = loop.call_later(delay, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                if timer is not None:
                    timer.cancel()

    def _dispatch(self, now: float) -> float:
        """Start every request that may start now; return how long until one may."""
        single, batch = self._single, self._batch
        single_ok, batch_ok = single.stopped is None, batch.stopped is None
        if not (single_ok or batch_ok):
            cause = single.stopped or batch.stopped
            items = [*self._solo, *self._queue]
            self._solo.clear()
            self._queue.clear()
            if items:
                self.ledger.settle(items, "failed", UndeliveredError("stopped", len(items), cause))
            return float("inf")
        queue, max_batch = self._queue, self._config.max_batch
        # With a shared limiter, requests wait for their shared slot before taking their
        # events (see _launch): ``claimed`` counts the events promised to them. When
        # nothing unpromised is left and time is up (urgent), singles may take events a
        # waiting batch was promised (it then leaves smaller), never the reverse: at the
        # end of a backlog that is what sends everything soonest.
        claimed = self._claimed
        while True:
            for_single = len(queue) - claimed[single.name]
            for_batch = for_single - claimed[batch.name]
            if not (for_single > 0 or self._solo):
                break
            if len(self._tasks) >= self._config.max_in_flight:
                break
            if self._solo:
                lane = single if single_ok else batch
                if not lane.try_acquire(now):
                    break
                self._start(lane, [self._solo.popleft()])
                continue
            # Linger counts for the oldest event nobody was promised yet.
            oldest = queue[min(len(queue) - 1, len(queue) - for_single + claimed[batch.name])]
            urgent = self._urgent > 0 or now - oldest.enqueued >= self._linger
            wants_batch = for_batch >= max_batch or (
                for_batch > 0 and urgent and (not single_ok or for_batch > single.free_slots(now))
            )
            if batch_ok and wants_batch and self._may_wait(batch) and batch.try_acquire(now):
                self._launch(batch, min(for_batch, max_batch))
            elif (
                single_ok
                and (for_batch > 0 or urgent)
                and self._may_wait(single)
                and single.try_acquire(now)
            ):
                self._launch(single, 1)
            else:
                break
        if self._room_waiters and self.backlog < self._config.max_queue:
            self._room.set()
        if not (for_single > 0 or self._solo) or len(self._tasks) >= self._config.max_in_flight:
            return float("inf")
        wake_at = float("inf")
        if single_ok and self._may_wait(single):
            wake_at = single.next_free(now)
        if batch_ok and for_batch > 0 and self._may_wait(batch):
            at = batch.next_free(now)
            if for_batch < max_batch and not self._urgent:
                at = max(at, queue[len(queue) - for_batch].enqueued + self._linger)
            wake_at = min(wake_at, at)
        return max(0.0, wake_at - now)

    def _may_wait(self, lane: Lane) -> bool:
        # Requests waiting for a shared slot may fill half the in-flight budget per lane,
        # so each lane always has room to send.
        return lane.remote is None or self._waiting[lane.name] < self._max_waiting

    def _launch(self, lane: Lane, count: int) -> None:
        """Start a request for the next ``count`` queued events.

        With a shared limiter the events stay queued until the request has its shared
        slot: many processes wait for the same slots, and events held by a waiting
        request could have left by this process's other lane meanwhile. A waiting batch
        is promised a full batch, and takes what is there (up to that) when its slot
        comes: events that arrive while it waits fill it."""
        if lane.remote is None:
            self._start(lane, self._take(count))
            return
        if lane is self._batch:
            count = self._config.max_batch
        self._claimed[lane.name] += count
        self._waiting[lane.name] += 1
        self._start(lane, [], claim=count)

    def _take(self, count: int) -> list[_Pending]:
        pop = self._queue.popleft
        return [pop() for _ in range(count)]

    def _start(self, lane: Lane, items: list[_Pending], claim: int = 0) -> None:
        self.in_flight += len(items)
        flight = _Flight(lane, items, claim)
        task = asyncio.get_running_loop().create_task(self._deliver(flight))
        self._tasks[task] = flight
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        # Bookkeeping lives here, not in _deliver: a task cancelled before its first
        # step (the loop shutting down) never runs a line of its coroutine.
        flight = self._tasks.pop(task)
        self._answered(flight)
        if flight.claim:  # cancelled while waiting for its shared slot
            self._claimed[flight.lane.name] -= flight.claim
            self._waiting[flight.lane.name] -= 1
        if task.cancelled():
            self.ledger.settle(
                flight.items, "failed", UndeliveredError("shutdown", len(flight.items))
            )
        self._wake.set()

    def _answered(self, flight: _Flight) -> None:
        """The request is over: its slot counts from now, and its events leave
        ``in_flight`` before they are settled or requeued (so stats() adds up)."""
        if not flight.answered:
            flight.answered = True
            flight.lane.release()
            self.in_flight -= len(flight.items)

    def _release_remote(self, lane: Lane, token: str | None) -> None:
        # In the background: no await may sit between a response and the settling of
        # its events, or a cancellation there would report delivered events as lost.
        if lane.remote is not None and token is not None:
            task = asyncio.get_running_loop().create_task(lane.remote_release(token))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _deliver(self, flight: _Flight) -> None:
        lane = flight.lane
        token = await lane.remote_acquire()
        if flight.claim:
            name = lane.name
            self._claimed[name] -= flight.claim
            self._waiting[name] -= 1
            others = 0 if lane is self._single else self._claimed[self._single.name]
            take = max(0, min(flight.claim, len(self._queue) - others))
            flight.claim = 0
            flight.items = self._take(take)
            self.in_flight += take
            self._wake.set()  # another request may start waiting for the next slot
            if not take:  # the single lane, or a shutdown, took them meanwhile
                self._answered(flight)
                self._release_remote(lane, token)
                return
        items = flight.items
        n = len(items)
        is_batch = lane is self._batch
        lane.requests += 1
        started = time.monotonic()
        try:
            try:
                body = (
                    encode_batch(list(map(_event_of, items)))
                    if is_batch
                    else encode_event(items[0].event)
                )
            except (TypeError, ValueError, UnicodeError) as exc:
                # Validation should make this impossible; if it happens, find the culprit
                # alone instead of failing its companions.
                self._answered(flight)
                self._release_remote(lane, token)
                log.error("could not encode %d event(s): %r", n, exc)
                if n > 1:
                    self._solo.extend(items)
                else:
                    cause = FuulError(f"cannot encode the event: {exc!r}")
                    self.ledger.settle(items, "rejected", UndeliveredError("rejected", 1, cause))
                return
            try:
                response = await self._transport.request(lane.method, lane.path, body=body)
            except FuulError as exc:
                self._answered(flight)
                self._release_remote(lane, token)
                lane.on_failure(self._retry)
                self._retry_later(items, exc, started)
                return
            self._answered(flight)
            self._release_remote(lane, token)
            action = lane.note(response, self._retry)
            if action is Action.OK:
                ingested = decode_ingested(response.body) if is_batch else n
                if ingested is None or not 0 <= ingested <= n:
                    ingested = n  # a 2xx stored them all, whatever its body says
                if is_batch:
                    self.batches += 1
                    self.batched_events += n
                # The server does not say which were known already; the counts are exact.
                self.ledger.settle(items[:ingested], "delivered")
                self.ledger.settle(items[ingested:], "duplicates")
            elif action is Action.DUPLICATE:
                self.ledger.settle(items, "duplicates")
            elif action is Action.RATE_LIMITED:
                self.retries += 1
                self._requeue(items)
            elif action is Action.RETRY:
                self._retry_later(items, response.error(), started)
            elif action is Action.REJECT and is_batch and n > 1:
                self._isolate(items, response.error())
            elif action is Action.REJECT:
                self.ledger.settle(
                    items, "rejected", UndeliveredError("rejected", n, response.error())
                )
            else:
                if isinstance(lane.stopped, PermissionDeniedError):
                    lane.stopped = lane.stopped.for_scope(required_scope(items[0].event.name))
                first = lane.name not in self._stop_logged
                if first:
                    self._stop_logged.add(lane.name)
                    log.error(
                        "%s %s refused (%s): this key cannot send here; failing its events",
                        lane.method,
                        lane.path,
                        lane.stopped,
                    )
                error = UndeliveredError("stopped", n, lane.stopped)
                self.ledger.settle(items, "failed", error, quiet=not first)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._answered(flight)
            log.exception("unexpected error delivering %d event(s); will retry", n)
            self._retry_later(items, FuulError(f"unexpected error: {exc!r}"), started)

    def _isolate(self, items: list[_Pending], error: APIError) -> None:
        """An atomic batch was refused: report the events the server named, send the rest
        again; if it named none, send each alone to find the bad ones."""
        bad = error.event_errors(len(items)) if isinstance(error, BadRequestError) else None
        if bad is None:
            self._solo.extend(items)
            return
        for index, messages in bad.items():
            cause = BadRequestError(error.status, messages)
            self.ledger.settle([items[index]], "rejected", UndeliveredError("rejected", 1, cause))
        self._requeue(p for i, p in enumerate(items) if i not in bad)

    # -- flush and close ---------------------------------------------------------------
    async def flush(self, timeout: float | None) -> bool:
        if not self._ready.is_set():
            started = time.monotonic()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except asyncio.TimeoutError:
                return False
            if timeout is not None:
                timeout = max(0.0, timeout - (time.monotonic() - started))
        done = self.ledger.flush_waiter()
        if done is None:
            return True
        self._urgent += 1
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(done), timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self._urgent -= 1

    async def close(self, timeout: float) -> None:
        self._stopping = True
        self._urgent += 1
        self._room.set()
        self._wake.set()
        worker = self._worker
        if worker is None:
            self.abandon()
            return
        try:
            await asyncio.wait_for(asyncio.shield(worker), timeout)
        except asyncio.TimeoutError:
            worker.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(worker, *self._tasks, return_exceptions=True)
        except asyncio.CancelledError:
            worker.cancel()
            raise
        self.abandon()

    def abandon(self) -> None:
        """Report everything still queued as left at shutdown."""
        items = [*self._solo, *self._queue]
        self._solo.clear()
        self._queue.clear()
        if items:
            self.ledger.settle(items, "failed", UndeliveredError("shutdown", len(items)))

    def stats(self) -> Stats:
        ledger = self.ledger
        return Stats(
            tracked=ledger.tracked,
            delivered=ledger.delivered,
            duplicates=ledger.duplicates,
            rejected=ledger.rejected,
            failed=ledger.failed,
            dropped=ledger.dropped,
            queued=ledger.tracked - ledger.settled(),
            in_flight=self.in_flight,
            requests_single=self._single.requests,
            requests_batch=self._batch.requests,
            rate_limited_single=self._single.rate_limited,
            rate_limited_batch=self._batch.rate_limited,
            retries=self.retries,
            batches=self.batches,
            mean_batch_size=self.batched_events / self.batches if self.batches else 0.0,
        )
