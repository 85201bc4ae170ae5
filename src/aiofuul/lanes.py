"""A lane: one endpoint with its limiters, counters and health, shared by the direct
calls and the background sender so that both spend the same budget.

:meth:`Lane.call` is the retry loop of the direct calls (``send_event``, ...): acquire a
slot, send, and on a retryable outcome wait (``Retry-After``, or backoff with full
jitter) and try again, within the policy's attempts and elapsed time.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Mapping

from .config import RetryPolicy
from .errors import APIError, FuulError
from .limits import RateLimit, SlidingWindowLimiter
from .redis_limiter import RedisLimiter
from .transport import Action, Response, Transport

__all__ = ["Lane"]


class Lane:
    """The requests of one endpoint: ``single``, ``batch`` or ``status``."""

    def __init__(
        self,
        name: str,
        method: str,
        path: str,
        limit: RateLimit,
        shared: SlidingWindowLimiter | None = None,
        remote: RedisLimiter | None = None,
    ):
        self.name = name
        self.method = method
        self.path = path
        self.limiter = SlidingWindowLimiter(limit)
        self._limiters = [self.limiter] if shared is None else [self.limiter, shared]
        # The same windows again in Redis, when the key's limits are shared by processes.
        self.remote = remote
        self._windows = [(name, limit)]
        if shared is not None:
            self._windows.append(("shared", shared.limit))
        if remote is not None:
            for limiter in self._limiters:
                remote.watch(limiter)
        self.requests = 0
        self.rate_limited = 0
        self.failures_in_a_row = 0
        self.stopped: APIError | None = None

    # -- slots over every limiter the lane counts against -------------------------
    def next_free(self, now: float) -> float:
        """When a slot is free on every limiter of this lane."""
        return max(limiter.next_free(now) for limiter in self._limiters)

    def free_slots(self, now: float) -> int:
        """How many requests could start now."""
        if self.next_free(now) > now:
            return 0
        return min(limiter.capacity - limiter.used(now) for limiter in self._limiters)

    def try_acquire(self, now: float) -> bool:
        """Take a slot on every limiter, or on none."""
        if self.next_free(now) > now:
            return False
        for limiter in self._limiters:
            limiter.try_acquire(now)
        return True

    def release(self) -> None:
        """The request's answer (or failure) arrived: its slots count from now."""
        for limiter in self._limiters:
            limiter.release()

    def pause(self, seconds: float) -> None:
        """Send nothing on this lane for ``seconds``."""
        self.limiter.pause(seconds)

    async def remote_acquire(self) -> str | None:
        """With a shared limiter, wait for this request's slot in it (a token), else None."""
        return None if self.remote is None else await self.remote.acquire(self._windows)

    async def remote_release(self, token: str | None) -> None:
        if self.remote is not None:
            await self.remote.release(self._windows, token)

    # -- feedback ----------------------------------------------------------------
    def note(self, response: Response, retry: RetryPolicy) -> Action:
        """Count a response and adapt to it; returns what it means."""
        action = response.action
        if action is Action.RATE_LIMITED:
            self.rate_limited += 1
            for limiter in self._limiters:
                limiter.on_rate_limited()
            if response.retry_after is not None:
                self.pause(min(response.retry_after, retry.max_retry_after))
            else:
                # No hint: besides our own (now smaller) window, leave about one
                # slot's worth of the period, jittered, so the key's other users get a turn.
                limit = self.limiter.limit
                self.pause(random.uniform(0.5, 1.5) * limit.period / self.limiter.capacity)
        elif action is Action.RETRY:
            self.on_failure(retry)
        elif action is Action.STOP:
            self.stopped = response.error()
        else:
            self.failures_in_a_row = 0
            if action is Action.OK:
                self.stopped = None
        return action

    def on_failure(self, retry: RetryPolicy) -> None:
        """A transport error or 5xx: back off this lane, longer each time in a row."""
        self.pause(retry.backoff(self.failures_in_a_row))
        self.failures_in_a_row += 1

    # -- the direct calls' retry loop ---------------------------------------------
    async def call(
        self,
        transport: Transport,
        retry: RetryPolicy,
        *,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Response:
        """Send until a final answer: returns an OK or DUPLICATE response, raises the
        :class:`~aiofuul.errors.APIError` of any other, or the last error when the
        policy's attempts or elapsed time run out."""
        deadline = time.monotonic() + retry.max_elapsed
        attempt = 0
        error: FuulError | None = None
        while True:
            await self._acquire(deadline, error)
            token = await self.remote_acquire()
            attempt += 1
            self.requests += 1
            try:
                response = await transport.request(self.method, self.path, body=body, params=params)
            except FuulError as exc:
                self.release()
                await self.remote_release(token)
                self.on_failure(retry)
                error = exc
            except BaseException:  # cancelled: the slot must not stay taken for good
                self.release()
                await self.remote_release(token)
                raise
            else:
                self.release()
                await self.remote_release(token)
                action = self.note(response, retry)
                if action in (Action.OK, Action.DUPLICATE):
                    return response
                error = response.error()
                if action in (Action.REJECT, Action.STOP):
                    raise error
            if attempt >= retry.max_attempts or time.monotonic() >= deadline:
                raise error

    async def _acquire(self, deadline: float, error: FuulError | None) -> None:
        """Wait for a slot; after a failure, give up with it rather than wait past the
        deadline (a long Retry-After, say)."""
        while True:
            now = time.monotonic()
            if self.try_acquire(now):
                return
            delay = self.next_free(now) - now
            if math.isinf(delay):
                # Every slot of some limiter is held by a request in flight: wait for
                # that limiter to get one back.
                held = next(x for x in self._limiters if math.isinf(x.next_free(now)))
                await held.wait()
                continue
            if error is not None and now + delay > deadline:
                raise error
            await asyncio.sleep(delay)
