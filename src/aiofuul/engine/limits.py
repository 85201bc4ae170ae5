"""Rate limits: what the server allows, and a limiter that never exceeds it.

The server's limits are per endpoint and per key (100 requests a minute for
``POST /v1/events`` and for the status query, 10 for ``POST /v1/events/batch``), and
nobody says how the server counts a minute. :class:`SlidingWindowLimiter` is safe
against every way of counting: it admits at most ``requests`` in **any** window of
``period`` seconds, measured from when each response *arrived*. Since the server saw a
request somewhere between its send and its response, a slot reused a full period
after the response is a full period after the server counted it too, whatever the
network did in between. (A token bucket such as ``aiolimiter.AsyncLimiter(100, 60)``
is not: it lets 199 requests through in one sliding minute.)

On a 429 (someone else spends the same key, or the server allows less) the limiter
cuts its capacity to 80% of what it had in use, and remembers that level (the hint).
It does not grow for a full period. Then it grows one slot at a time, spread over the
period, so that a key still shared answers the first slot too many with one 429, not
with a burst of them: fast (a slot every ``period / capacity``) up to 90% of the hint
(the settle point); there it holds one period (two after a probe drew the 429), then
probes upwards by a tenth of the limit a period. While the other user still spends
the key, a probe draws the next 429, about one every three periods, and the capacity
stays near our share. Once the capacity has been at or above the hint for a period
without a 429, the other user has gone (or spends less): the hint is forgotten and the
capacity grows fast again, up to the limit. From a tenth of the limit, full speed is
back within five periods. A 429 in the first period of use says nothing about our
share (the server's window may still hold a predecessor's requests): it leaves no hint,
and the capacity grows back by a quarter a period.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Literal

from ..errors import ConfigurationError

__all__ = ["DEFAULT_LIMITS", "LaneName", "Limits", "RateLimit", "SlidingWindowLimiter"]

#: The endpoints' names: the fields of :class:`Limits` that hold one endpoint's limit.
LaneName = Literal[
    "single", "batch", "status", "pipeline", "conversions",
    # The endpoint groups of aiofuul.api, one lane each:
    "users", "referral_codes", "affiliates", "leaderboards", "payouts", "claim_checks",
    "audiences", "affiliate_portal",
]  # fmt: skip


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` in any window of ``period`` seconds."""

    requests: int
    period: float = 60.0

    def __post_init__(self) -> None:
        if self.requests < 1 or not self.period > 0:
            raise ConfigurationError("a RateLimit needs requests >= 1 and period > 0")

    def scaled(self, time_scale: float) -> RateLimit:
        """The same limit with its period multiplied by ``time_scale`` (tests, demos)."""
        return RateLimit(self.requests, self.period * time_scale)


@dataclass(frozen=True)
class Limits:
    """The limits of each endpoint, per API key.

    ``shared``, when set, is one more limit that requests on *all* endpoints count
    against together (for keys whose limit is one budget, not one per endpoint).

    Example (a key with half the documented budget)::

        Limits(single=RateLimit(50), batch=RateLimit(5))
    """

    single: RateLimit = field(default_factory=lambda: RateLimit(100, 60.0))
    batch: RateLimit = field(default_factory=lambda: RateLimit(10, 60.0))
    status: RateLimit = field(default_factory=lambda: RateLimit(100, 60.0))
    shared: RateLimit | None = None
    pipeline: RateLimit = field(default_factory=lambda: RateLimit(100, 60.0))
    """``GET /v1/events/pipeline`` (documented: 100 a minute)."""
    conversions: RateLimit = field(default_factory=lambda: RateLimit(100, 60.0))
    """``GET /v1/conversions`` (not published: assumed the standard 100 a minute)."""
    # The endpoint groups of aiofuul.api (fuul.users, ...), one budget each. Only
    # payouts/totals is published (100 a minute); the rest assume the standard 100.
    users: RateLimit = field(default_factory=lambda: RateLimit(100, 60.0))
    referral_codes: RateLimit = field(default_factory=lambda: RateLimit(100, 60.0))
    affiliates: RateLimit = field(default_factory=lambda: RateLimit(100, 60.0))
    leaderboards: RateLimit = field(default_factory=lambda: RateLimit(100, 60.0))
    payouts: RateLimit = field(default_factory=lambda: RateLimit(100, 60.0))
    claim_checks: RateLimit = field(default_factory=lambda: RateLimit(100, 60.0))
    audiences: RateLimit = field(default_factory=lambda: RateLimit(100, 60.0))
    affiliate_portal: RateLimit = field(default_factory=lambda: RateLimit(100, 60.0))

    def events_per_second(self, max_batch: int) -> float:
        """The most events the two event lanes carry together: a second's single
        requests plus its full batches of ``max_batch`` (1,100 a minute documented)."""
        single, batch = self.single, self.batch
        return single.requests / single.period + batch.requests * max_batch / batch.period

    def scaled(self, time_scale: float) -> Limits:
        """Every period multiplied by ``time_scale``: ``DEFAULT_LIMITS.scaled(1/60)``
        gives the documented limits per second."""
        scaled = {
            f.name: limit.scaled(time_scale)
            for f in fields(self)
            if isinstance(limit := getattr(self, f.name), RateLimit)
        }
        return replace(self, **scaled)


