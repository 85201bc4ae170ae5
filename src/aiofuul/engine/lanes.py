"""A lane: one endpoint with its limiters, counters and health, shared by the awaited
calls and the background sender so that both spend the same budget.

A request holds a :class:`Slot` of its lane from before it is sent until its answer
arrives: ``async with lane.slot():`` takes the local slot (waiting for one) and, with a
shared limiter, the shared (Redis) one, and gives both back on every way out,
cancellation included. The background sender takes the local slot itself when it
decides to start a request (``lane.slot(taken=True)``), since that decision must not
wait.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from types import TracebackType

from ..config import RetryPolicy
from ..errors import APIError, FuulError
from .limits import LaneName, Limits, RateLimit, SlidingWindowLimiter
from .redis_limiter import RedisLimiter

__all__ = ["Lane", "Slot", "make_lanes"]

log = logging.getLogger("aiofuul")

# The shortest pause after the shared limiter raised, whatever the retry policy says (a
# policy without backoff must not turn a broken limiter into a hot loop).
_LIMITER_MIN_BACKOFF = 0.1


class Slot:
    """One request's place on a lane (see the module docstring)."""

    __slots__ = ("_deadline", "_error", "_lane", "_local", "_token")

    def __init__(
        self, lane: Lane, taken: bool, deadline: float | None, error: FuulError | None
    ) -> None:
        self._lane = lane
        self._local = taken
        self._token: str | None = None
        self._deadline = deadline
        self._error = error

    async def __aenter__(self) -> Slot:
        lane = self._lane
        if not self._local:
            await lane.wait_for_slot(self._deadline, self._error)
            self._local = True
        try:
            self._token = await lane.remote_acquire()
        except BaseException:
            # Never sent: the local slot goes back without counting.
            self._local = False
            lane.cancel()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # No await here: between an answer and the settling of its events, a
        # cancellation must find nothing to interrupt.
        if self._local:
            self._local = False
            self._lane.release(self._token)


