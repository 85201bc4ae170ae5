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

On a 429 (someone else spends the same key) the limiter lowers its own capacity below
what it had in use and climbs back slowly, so a shared key settles under the server's
limit instead of oscillating into it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["DEFAULT_LIMITS", "LaneName", "Limits", "RateLimit", "SlidingWindowLimiter"]

#: The endpoints' names: the fields of :class:`Limits` that hold one endpoint's limit.
LaneName = Literal["single", "batch", "status", "pipeline", "conversions"]


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` in any window of ``period`` seconds."""

    requests: int
    period: float = 60.0

    def __post_init__(self) -> None:
        if self.requests < 1 or not self.period > 0:
            raise ValueError("a RateLimit needs requests >= 1 and period > 0")

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

    def scaled(self, time_scale: float) -> Limits:
        """Every period multiplied by ``time_scale``: ``DEFAULT_LIMITS.scaled(1/60)``
        gives the documented limits per second."""
        return Limits(
            self.single.scaled(time_scale),
            self.batch.scaled(time_scale),
            self.status.scaled(time_scale),
            self.shared.scaled(time_scale) if self.shared else None,
            self.pipeline.scaled(time_scale),
            self.conversions.scaled(time_scale),
        )


#: The documented limits of the Fuul API: 100/min single, status and pipeline, 10/min batch.
DEFAULT_LIMITS = Limits()

# After a 429, capacity drops to this fraction of what was in use ...
_BACKOFF_FACTOR = 0.8
# ... climbs back each quiet period by this fraction of the limit, up to this
# fraction of the level that drew the 429, ...
_RECOVERY_STEP = 0.05
_SETTLE_FRACTION = 0.9
# ... and probes above it by one request only after this many quiet periods.
_PROBE_PERIODS = 10
# A 429 in the first period of use says nothing about our share of the key: the
# server's window may still hold the requests of the process we replace (a restart, a
# resumed import). Capacity then grows back by this fraction each quiet period.
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
        self._hint: int | None = None  # what was in use when the server said 429
        self._last_change = 0.0
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
        return max(self._done[excess] + self.limit.period, self._paused_until)

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
        shared, or the server's limit is lower. Lower the capacity below what was in use."""
        now = self._clock()
        in_use = max(1, self.used(now))
        first = self._first_use
        if first is not None and now - first >= self.limit.period:
            self._hint = in_use if self._hint is None else min(self._hint, in_use)
        self._capacity = max(1, min(self._capacity, math.floor(in_use * _BACKOFF_FACTOR)))
        self._last_change = now

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
        if self._capacity >= self._ceiling or now - self._last_change < self.limit.period:
            return
        if self._hint is None:
            self._capacity += max(1, math.ceil(self._capacity * _RESTART_GROWTH))
            self._capacity = min(self._capacity, self._ceiling)
            self._last_change = now
            return
        settle = math.floor(self._hint * _SETTLE_FRACTION)
        if self._capacity < settle:
            step = max(1, math.floor(self.limit.requests * _RECOVERY_STEP))
            self._capacity = min(settle, self._capacity + step)
        elif now - self._last_change >= _PROBE_PERIODS * self.limit.period:
            self._capacity += 1
        else:
            return
        self._capacity = min(self._capacity, self._ceiling)
        self._last_change = now
