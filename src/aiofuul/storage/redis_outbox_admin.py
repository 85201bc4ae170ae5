"""Managing a fleet's Redis outbox from outside (``aiofuul outbox redis://... ...``): its
backlog, and its dead letters (listed, moved back to be sent again, or purged).

An outbox is named by the hash of its API key (:func:`~aiofuul.engine.redis_limiter.key_hash`),
so every function takes that hash, never the key.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import msgspec

from ..engine.redis_limiter import connect
from ..wire.models import encode_event
from ._redis_url import parse_redis_url
from .outbox import DeadLetter
from .redis_outbox import GROUP, WRITE_SCRIPT, outbox_keys

__all__ = [
    "ConsumerState",
    "FleetStats",
    "dead_letters",
    "fleet_stats",
    "purge_dead_letters",
    "requeue_dead_letters",
]

#: The consumer that dead letters moved back are pending under: it has no heartbeat,
#: so the first live client adopts them.
REQUEUED = "requeued"
_decode_letter = msgspec.json.Decoder(DeadLetter).decode


class ConsumerState(msgspec.Struct, frozen=True):
    """One client of the fleet, as Redis knows it."""

    name: str
    pending: int
    """Events it holds, written and not yet delivered."""
    live: bool
    """Its heartbeat is there; else a live client adopts what it holds."""


class FleetStats(msgspec.Struct, frozen=True):
    """The backlog of the clients of one API key."""

    waiting: int
    """Events in the stream: accepted by some client, not delivered yet."""
    oldest_age: float
    """Seconds since the oldest of them was written (0.0 when none waits)."""
    consumers: list[ConsumerState]
    dead_letters: int
    memory_bytes: int
    """What the stream takes in Redis (``MEMORY USAGE``)."""


def _connect(url: str) -> Any:
    return connect(parse_redis_url(url, "outbox"), "aiofuul outbox redis://...",
                   connections=1, socket_timeout=5.0)  # fmt: skip


async def fleet_stats(url: str, hashed: str) -> FleetStats:
    """The fleet's backlog: the stream's length and age, each client's share, the live
    clients, the dead letters."""
    redis = _connect(url)
    keys = outbox_keys(hashed)
    try:
        waiting = int(await redis.xlen(keys.stream))
        consumers: dict[str, int] = {}
        oldest_age, memory = 0.0, 0
        if waiting:
            first = await redis.xrange(keys.stream, count=1)
            seconds, micros = await redis.time()
            oldest_ms = int(first[0][0].split(b"-")[0])
            oldest_age = max(0.0, seconds + micros / 1e6 - oldest_ms / 1000)
            memory = int(await redis.memory_usage(keys.stream) or 0)
        if await redis.exists(keys.stream):
            for info in await redis.xinfo_consumers(keys.stream, GROUP):
                consumers[info["name"].decode()] = int(info["pending"])
        live = set()
        async for key in redis.scan_iter(match=keys.alive + "*", count=1000):
            live.add(key.decode()[len(keys.alive) :])
        for name in live:
            consumers.setdefault(name, 0)
        dead = int(await redis.hlen(keys.dead))
    finally:
        await redis.aclose()
    states = [ConsumerState(n, p, n in live) for n, p in sorted(consumers.items())]
    return FleetStats(waiting, oldest_age, states, dead, memory)


async def dead_letters(url: str, hashed: str) -> list[DeadLetter]:
    """The events the server rejected, oldest first."""
    redis = _connect(url)
    try:
        records = await redis.hvals(outbox_keys(hashed).dead)
    finally:
        await redis.aclose()
    return sorted((_decode_letter(r) for r in records), key=lambda d: d.failed_at)


async def requeue_dead_letters(url: str, hashed: str, ids: Sequence[str] | None = None) -> int:
    """Move dead letters (all, or those ``ids``) back into the stream, where the first
    live client adopts them; returns how many moved."""
    redis = _connect(url)
    keys = outbox_keys(hashed)
    try:
        if ids is None:
            records = await redis.hvals(keys.dead)
        else:
            records = [r for r in await redis.hmget(keys.dead, list(ids)) if r is not None]
        letters = [_decode_letter(r) for r in records]
        if not letters:
            return 0
        bodies = [encode_event(letter.event) for letter in letters]
        # One transaction: moved, and no longer a dead letter, or neither. A heartbeat
        # of 1 ms: the consumer is taken for gone at once.
        async with redis.pipeline(transaction=True) as pipe:
            script = redis.register_script(WRITE_SCRIPT)
            await script(
                keys=[keys.stream, keys.alive + REQUEUED, keys.epoch],
                args=[GROUP, REQUEUED, 1, secrets.token_hex(8), *bodies],
                client=pipe,
            )
            pipe.hdel(keys.dead, *(letter.dedup_id for letter in letters))
            await pipe.execute()
        return len(letters)
    finally:
        await redis.aclose()


async def purge_dead_letters(url: str, hashed: str, ids: Sequence[str] | None = None) -> int:
    """Delete dead letters (all, or those ``ids``); returns how many."""
    redis = _connect(url)
    dead = outbox_keys(hashed).dead
    try:
        if ids is None:
            count = int(await redis.hlen(dead))
            await redis.delete(dead)
            return count
        return int(await redis.hdel(dead, *ids)) if ids else 0
    finally:
        await redis.aclose()
