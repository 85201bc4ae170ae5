"""A backlog shared by a fleet: the outbox in a Redis stream.

``FuulClient(outbox="redis://redis:6379/0")`` keeps every accepted event in a Redis
stream named by a hash of the API key (never the key), shared by every worker using
that key. Like the SQLite outbox (:mod:`aiofuul.outbox`), ``track()`` only appends to
a list; a writer task writes what arrived every ``commit_interval`` (50 ms), in Lua
script calls of ``commit_size`` (1,000) events; ``flush()`` waits for the write.

- Each client is a consumer of the stream's consumer group (``host:pid:random``): the
  events it wrote are pending under its name, and it refreshes a heartbeat key every
  ``adopt_after / 3`` seconds (the key expires after ``adopt_after``).
- Delivered, duplicate and dropped events are acknowledged and deleted; rejected ones
  move to a dead-letter hash (``aiofuul outbox redis://... list|retry|purge``).
- A live client adopts the events of every consumer whose heartbeat is gone (killed,
  or closed with a backlog: :attr:`~aiofuul.Stats.handed_off`) and delivers them: as
  many as the key can take in two periods, less its own backlog (the least busy
  clients adopt first; the rest waits in the stream).
  ``XAUTOCLAIM`` is not used: it takes entries by idle time, and a live worker's
  entries sit idle for minutes behind a standing backlog. One script instead claims
  the entries of dead consumers only, so two adopters never take the same entry.
- Redis unreachable: events wait in memory (``max_queue`` bounds them), one log line
  and ``stats().outbox_down``; they are written when it is back. Adoption then waits
  ``adopt_after`` more, so that every live worker has refreshed its heartbeat.
- Worst case: a worker that stays away from Redis (or whose loop is stuck) for
  ``adopt_after`` is taken for dead, and its events are sent by another worker too;
  the server skips the second copy by its dedup id.

``adopt_after`` (seconds, 30 by default) is set in the URL:
``redis://redis:6379/0?adopt_after=10``. Needs ``redis`` (``pip install 'aiofuul[redis]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeGuard
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec

from .errors import UndeliveredError
from .ledger import Feed
from .models import Event, decode_event, encode_event
from .outbox import DeadLetter
from .redis_limiter import connect, key_hash, key_prefix

__all__ = ["GROUP", "OutboxKeys", "RedisOutbox", "is_redis_url", "outbox_keys"]

log = logging.getLogger("aiofuul")

#: The consumer group of every outbox stream: each client is one of its consumers.
GROUP = "aiofuul"
_ADOPT_AFTER = 30.0
_ADOPT_MOST = 1000  # entries one adoption script claims: it holds Redis meanwhile
_RETRY = 1.0  # seconds between writes while Redis is unreachable (at most)
_encode_letter = msgspec.json.Encoder().encode

# KEYS: stream, dead letters, the consumer's heartbeat. ARGV: group, consumer,
# heartbeat ms, #adds, #acks, then the event bodies to add (pending under the
# consumer), the stream ids to acknowledge and delete, then (dedup id, record) pairs
# of dead letters. Returns the new entries' ids, in order. One script, so that no entry
# is ever in the stream without an owner, nor owned by a consumer without a heartbeat,
# even across a crash or a restart of Redis.
WRITE_SCRIPT = """
local stream, dead, group, consumer = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local adds, acks = tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
if redis.call('EXISTS', stream) == 0 then
  redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
