"""One rate limit shared by many processes: a sliding-window limiter in Redis.

Workers (gunicorn/uvicorn workers, pods) that use one API key share its limits.
``FuulClient(limiter="redis://127.0.0.1:6379/0")`` makes every request first take a
slot in Redis, with one atomic Lua script per acquire, keyed by a hash of the API key
(never the key) and the endpoint. The script keeps, per endpoint, a sorted set of the
requests of the last period, timed by Redis's own clock so the workers' clocks do not
matter. Like the local limiter, a request counts from when its response arrived: it is
held at "now + timeout" while in flight and moved to the release time after.

When Redis cannot serve it (see :mod:`aiofuul.storage.redis_errors`: down, busy such as out of
memory, or refused such as an ACL without scripting) the client keeps going on its
local limiter at ``fallback_fraction`` of each limit (a quarter by default: safe for
four workers), says so in ``stats().shared_limiter_down`` and in one log line per change
of state (a warning; an error when Redis refuses us), and tries Redis again every
``retry_interval`` seconds. It is back only once a slot was really taken: an answer
that took nothing (a "wait") proves no write works, so a Redis that answers but
refuses writes never flaps. A full Redis (``maxmemory``) still serves it: both
scripts start with a removal, which Redis takes when full (see ``_RELEASE``).
:meth:`RedisLimiter.check` (run by ``start()``) raises
:class:`~aiofuul.storage.redis_errors.RedisRefusedError` instead when Redis refuses us at
start. Any other error Redis answers is a bug and is raised.

Needs ``redis`` (``pip install 'aiofuul[redis]'``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from typing import Any

from ..storage._redis_url import RedisUrl, parse_redis_url
from ..storage.redis_errors import SharedRedisError, classify, refused_at_start
from .limits import RateLimit, SlidingWindowLimiter

__all__ = ["RedisLimiter", "connect", "key_hash", "key_prefix"]

log = logging.getLogger("aiofuul")

# KEYS: one sorted set per window the request counts against.
# ARGV: member, hold_ms, then limit and period_ms for each key.
# Returns 0 when the slot is taken, else the milliseconds until one may free.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member, hold = ARGV[1], tonumber(ARGV[2])
local wait = 0
for i, key in ipairs(KEYS) do
  local limit, period = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - period)
  if redis.call('ZCARD', key) >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + period - now, 1)
  end
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + hold, member)
  redis.call('PEXPIRE', key, tonumber(ARGV[2 + 2 * i]) + hold + 1000)
end
return 0
"""
# KEYS as above, ARGV: member. The request is answered: it counts from now.
# ZREM first, in both scripts a write that comes first is one Redis takes when out of
# memory (ZREMRANGEBYSCORE, ZREM: not "denyoom"), and once a script has written Redis
# lets it finish: so a full Redis (maxmemory, noeviction) still serves the limiter,
# whose sorted sets stay the same size (a slot in, an old one out).
_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, key in ipairs(KEYS) do
  local ttl = redis.call('PTTL', key)  -- the ZREM of a last member deletes the key
  if redis.call('ZREM', key, ARGV[1]) == 1 then
    redis.call('ZADD', key, now, ARGV[1])
    if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
  end
end
return 0
"""
# Never sleep longer than this between tries: a slot held in flight frees early.
_MAX_POLL = 0.25
_CONNECTIONS = 4  # each acquire is one short script: a few serve many requests
_POOL_WAIT = 2.0


def key_hash(api_key: str) -> str:
    """What names an API key in Redis: 16 hex digits of its sha256, never the key."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


def key_prefix(hashed: str) -> str:
    """The prefix of every Redis key kept for the key of :func:`key_hash` ``hashed``
    (its limits, its outbox)."""
    return f"aiofuul:{hashed}:"


def connect(
    url: RedisUrl,
    feature: str,
    *,
    connections: int,
    socket_timeout: float,
    retry_once: bool = False,
) -> Any:
    """A Redis client on a small pool of its own for ``url`` (checked by
    :func:`~aiofuul.storage._redis_url.parse_redis_url`). ``feature`` names what needs
    ``redis`` in the error raised when it is not installed. ``retry_once``: a command
    whose connection broke is sent once more on a new one (after a restart of Redis,
    each pooled connection breaks once), so only for commands that may run twice.
    What its errors mean: :func:`~aiofuul.storage.redis_errors.classify`."""
    try:
        import redis.asyncio as aioredis
        from redis import exceptions as rx
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(f"{feature} needs redis: pip install 'aiofuul[redis]'") from None
    retry: dict[str, Any] = {}
    if retry_once:
        retry = {"retry": Retry(NoBackoff(), 1), "retry_on_error": [rx.ConnectionError]}
    # A few connections, shared: more would only multiply a fleet's connections to
    # Redis (and meet its maxclients sooner). A call that waits _POOL_WAIT for one
    # counts as Redis being unreachable.
    pool = aioredis.BlockingConnectionPool.from_url(
        url.url,
        max_connections=connections,
        timeout=_POOL_WAIT,
        socket_timeout=socket_timeout,
        socket_connect_timeout=1.0,
        **url.kwargs,
        **retry,
    )
    return aioredis.Redis.from_pool(pool)


