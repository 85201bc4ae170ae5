"""The layout of the Redis outbox (:mod:`aiofuul.storage.redis_outbox`) in Redis: its keys, its
Lua scripts, and the order of their writes, which is what lets a full Redis drain.

With ``maxmemory`` and ``noeviction``, Redis refuses a "denyoom" command (``SET``,
``XADD``, ``HSET``, ``XGROUP CREATE``) once it is out of memory, but lets a script go on
once it has written anything (it cannot stop a script halfway). So:

- :data:`SETTLE` (acknowledge and delete what was delivered, file dead letters) starts
  with ``XACK``/``XDEL``, which are never refused: delivered entries leave even a full
  Redis, and make room.
- :data:`WRITE` (add events) starts with ``SET``, which is refused: a full Redis refuses
  the whole script before it adds anything, and the events wait in memory.
- :data:`BEAT` (the heartbeat) starts with ``PEXPIRE``, never refused: a full Redis
  still sees the client alive. :data:`ADOPT` writes only with ``XCLAIM`` and
  ``XGROUP DELCONSUMER``, never refused either.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple, TypeGuard

import msgspec

from ..engine.redis_limiter import key_prefix
from ..wire.models import Event, decode_event
from .redis_errors import classify

__all__ = [
    "ADOPT",
    "BEAT",
    "GROUP",
    "HELD",
    "SETTLE",
    "WRITE",
    "OutboxKeys",
    "decode_entries",
    "is_redis_url",
    "outbox_keys",
    "probe",
]

log = logging.getLogger("aiofuul")

#: The consumer group of every outbox stream: each client is one of its consumers.
GROUP = "aiofuul"


def is_redis_url(value: object) -> TypeGuard[str]:
    """Whether an ``outbox=`` value names a Redis server rather than a SQLite file."""
    return isinstance(value, str) and value.startswith(("redis://", "rediss://"))


class OutboxKeys(NamedTuple):
    """The Redis keys of one API key's outbox."""

    stream: str
    dead: str
    alive: str  # + consumer name: its heartbeat

    @property
    def epoch(self) -> str:
        """Names the stream's life (see :data:`WRITE`)."""
        return self.stream + ":epoch"


def outbox_keys(hashed: str) -> OutboxKeys:
    """The keys of the outbox of the API key whose :func:`key_hash` is ``hashed``."""
    base = key_prefix(hashed) + "outbox"
    return OutboxKeys(base, base + ":dead", base + ":alive:")


def decode_entries(entries: Sequence[Any]) -> list[tuple[bytes, Event]]:
    """Stream entries (``[id, ["e", body]]``) decoded; an unreadable one is logged."""
    out: list[tuple[bytes, Event]] = []
    for entry_id, fields in entries:
        if not fields:  # deleted meanwhile (Redis < 7 answers nil for those)
            continue
        try:
            out.append((entry_id, decode_event(fields[1])))
        except (msgspec.DecodeError, msgspec.ValidationError, IndexError):
            log.error("unreadable entry %r in the outbox stream: left there", entry_id)
    return out