end
local ids = {}
for i = 6, 5 + adds do ids[#ids + 1] = redis.call('XADD', stream, '*', 'e', ARGV[i]) end
for first = 1, #ids, 500 do
  local claim = {'XCLAIM', stream, group, consumer, 0}
  for i = first, math.min(first + 499, #ids) do claim[#claim + 1] = ids[i] end
  claim[#claim + 1] = 'FORCE'
  claim[#claim + 1] = 'JUSTID'
  redis.call(unpack(claim))
end
local from, to = 6 + adds, 5 + adds + acks
for first = from, to, 500 do
  local last = math.min(first + 499, to)
  redis.call('XACK', stream, group, unpack(ARGV, first, last))
  redis.call('XDEL', stream, unpack(ARGV, first, last))
end
for i = to + 1, #ARGV, 2 do redis.call('HSET', dead, ARGV[i], ARGV[i + 1]) end
return ids
"""
# KEYS: stream. ARGV: group, adopter, heartbeat key prefix, most entries to claim.
# Claims the entries of every other consumer whose heartbeat is gone, oldest first,
# and forgets such consumers once they hold nothing. Returns the claimed entries.
_ADOPT = """
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


def is_redis_url(value: object) -> TypeGuard[str]:
    """Whether an ``outbox=`` value names a Redis server rather than a SQLite file."""
    return isinstance(value, str) and value.startswith(("redis://", "rediss://"))


class OutboxKeys(NamedTuple):
    """The Redis keys of one API key's outbox."""

    stream: str
    dead: str
    alive: str  # + consumer name: its heartbeat


def outbox_keys(hashed: str) -> OutboxKeys:
    """The keys of the outbox of the API key whose :func:`key_hash` is ``hashed``."""
    base = key_prefix(hashed) + "outbox"
    return OutboxKeys(base, base + ":dead", base + ":alive:")


def split_options(url: str) -> tuple[str, float]:
    """The URL for redis-py, without our option, and ``adopt_after``."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    adopt_after = _ADOPT_AFTER
    for name, value in query:
        if name == "adopt_after":
            adopt_after = float(value)
            if not adopt_after > 0:
                raise ValueError(f"adopt_after must be > 0 seconds, not {value!r}")
    rest = urlencode([(n, v) for n, v in query if n != "adopt_after"])
    return urlunsplit(parts._replace(query=rest)), adopt_after


def _entries(entries: Sequence[Any]) -> list[tuple[bytes, Event]]:
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


class RedisOutbox:
    """The journal the sender reports to, in a Redis stream shared by every client of
    one API key (see the module docstring)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        commit_interval: float = 0.05,
        commit_size: int = 1000,
    ):
        url, self._adopt_after = split_options(url)
        self._period = self._adopt_after / 3
        self._ttl = max(1, int(self._adopt_after * 1000))  # the heartbeat's, in ms
        self._retry = min(_RETRY, self._period)
        # The writer and the keeper, each with one call at a time. A write sent twice
        # (its answer lost) leaves a second copy of its entries under this consumer: at
        # worst sent twice, skipped by the dedup id.
        self._redis, self._unavailable = connect(
            url,
            "FuulClient(outbox='redis://...')",
            connections=2,
            socket_timeout=5.0,
            retry_once=True,
        )
        self.keys = outbox_keys(key_hash(api_key))
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._heartbeat = self.keys.alive + self.consumer
        self._write = self._redis.register_script(WRITE_SCRIPT)
        self._adopt = self._redis.register_script(_ADOPT)
        self._interval = commit_interval
        self._size = commit_size
        self._inserts: list[Event] = []  # accepted, not written yet
        #: ``added(event)``: an accepted event, to write with the next group. It is
        #: ``track()``'s hot path, so the list's own append: the writer looks for new
        #: events every ``commit_interval`` instead of being told of each.
        self.added: Callable[[Event], None] = self._inserts.append
        self._deletes: list[str] = []  # settled, to remove
        self._rejected: list[tuple[Event, str, float]] = []
        self._acks: list[bytes] = []  # resolved to entry ids, kept while Redis is away
        self._letters: list[bytes | str] = []  # (dedup id, record) pairs, likewise
        self._ids: dict[str, bytes] = {}  # written and not settled: dedup id -> entry id
        self._generation = self._committed = 0
        self._urgent = asyncio.Event()  # cuts the writer's wait short (commit, close)
        self._progress = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._started = asyncio.Event()  # recover() ran: the writer exists (or never will)
        self._keeper: asyncio.Task[None] | None = None
        self._adopt_from = 0.0  # monotonic time before which nothing is adopted
        self._closed = False
        self.down = False

    def __repr__(self) -> str:
        return f"<RedisOutbox consumer={self.consumer!r} down={self.down}>"

    # -- called by the sender on the loop (cheap: list appends) ----------------------
    def settled(
        self, events: Sequence[Event], outcome: str, error: UndeliveredError | None
    ) -> None:
        """Remove the delivered (and duplicate, and dropped), file the rejected as dead
        letters; keep the rest where another client delivers them (as the SQLite file
        keeps them for its next client)."""
        if outcome in ("delivered", "duplicates", "dropped"):
            self._deletes.extend(e.dedup_id for e in events)
        elif outcome == "rejected":
            reason = str(error.cause if error is not None and error.cause else error)
            now = time.time()
            self._rejected.extend((e, reason, now) for e in events)
        else:  # failed, handed off: left pending under this consumer, adopted once it is gone
            for e in events:
                self._ids.pop(e.dedup_id, None)

    def hands_off(self, event: Event) -> bool:
        """Whether ``event`` is written: then another client delivers it once this one
        is gone."""
        return event.dedup_id in self._ids

    # -- life cycle ------------------------------------------------------------------
    async def recover(self) -> list[Event]:
        """Announce this consumer, adopt what dead ones left (up to a round's worth),
        start the writer and the heartbeat. Redis unreachable is no error: events then
        wait in memory until it is back."""
        loop = asyncio.get_running_loop()
        events: list[Event] = []
        try:
            await self._redis.set(self._heartbeat, b"1", px=self._ttl)
            events = await self._claim(_ADOPT_MOST)
        except self._unavailable as exc:
            self._went_down(exc)
        finally:
            self._writer = loop.create_task(self._write_loop(), name="aiofuul-redis-outbox")
            self._writer.add_done_callback(self._task_done)
            self._started.set()
        return events

    def attach(self, feed: Feed, room: Callable[[], int]) -> None:
        """Start adopting: ``feed`` takes what dead clients left, ``room()`` at most."""
        self._keeper = asyncio.get_running_loop().create_task(
            self._keep_loop(feed, room), name="aiofuul-redis-outbox-heartbeat"
        )
        self._keeper.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._progress.set()  # nobody may wait forever on a writer that is gone
        if not task.cancelled() and task.exception() is not None:
            self.down = True
            log.error("the Redis outbox failed; events are no longer durable",
                      exc_info=task.exception())  # fmt: skip

    async def _claim(self, most: int) -> list[Event]:
        """Claim up to ``most`` entries of dead consumers; returns their events."""
        keys, args = [self.keys.stream], [GROUP, self.consumer, self.keys.alive, most]
        taken = _entries(await self._adopt(keys=keys, args=args))
        self._ids.update((event.dedup_id, entry_id) for entry_id, event in taken)
        if taken:
            log.warning("adopted %d event(s) of client(s) gone from the shared outbox",
                        len(taken))  # fmt: skip
        return [event for _, event in taken]

    async def _keep_loop(self, feed: Feed, room: Callable[[], int]) -> None:
        """Beat every period; adopt what dead clients left, as much as there is room for."""
        while True:
            try:
                await self._redis.set(self._heartbeat, b"1", px=self._ttl)
                self._came_back()
                most = min(room(), _ADOPT_MOST)
                while most > 0 and time.monotonic() >= self._adopt_from:
                    events = await self._claim(most)
                    feed(events)
                    most = min(room(), _ADOPT_MOST) if len(events) == most else 0
            except self._unavailable as exc:
                self._went_down(exc)
            await asyncio.sleep(self._period)

    async def _write_loop(self) -> None:
        while True:
            if not self._closed:
                # Group what arrives within the interval (or, while Redis is away, the
                # pause between tries) into one write, unless a commit waits for it.
                with contextlib.suppress(asyncio.TimeoutError):
                    wait = self._retry if self.down else self._interval
                    await asyncio.wait_for(self._urgent.wait(), wait)
            # Cleared with the group taken: a commit asked for during the write below
            # is for the next group, which then starts at once.
            self._urgent.clear()
            self._generation += 1
            generation = self._generation
            written = await self._write_group()
            self._committed = generation
            self._progress.set()
            if self._closed and (not written or not self._pending()):
                if not written:
                    log.error("closing with the shared outbox unreachable: %d event(s) "
                              "accepted were never written to it", len(self._inserts))  # fmt: skip
                return

    def _pending(self) -> bool:
        return bool(self._inserts or self._deletes or self._rejected or self._acks)

    async def _write_group(self) -> bool:
        """Write what was reported since the last group, ``commit_size`` events per
        script call (after an outage the group may be large); False while Redis is
        unreachable, with everything not written kept for the next try."""
        inserts, ids, acks, letters = self._inserts[:], self._ids, self._acks, self._letters
        deletes, rejected = self._deletes, self._rejected
        self._inserts.clear()  # the same list: ``added`` is its append
        self._deletes, self._rejected, self._acks, self._letters = [], [], [], []
        for event, reason, at in rejected:
            deletes.append(event.dedup_id)
            letters += [
                event.dedup_id,
                _encode_letter(DeadLetter(event.dedup_id, event, reason, at)),
            ]
        # Settled before written: never written at all; else acknowledged and deleted.
        unwritten = {e.dedup_id for e in inserts} if deletes else set()
        acks += [ids.pop(d) for d in deletes if d not in unwritten and d in ids]
        gone = unwritten.intersection(deletes)
        left = [e for e in inserts if e.dedup_id not in gone] if gone else inserts
        while left or acks or letters:
            chunk, left = left[: self._size], left[self._size :]
            try:
                written = await self._write(
                    keys=[self.keys.stream, self.keys.dead, self._heartbeat],
                    args=[GROUP, self.consumer, self._ttl, len(chunk), len(acks),
                          *(encode_event(e) for e in chunk), *acks, *letters],
                )  # fmt: skip
            except self._unavailable as exc:
                self._inserts[:0] = chunk + left
                self._acks, self._letters = acks + self._acks, letters + self._letters
                self._went_down(exc)
                return False
            ids.update(zip((e.dedup_id for e in chunk), written, strict=True))
            acks, letters = [], []
            self._came_back()
        return True

    def _went_down(self, exc: BaseException) -> None:
        if not self.down:
            self.down = True
            log.warning("shared outbox unreachable (%s: %s): accepted events wait in memory "
                        "until it is back", type(exc).__name__, exc)  # fmt: skip

    def _came_back(self) -> None:
        if self.down:
            self.down = False
            # Others' heartbeats may have lapsed meanwhile: give them time to beat again.
            self._adopt_from = time.monotonic() + self._adopt_after
            log.warning("shared outbox reachable again: the events kept meanwhile are written")
            self._urgent.set()

    async def commit(self) -> None:
        """Wait until everything reported so far is written, or a write failed (then
        ``down`` is True: Redis is unreachable, and the events wait in memory)."""
        await self._started.wait()  # a commit right after start must not pass for one
        assert self._writer is not None
        target = self._generation + 1
        self._urgent.set()
        while self._committed < target and not self._writer.done():
            self._progress.clear()
            await self._progress.wait()

    async def close(self) -> None:
        """Write what is left; then drop the heartbeat, so that what this client still
        holds (handed off) is adopted at once by another; close the connections."""
        self._closed = True
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._writer is not None:
            self._urgent.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        try:
            if self._started.is_set():
                with contextlib.suppress(*self._unavailable):
                    await self._redis.delete(self._heartbeat)
        finally:
            await self._redis.aclose()
