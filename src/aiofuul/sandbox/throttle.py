"""The sandbox's rate limits: a strict sliding window per key and per endpoint."""

from __future__ import annotations

import math
import time
from email.utils import formatdate
from typing import Literal

from ..engine.limits import LaneName, Limits, RateLimit, SlidingWindowLimiter

__all__ = ["RetryAfter", "Throttle", "retry_after_value"]

#: How a 429 tells when to come back: ``Retry-After`` in seconds, as an HTTP date, or not.
RetryAfter = Literal["seconds", "http-date", "none"]


class Throttle:
    """Counts requests at arrival against ``limits`` (plus ``limits.shared``, which all
    endpoints of a key count against together), per key."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self._limiters: dict[tuple[str, str], SlidingWindowLimiter] = {}

    def clear(self) -> None:
        """Forget every count."""
        self._limiters.clear()

    def _limiter(self, key_id: str, name: str, limit: RateLimit) -> SlidingWindowLimiter:
        limiter = self._limiters.get((key_id, name))
        if limiter is None:
            limiter = self._limiters[key_id, name] = SlidingWindowLimiter(limit)
        return limiter

    def admit(self, key_id: str, lane: LaneName, now: float) -> float | None:
        """Count the request and return None, or return the seconds until a slot frees.
        A refused request is not counted."""
        limits = self.limits
        own: RateLimit = getattr(limits, lane)
        limiters = [self._limiter(key_id, lane, own)]
        if limits.shared is not None:
            limiters.append(self._limiter(key_id, "shared", limits.shared))
        free = max(limiter.next_free(now) for limiter in limiters)
        if free > now:
            return free - now
        for limiter in limiters:
            # Taken and given back at once: the window counts the request from its arrival.
            limiter.try_acquire(now)
            limiter.release()
        return None


def retry_after_value(form: RetryAfter, wait: float) -> str | None:
    """The ``Retry-After`` header for a slot freeing in ``wait`` seconds, or None."""
    if form == "seconds":
        if wait >= 1.0:
            return str(math.ceil(wait))
        # Below a second (compressed test periods): milliseconds, rounded up.
        return f"{max(1, math.ceil(wait * 1000)) / 1000:.3f}"
    if form == "http-date":
        return formatdate(math.ceil(time.time() + wait), usegmt=True)
    return None