# KEYS: stream, the consumer's heartbeat, the stream's epoch. ARGV: group, consumer,
# heartbeat ms, a new epoch, then the event bodies to add (pending under the consumer).
# Returns {epoch, id, id, ...}. One script, so that no entry is ever in the stream
# without an owner, nor owned by a consumer without a heartbeat, even across a crash or
# a restart of Redis. The epoch names this stream's life: a stream made anew (a restart
# without persistence lost it) gets a new one, which tells every client that what it
# wrote before is gone.
WRITE = """
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
if redis.call('EXISTS', stream) == 0 then
  redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
  redis.call('SET', KEYS[3], ARGV[4])
end
local out = {redis.call('GET', KEYS[3])}
if not out[1] then
  redis.call('SET', KEYS[3], ARGV[4])  -- a stream older than epochs
  out[1] = ARGV[4]
end
for i = 5, #ARGV do out[#out + 1] = redis.call('XADD', stream, '*', 'e', ARGV[i]) end
for first = 2, #out, 500 do
  local claim = {'XCLAIM', stream, group, consumer, 0}
  for i = first, math.min(first + 499, #out) do claim[#claim + 1] = out[i] end
  claim[#claim + 1] = 'FORCE'
  claim[#claim + 1] = 'JUSTID'
  redis.call(unpack(claim))
end
return out
"""
# KEYS: stream, dead letters. ARGV: group, #acks, the stream ids to acknowledge and
# delete, then (dedup id, record) pairs of dead letters.
SETTLE = """
local stream, dead, group = KEYS[1], KEYS[2], ARGV[1]
local to = 2 + tonumber(ARGV[2])
for first = 3, to, 500 do
  local last = math.min(first + 499, to)
  redis.call('XACK', stream, group, unpack(ARGV, first, last))
  redis.call('XDEL', stream, unpack(ARGV, first, last))
end
for i = to + 1, #ARGV, 2 do redis.call('HSET', dead, ARGV[i], ARGV[i + 1]) end
return 0
"""
# KEYS: heartbeat, stream, epoch. ARGV: heartbeat ms. Returns {the stream's length, -1
# when it does not exist (gone with a restart of Redis without persistence), its epoch}.
BEAT = """
if redis.call('PEXPIRE', KEYS[1], ARGV[1]) == 0 then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
if redis.call('EXISTS', KEYS[2]) == 0 then return {-1, false} end
return {redis.call('XLEN', KEYS[2]), redis.call('GET', KEYS[3])}
"""
# KEYS: stream, epoch. ARGV: stream ids. Returns {epoch, ids no longer in the stream...}.
HELD = """
local missing = {redis.call('GET', KEYS[2])}
for i = 1, #ARGV do
  if #redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i]) == 0 then
    missing[#missing + 1] = ARGV[i]
  end
end
return missing
"""
# KEYS: stream. ARGV: group, adopter, heartbeat key prefix, most entries to claim.
# Claims the entries of every other consumer whose heartbeat is gone, oldest first,
# and forgets such consumers once they hold nothing. Returns the claimed entries.
ADOPT = """
local stream, group, me, alive = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local want = tonumber(ARGV[4])
if redis.call('EXISTS', stream) == 0 then return {} end
local taken = {}
for _, info in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
  local c = {}
  for i = 1, #info, 2 do c[info[i]] = info[i + 1] end
  if c.name ~= me and redis.call('EXISTS', alive .. c.name) == 0 then
    if c.pending == 0 then
      redis.call('XGROUP', 'DELCONSUMER', stream, group, c.name)
    elseif want > 0 then
      local claim = {'XCLAIM', stream, group, me, 0}
      for _, p in ipairs(redis.call('XPENDING', stream, group, '-', '+', want, c.name)) do
        claim[#claim + 1] = p[1]
      end
      for _, entry in ipairs(redis.call(unpack(claim))) do taken[#taken + 1] = entry end
      want = want - (#claim - 5)
    end
  end
end
return taken
"""


async def probe(redis: Any, base: str, group: str) -> None:
    """Run every script once on keys under ``base`` (their own, deleted after), so that
    whatever Redis refuses the outbox (auth, ACL, TLS) is raised now."""
    stream, dead, beat, epoch = base, base + ":dead", base + ":alive:p", base + ":epoch"
    write, settle = redis.register_script(WRITE), redis.register_script(SETTLE)
    adopt, held = redis.register_script(ADOPT), redis.register_script(HELD)
    try:
        await redis.register_script(BEAT)(keys=[beat, stream, epoch], args=[1000])
        ids = (await write(keys=[stream, beat, epoch], args=[group, "p", 1000, "e", b"{}"]))[1:]
        for key in (stream, epoch):  # gone by themselves should this stop halfway
            await redis.pexpire(key, 60_000)
        # A prefix no heartbeat has: the probe consumer is taken for gone, and adopted.
        await adopt(keys=[stream], args=[group, "q", base + ":none:", 1])
        await held(keys=[stream, epoch], args=ids)
        await settle(keys=[stream, dead], args=[group, len(ids), *ids, "p", "{}"])
        await adopt(keys=[stream], args=[group, "q", base + ":none:", 1])
    except Exception as exc:
        problem = classify(exc)
        if problem is None or problem.kind != "down":  # else the cleanup would wait too
            with contextlib.suppress(Exception):  # what failed is raised, not this
                await redis.delete(stream, dead, beat, epoch)
        raise
    await redis.delete(stream, dead, beat, epoch)
