"""The Lua scripts of the Redis outbox (:mod:`aiofuul.redis_outbox`), and the order of
their writes, which is what lets a full Redis drain.

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

__all__ = ["ADOPT", "BEAT", "HELD", "SETTLE", "WRITE"]

# KEYS: stream, the consumer's heartbeat. ARGV: group, consumer, heartbeat ms, then the
# event bodies to add (pending under the consumer). Returns {created, id, id, ...}:
# created is 1 when the stream did not exist. One script, so that no entry is ever in
# the stream without an owner, nor owned by a consumer without a heartbeat, even across
# a crash or a restart of Redis.
WRITE = """
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
local out = {0}
if redis.call('EXISTS', stream) == 0 then
  redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
  out[1] = 1
end
for i = 4, #ARGV do out[#out + 1] = redis.call('XADD', stream, '*', 'e', ARGV[i]) end
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
# KEYS: heartbeat, stream. ARGV: heartbeat ms. Returns the stream's length, -1 when it
# does not exist (gone with a restart of Redis without persistence).
BEAT = """
if redis.call('PEXPIRE', KEYS[1], ARGV[1]) == 0 then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
return redis.call('XLEN', KEYS[2])
"""
# KEYS: stream. ARGV: stream ids. Returns those no longer in the stream.
HELD = """
local missing = {}
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