class RedisLimiter:
    """Slots in Redis for each endpoint of one API key, shared by every process.

    ``url`` is checked at once (an unknown option raises
    :class:`~aiofuul.errors.ConfigurationError`); Redis itself is first asked by
    :meth:`check` or the first :meth:`acquire`."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        hold: float,
        fallback_fraction: float = 0.25,
        retry_interval: float = 5.0,
    ):
        self.url = parse_redis_url(url, "limiter")
        self._redis = connect(
            self.url,
            "FuulClient(limiter='redis://...')",
            connections=_CONNECTIONS,
            socket_timeout=1.0,
            # After a restart of Redis each pooled connection breaks once: without a
            # retry, each break would count as Redis down (a quarter of the limits for
            # retry_interval). An acquire run twice holds one slot too many until its
            # hold expires: fewer requests, never more.
            retry_once=True,
        )
        self._prefix = key_prefix(key_hash(api_key))
        self._hold_ms = int(hold * 1000) + 1000
        self._fraction = fallback_fraction
        self._retry_interval = retry_interval
        # A Script re-sends its source when Redis answers NOSCRIPT (its script cache was
        # emptied by a restart or SCRIPT FLUSH), so acquire() and release() never see it.
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._release = self._redis.register_script(_RELEASE)
        self._down_until = 0.0
        #: ``"ok"``, or why Redis cannot serve us now: ``"down"``, ``"busy"``, ``"refused"``.
        self.state = "ok"
        self._local: list[SlidingWindowLimiter] = []

    def __repr__(self) -> str:
        return f"<RedisLimiter {self.url.shown} state={self.state}>"

    @property
    def down(self) -> bool:
        """True while the local limiters, lowered, stand in for Redis."""
        return self.state != "ok"

    def watch(self, limiter: SlidingWindowLimiter) -> None:
        """A local limiter to bring down to the fallback fraction while Redis is away."""
        self._local.append(limiter)

    def _keys(self, windows: list[tuple[str, RateLimit]]) -> tuple[list[str], list[Any]]:
        keys = [self._prefix + name for name, _ in windows]
        args: list[Any] = []
        for _, limit in windows:
            args += [limit.requests, int(limit.period * 1000)]
        return keys, args

    async def check(self) -> None:
        """At start: take (and let expire) a slot on a probe key of ours, which needs
        everything :meth:`acquire` needs (auth, the ACL's scripting and sorted-set
        commands on our keys, TLS). Raises :class:`~aiofuul.storage.redis_errors.RedisRefusedError`
        when Redis refuses us; down or busy, the client starts degraded (logged)."""
        probe = [("probe", RateLimit(1_000_000, 0.001))]
        keys, args = self._keys(probe)
        try:
            await self._acquire(keys=keys, args=[secrets.token_hex(8), 0, *args])
        except Exception as exc:
            problem = classify(exc)
            if problem is None:
                raise
            refused_at_start(problem, "limiter", self.url.shown, _NEEDS)
            self._degraded(problem)
            return
        self._came_back()

    async def acquire(self, windows: list[tuple[str, RateLimit]]) -> str | None:
        """Wait for a slot in every window; returns its token, or None while Redis
        cannot serve us (the local limiters, lowered, are then the only guard). Any
        other error from Redis (a bug) is raised."""
        keys, args = self._keys(windows)
        member = secrets.token_hex(8)
        while True:
            if self.state != "ok" and time.monotonic() < self._down_until:
                return None
            try:
                wait_ms = int(await self._acquire(keys=keys, args=[member, self._hold_ms, *args]))
            except Exception as exc:
                problem = classify(exc)
                if problem is None:
                    raise
                self._degraded(problem)
                return None
            if wait_ms == 0:
                self._came_back()  # a slot was written: Redis serves us again
                return member
            if self.state != "ok":
                # A "wait" wrote nothing: a full Redis answers it too. Until a slot is
                # really taken, the local limiters stay in charge.
                self._down_until = time.monotonic() + self._retry_interval
                return None
            await asyncio.sleep(min(wait_ms / 1000, _MAX_POLL))

    async def release(self, windows: list[tuple[str, RateLimit]], token: str | None) -> None:
        """The request was answered: its slot counts from now."""
        if token is None:
            return
        keys, _ = self._keys(windows)
        try:
            await self._release(keys=keys, args=[token])
        except Exception as exc:
            # The slot stays held until its hold runs out: slower, never unsafe.
            problem = classify(exc)
            if problem is None:
                raise
            self._degraded(problem)

    def _degraded(self, problem: SharedRedisError) -> None:
        self._down_until = time.monotonic() + self._retry_interval
        if problem.kind == self.state:
            return
        if self.state == "ok":
            for limiter in self._local:
                limiter.set_ceiling(self._fraction)
        self.state = problem.kind
        level = logging.ERROR if problem.kind == "refused" else logging.WARNING
        log.log(
            level,
            "shared limiter unreachable (%s: %s); continuing on the local limiter at "
            "%.0f%% of each limit until it is back, retrying every %gs",
            _STATES[problem.kind],
            problem,
            self._fraction * 100,
            self._retry_interval,
        )

    def _came_back(self) -> None:
        if self.state != "ok":
            self.state = "ok"
            log.warning("shared limiter reachable again: back to the full limits")
            for limiter in self._local:
                limiter.set_ceiling(1.0)

    async def close(self) -> None:
        """Close the connections to Redis."""
        await self._redis.aclose()


_NEEDS = (
    "EVALSHA, SCRIPT LOAD and, on the keys aiofuul:*, TIME, ZADD, ZCARD, ZRANGE, "
    "ZREMRANGEBYSCORE, PEXPIRE"
)
_STATES = {
    "down": "no connection",
    "busy": "Redis cannot take writes for now",
    "refused": "Redis refuses us: fix its password, ACL or TLS",
}