#: The documented limits of the Fuul API: 100/min single, status and pipeline, 10/min batch.
DEFAULT_LIMITS = Limits()

# Recovery from 429s (the module docstring tells the whole rule). After a 429 the
# capacity drops to this fraction of what was in use, the hint (the level that drew it):
_BACKOFF_FACTOR = 0.8
# After a quiet period (a full period without a 429) it grows by this many slots a
# period per slot it has, up to this fraction of the hint, and again once the hint is
# forgotten. All growth comes one slot at a time, spread over the period.
_GROWTH_RATE = 1.0
_SETTLE_FRACTION = 0.9
# There it holds a period (this many after a probe drew the 429), then probes up by
# this fraction of the limit a period (at least one slot).
_PROBE_PERIODS = 2
_PROBE_STEP = 0.1
# A 429 in the first period of use says nothing about our share of the key: the
# server's window may still hold the requests of the process we replace (a restart, a
# resumed import). It leaves no hint, and capacity grows back by this many slots a
# quiet period per slot it has.
_RESTART_GROWTH = 0.25


class SlidingWindowLimiter:
    """Admits at most ``limit.requests`` requests in any sliding window of ``limit.period``.

    A slot is taken with :meth:`try_acquire` (or ``await acquire()``) before the request
    and given back with :meth:`release` when its response (or failure) arrives: the
    window counts it from then. Not thread-safe: use it from one event loop.
    """

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self._clock = clock
        self._done: deque[float] = deque()  # release times, in release order
        self._in_flight = 0
        self._capacity = limit.requests
        self._ceiling = limit.requests  # lowered while a shared limiter is unreachable
        self._saved_capacity = limit.requests
        self._paused_until = 0.0
        # Recovery from 429s (see the module docstring):
        self._hint: int | None = None  # what was in use when the server last said 429
        self._growth = _GROWTH_RATE  # the growth without a hint, slots per slot a period
        self._cut_at = -math.inf  # when the last 429 cut the capacity
        self._last_change = -math.inf  # when the capacity last changed (a cut or +1)
        self._settled_at: float | None = None  # when it reached the settle point
        self._reached_hint_at: float | None = None  # when it reached the hint
        self._hold = 1  # quiet periods at the settle point before probing above it
        self._probed = False  # a probe above the settle point since the last 429
        self._first_use: float | None = None
        self._released: asyncio.Event | None = None

    # -- state -----------------------------------------------------------------
    @property
    def capacity(self) -> int:
        """The requests per window this limiter admits now (lower after 429s)."""
        return self._capacity

    @property
    def in_flight(self) -> int:
        """Slots taken and not yet released."""
        return self._in_flight

    def _prune(self, now: float) -> None:
        horizon = now - self.limit.period
        done = self._done
        while done and done[0] <= horizon:
            done.popleft()

    def used(self, now: float | None = None) -> int:
        """Requests counted in the current window, in flight included."""
        now = self._clock() if now is None else now
        self._prune(now)
        return len(self._done) + self._in_flight

    def next_free(self, now: float | None = None) -> float:
        """The clock time at which a slot is free (``now`` if one is), or ``math.inf``
        when every slot is held by a request still in flight."""
        now = self._clock() if now is None else now
        self._recover(now)
        self._prune(now)
        excess = len(self._done) + self._in_flight - self._capacity
        if excess < 0:
            return max(now, self._paused_until)
        if excess >= len(self._done):
            return math.inf
        free_at = self._done[excess] + self.limit.period
        if excess == 0 and self._capacity < self._ceiling:
            # Recovering: the next slot may come from growth before the window frees
            # one (an estimate that may be early: the caller asks again then).
            free_at = min(free_at, self._next_growth())
        return max(free_at, self._paused_until)

    # -- slots -----------------------------------------------------------------
    def try_acquire(self, now: float | None = None) -> bool:
        """Take a slot if one is free now; True when taken."""
        now = self._clock() if now is None else now
        if self.next_free(now) > now:
            return False
        self._in_flight += 1
        if self._first_use is None:
            self._first_use = now
        return True

    def release(self) -> None:
        """Give back a slot taken by :meth:`try_acquire`: it counts from now."""
        self._in_flight -= 1
        self._done.append(self._clock())
        if self._released is not None:
            self._released.set()

    def cancel(self) -> None:
        """Give back a slot whose request was never sent: it does not count."""
        self._in_flight -= 1
        if self._released is not None:
            self._released.set()

    async def wait(self, timeout: float | None = None) -> None:
        """Wait until a slot is given back (:meth:`release`, :meth:`cancel`), at most
        ``timeout`` seconds: what to await when every slot is held in flight."""
        if self._released is None:
            self._released = asyncio.Event()
        self._released.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._released.wait(), timeout)

    async def acquire(self) -> None:
        """Wait for a free slot and take it."""
        while not self.try_acquire():
            delay = self.next_free() - self._clock()
            await self.wait(None if math.isinf(delay) else delay)

    # -- feedback from the server ------------------------------------------------
    def pause(self, seconds: float) -> None:
        """Admit nothing for ``seconds`` (a ``Retry-After``)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def on_rate_limited(self) -> None:
        """The server said 429 while this limiter admitted the request: the key is
        shared, or the server's limit is lower. Lower the capacity below what was in use,
        and remember that level (after the first period of use) to climb back towards."""
        now = self._clock()
        in_use = max(1, self.used(now))
        first = self._first_use
        if first is not None and now - first >= self.limit.period:
            # After a probe's 429, wait longer before the next probe (the 429s of the
            # requests in flight with it, which come next, do not shorten the wait).
            hold = _PROBE_PERIODS if self._probed else 1
            same = now - self._cut_at < self.limit.period
            self._hold = max(self._hold, hold) if same else hold
            self._hint = in_use
            self._growth = _GROWTH_RATE
        elif self._hint is None:
            self._growth = _RESTART_GROWTH
        self._capacity = max(1, min(self._capacity, math.floor(in_use * _BACKOFF_FACTOR)))
        self._cut_at = self._last_change = now
        self._probed = False
        self._settled_at = self._reached_hint_at = None
        self._note_levels(now)

    def set_ceiling(self, fraction: float) -> None:
        """Admit at most ``fraction`` of the limit (at least one) until called with 1.0:
        the safe share of one worker while the limit it shares cannot be coordinated."""
        if fraction >= 1.0:
            self._ceiling = self.limit.requests
            self._capacity = max(self._capacity, self._saved_capacity)
            return
        self._saved_capacity = max(self._saved_capacity, self._capacity)
        self._ceiling = max(1, math.floor(self.limit.requests * fraction))
        self._capacity = min(self._capacity, self._ceiling)

    def _recover(self, now: float) -> None:
        """Grow the capacity back, one slot at a time, up to ``now`` (see the module
        docstring): a period's growth is spread over the period, so that a key still
        shared answers the first slot too many with one 429, not a burst of them."""
        period = self.limit.period
        while self._capacity < self._ceiling:
            due = self._next_step()
            hint, reached = self._hint, self._reached_hint_at
            if hint is not None and reached is not None and reached + period <= min(due, now):
                # At or above the level that drew the last 429 for a quiet period: the
                # key's other user has gone or spends less. Forget the level.
                self._hint = self._settled_at = self._reached_hint_at = None
                self._probed = False
                self._last_change = max(self._last_change, reached + period)
                continue
            if due > now:
                return
            self._capacity += 1
            self._last_change = due
            self._probed = self._probed or self._settled_at is not None
            self._note_levels(due)

    def _next_growth(self) -> float:
        """When the capacity may next change: a step, or forgetting the hint."""
        reached = self._reached_hint_at
        forget = math.inf if reached is None or self._hint is None else reached + self.limit.period
        return min(self._next_step(), forget)

    def _next_step(self) -> float:
        """When the capacity may next grow by one, if no 429 comes before."""
        period = self.limit.period
        quiet = self._cut_at + period  # no growth in the period after a 429
        capacity, hint, settled = self._capacity, self._hint, self._settled_at
        if hint is None:  # after a first-period 429, or the hint forgotten
            per_period = max(1, math.ceil(capacity * self._growth))
        elif settled is None:  # below the settle point
            per_period = max(1, math.ceil(capacity * _GROWTH_RATE))
        else:  # at the settle point: hold, then probe
            per_period = max(1, math.floor(self.limit.requests * _PROBE_STEP))
            quiet = max(quiet, settled) + self._hold * period
        return max(quiet, self._last_change + period / per_period)

    def _note_levels(self, at: float) -> None:
        """Record when the capacity reached the settle point and the hint."""
        hint = self._hint
        if hint is None:
            return
        if self._settled_at is None and self._capacity >= math.floor(hint * _SETTLE_FRACTION):
            self._settled_at = at
        if self._reached_hint_at is None and self._capacity >= hint:
            self._reached_hint_at = at