class Lane:
    """The requests of one endpoint: ``single``, ``batch``, ``status``, ``pipeline`` or
    ``conversions``."""

    def __init__(
        self,
        name: LaneName,
        method: str,
        path: str,
        limit: RateLimit,
        retry: RetryPolicy,
        *,
        params: Mapping[str, str] | None = None,
        shared: SlidingWindowLimiter | None = None,
        remote: RedisLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
        slow_start: bool = True,
    ):
        self.name = name
        self.method = method
        self.path = path
        self.retry = retry
        self.clock = clock
        #: The query every request of the lane carries (the client's ``?project_id=``).
        self.params = params
        self.limiter = SlidingWindowLimiter(limit, clock)
        self._limiters = [self.limiter] if shared is None else [self.limiter, shared]
        # The same windows again in Redis, when the key's limits are shared by processes.
        self.remote = remote
        self._windows: list[tuple[str, RateLimit]] = [(name, limit)]
        if shared is not None:
            self._windows.append(("shared", shared.limit))
        if remote is not None:
            for limiter in self._limiters:
                remote.watch(limiter)
        self._background: set[asyncio.Task[None]] = set()
        self._limiter_errors = 0  # the shared limiter's failures in a row
        # Slow start: the background sender keeps at most this many requests in flight
        # on the lane. 1 on first contact and after a 429, +1 per answer other than a 429
        # (so 1, 2, 4, 8... per round trip): a key spent elsewhere costs a request, not
        # a burst.
        self._window = 1 if slow_start else limit.requests
        self._slow_start = slow_start
        self.requests = 0
        self.rate_limited = 0
        self.failures_in_a_row = 0
        #: The refusal (401/403/404) the lane is paused by, or None.
        self.stopped: APIError | None = None
        # When a refused lane's background sender may probe again. Not a pause of the
        # limiter: a direct call on a refused lane is sent at once, and raises at once.
        self._probe_at = 0.0

    # -- slots over every limiter the lane counts against -------------------------
    def slot(
        self,
        *,
        taken: bool = False,
        deadline: float | None = None,
        error: FuulError | None = None,
    ) -> Slot:
        """A request's slot: ``async with lane.slot():`` (see the module docstring).
        ``taken``: the local slot is already held (:meth:`try_acquire`). A wait that would
        pass ``deadline`` raises ``error`` (the last failure) instead."""
        return Slot(self, taken, deadline, error)

    def next_free(self, now: float) -> float:
        """When a slot is free on every limiter of this lane."""
        return max(limiter.next_free(now) for limiter in self._limiters)

    def free_slots(self, now: float) -> int:
        """How many requests could start now."""
        return self.availability(now)[0]

    def availability(self, now: float) -> tuple[int, float]:
        """``(free_slots, next_free)`` at ``now``, the windows walked once."""
        at = self.next_free(now)
        if at > now:
            return 0, at
        return min(limiter.capacity - limiter.used(now) for limiter in self._limiters), at

    def try_acquire(self, now: float) -> bool:
        """Take a slot on every limiter, or on none."""
        if self.next_free(now) > now:
            return False
        for limiter in self._limiters:
            limiter.try_acquire(now)
        return True

    def release(self, token: str | None = None) -> None:
        """The request's answer (or failure) arrived: its slots count from now. The
        shared slot (``token``) is given back in the background."""
        for limiter in self._limiters:
            limiter.release()
        if self.remote is not None and token is not None:
            task = asyncio.get_running_loop().create_task(self.remote_release(token))
            self._background.add(task)
            task.add_done_callback(self._released)

    def _released(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Redis being down is handled in the limiter; anything else is a bug to see.
            log.error("giving back a shared slot failed", exc_info=task.exception())

    async def settle(self, timeout: float = 2.0) -> None:
        """Wait (a little) for shared slots still being given back, before the shared
        limiter's connections close under them."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout)

    def cancel(self) -> None:
        """Give back a slot whose request was never sent: it does not count."""
        for limiter in self._limiters:
            limiter.cancel()

    async def wait_for_slot(self, deadline: float | None, error: FuulError | None) -> None:
        """Wait for a local slot and take it; after a failure, give up with it rather than
        wait past ``deadline`` (a long Retry-After, say)."""
        while True:
            now = self.clock()
            if self.try_acquire(now):
                return
            delay = self.next_free(now) - now
            if math.isinf(delay):
                # Every slot of some limiter is held by a request in flight: wait for
                # that limiter to get one back.
                held = next(x for x in self._limiters if math.isinf(x.next_free(now)))
                await held.wait()
                continue
            if error is not None and deadline is not None and now + delay > deadline:
                raise error
            await asyncio.sleep(delay)

    def pause(self, seconds: float) -> None:
        """Send nothing on this lane for ``seconds``."""
        self.limiter.pause(seconds)

    async def remote_acquire(self) -> str | None:
        """With a shared limiter, wait for this request's slot in it (a token), else None.
        When the limiter raises (whatever it raises), the lane backs off before the next
        try (:meth:`_on_limiter_error`) and the error goes on to the caller."""
        if self.remote is None:
            return None
        try:
            token = await self.remote.acquire(self._windows)
        except Exception as exc:
            self._on_limiter_error(exc)
            raise
        if self._limiter_errors:
            log.warning(
                "%s %s: the shared limiter gives slots again (after %d failed tries)",
                self.method, self.path, self._limiter_errors,
            )  # fmt: skip
            self._limiter_errors = 0
        return token

    def _on_limiter_error(self, exc: Exception) -> None:
        """The shared limiter raised instead of giving a slot: pause the lane, longer
        each time in a row (bounded by ``max_backoff``, and never less than half of each
        step nor than ``_LIMITER_MIN_BACKOFF``, so that nothing spins whatever it
        raises), and say so once per failing spell, not per try."""
        retry, n = self.retry, self._limiter_errors
        step = min(retry.max_backoff, retry.initial_backoff * retry.multiplier ** min(n, 64))
        step = max(step, _LIMITER_MIN_BACKOFF)
        self.pause(random.uniform(step / 2, step))
        if n == 0:
            log.error(
                "%s %s: the shared limiter failed (%s); no request leaves this lane "
                "until it gives a slot again, tried again with growing pauses",
                self.method, self.path, exc or type(exc).__name__, exc_info=exc,
            )  # fmt: skip
        self._limiter_errors += 1

    async def remote_release(self, token: str | None) -> None:
        """Give the shared slot back (it counts from now)."""
        if self.remote is not None:
            await self.remote.release(self._windows, token)

    # -- feedback ----------------------------------------------------------------
    def on_rate_limited(self, after: float | None) -> None:
        """A 429: stop launching at once, and re-learn the capacity from the answer."""
        self.rate_limited += 1
        if self._slow_start:
            self._window = 1
        for limiter in self._limiters:
            limiter.on_rate_limited()
        if after is not None:
            self.pause(min(after, self.retry.max_retry_after))
        else:
            # No hint: besides our own (now smaller) window, leave about one slot's
            # worth of the period, jittered, so the key's other users get a turn.
            limit = self.limiter.limit
            self.pause(random.uniform(0.5, 1.5) * limit.period / self.limiter.capacity)

    def on_failure(self, after: float | None = None) -> None:
        """A transport error or 5xx: back off this lane, longer each time in a row (or as
        long as the server's ``Retry-After`` says)."""
        wait = self.retry.backoff(self.failures_in_a_row)
        if after is not None:
            wait = max(wait, min(after, self.retry.max_retry_after))
        self.pause(wait)
        self.failures_in_a_row += 1
        # An answer all the same: the slow start guards against a key spent elsewhere
        # (429s); a failing server is the backoff's business.
        self._grow_window()

    def on_stop(self, cause: APIError) -> None:
        """A 401, 403 or 404: perhaps for good (a wrong key), perhaps for a moment (a
        gateway during a deploy). The background sender probes with one request at a
        time, backing off; direct calls are not held back (they raise at once)."""
        self.stopped = cause
        self._probe_at = self.clock() + self.retry.backoff(self.failures_in_a_row)
        self.failures_in_a_row += 1

    def launchable(self, now: float, flying: int) -> tuple[bool, int, float]:
        """``(usable, free, next_free)`` for the background sender at ``now``, which has
        ``flying`` requests in flight on this lane (direct calls apart: their answers do
        not wake it). A lane refused by a 401/403/404 sends one probe at a time once its
        backoff is over."""
        free, next_free = self.availability(now)
        if flying >= self._window:  # slow start: wait for one of its answers
            free, next_free = 0, math.inf
        if self.stopped is None:
            return True, free, next_free
        if now < self._probe_at:
            return flying == 0, 0, max(next_free, self._probe_at)
        return flying == 0, min(free, 1), next_free

    def _grow_window(self) -> None:
        if self._window < self.limiter.limit.requests:
            self._window += 1

    def on_answer(self, delivered: bool) -> None:
        """A final answer (delivered, duplicate, rejected): the lane is healthy."""
        self.failures_in_a_row = 0
        self._grow_window()
        if delivered:
            self.stopped = None


#: (name, method, path) of each lane; the name is also the field of :class:`Limits`.
_LANES: tuple[tuple[LaneName, str, str], ...] = (
    ("single", "POST", "events"),
    ("batch", "POST", "events/batch"),
    ("status", "GET", "events/status"),
    ("pipeline", "GET", "events/pipeline"),
    ("conversions", "GET", "conversions"),
    # aiofuul.api's groups: each request names its own path under the group's.
    ("users", "GET", "user"),
    ("referral_codes", "GET", "referral_codes"),
    ("affiliates", "GET", "affiliates"),
    ("leaderboards", "GET", "payouts/leaderboard"),
    ("payouts", "GET", "payouts"),
    ("claim_checks", "GET", "claim-checks"),
    ("audiences", "GET", "audiences"),
    ("affiliate_portal", "GET", "affiliate-portal"),
)


def make_lanes(
    limits: Limits,
    retry: RetryPolicy,
    params: Mapping[str, str] | None,
    remote: RedisLimiter | None,
    clock: Callable[[], float],
    slow_start: bool = True,
) -> dict[LaneName, Lane]:
    """A client's lanes, by name, all counting against ``limits.shared`` if it is set.
    ``slow_start=False``: the sender may fill its in-flight budget at once (unit tests
    of the scheduling)."""
    shared = SlidingWindowLimiter(limits.shared, clock) if limits.shared else None
    return {
        name: Lane(name, method, path, getattr(limits, name), retry,
                   params=params, shared=shared, remote=remote, clock=clock,
                   slow_start=slow_start)
        for name, method, path in _LANES
    }  # fmt: skip
