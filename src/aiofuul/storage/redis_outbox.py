"""A backlog shared by a fleet: the outbox in a Redis stream.

``FuulClient(outbox="redis://redis:6379/0")`` keeps every accepted event in a Redis
stream named by a hash of the API key (never the key), shared by every worker using
that key. Like the SQLite outbox (:mod:`aiofuul.storage.outbox`), ``track()`` only appends to
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
- Redis unreachable, or full (``maxmemory`` reached): events wait in memory
  (``max_queue`` bounds them), one log line per change of state and
  ``stats().outbox_down``; they are written when it is back. A full Redis still takes
  the acknowledgements (they come first, and free room), the heartbeat and adoption
  (see :mod:`aiofuul.storage._redis_outbox_scripts`). After an outage, adoption waits
  ``adopt_after`` more, so that every live worker has refreshed its heartbeat.
- Misconfigured (a wrong password, an ACL without scripting or the stream commands,
  TLS): :meth:`RedisOutbox.check`, run by ``start()``, raises
  :class:`~aiofuul.storage.redis_errors.RedisRefusedError`; found later, it is logged once as
  an error and treated as an outage. An unknown URL option is refused at once.
- Handed off at close are only events Redis is known to hold (each checked by
  :meth:`RedisOutbox.commit`); a stream gone with a restart of Redis without
  persistence is noticed (on the next heartbeat or write) and logged once with what it
  held when last seen, a dead client's backlog included.
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

import msgspec

from ..engine.redis_limiter import RedisLimiter, connect, key_hash
from ..engine.seams import Feed, Settlement
from ..errors import UndeliveredError
from ..wire.models import Event, encode_event
from . import _redis_outbox_scripts as scripts
from ._redis_outbox_held import Holdings
from ._redis_outbox_scripts import GROUP, OutboxKeys, decode_entries, is_redis_url, outbox_keys
from ._redis_url import RedisUrl, parse_redis_url
from .outbox import DeadLetter
from .redis_errors import SharedRedisError, classify, refused_at_start

__all__ = ["GROUP", "OutboxKeys", "RedisOutbox", "check_shared", "is_redis_url", "outbox_keys"]

log = logging.getLogger("aiofuul")

WRITE_SCRIPT = scripts.WRITE
_ADOPT_MOST = 1000  # entries one adoption script claims: it holds Redis meanwhile
_RETRY = 1.0  # seconds between writes while Redis is unreachable (at most)
_encode_letter = msgspec.json.Encoder().encode
_NEEDS = (
    "EVALSHA, SCRIPT LOAD and, on the keys aiofuul:*, SET, DEL, PEXPIRE, EXISTS, HSET "
    "and the stream commands (XADD, XACK, XDEL, XCLAIM, XPENDING, XRANGE, XLEN, XINFO, "
    "XGROUP)"
)
_SAID = {
    "down": "unreachable (%s): accepted events wait in memory until it is back",
    "busy": (
        "full or busy (%s): accepted events wait in memory (max_queue bounds them); "
        "delivered entries are removed first to make room, and the rest is written "
        "when Redis takes writes again"
    ),
    "refused": (
        "refused by Redis (%s): fix its password, ACL or TLS; accepted events wait in "
        "memory meanwhile"
    ),
}


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
        self.url: RedisUrl = parse_redis_url(url, "outbox")
        self._adopt_after = self.url.adopt_after
        self._period = self._adopt_after / 3
        self._ttl = max(1, int(self._adopt_after * 1000))  # the heartbeat's, in ms
        self._retry = min(_RETRY, self._period)
        # The writer and the keeper, each with one call at a time. A write sent twice
        # (its answer lost) leaves a second copy of its entries under this consumer: at
        # worst sent twice, skipped by the dedup id.
        self._redis = connect(
            self.url,
            "FuulClient(outbox='redis://...')",
            connections=2,
            socket_timeout=5.0,
            retry_once=True,
        )
        self.keys = outbox_keys(key_hash(api_key))
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._heartbeat = self.keys.alive + self.consumer
        register = self._redis.register_script
        self._write, self._settle = register(scripts.WRITE), register(scripts.SETTLE)
        self._beat, self._adopt = register(scripts.BEAT), register(scripts.ADOPT)
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
        self._held = Holdings(self.keys.stream, self.keys.epoch, register(scripts.HELD))
        self._generation = self._committed = 0
        self._urgent = asyncio.Event()  # cuts the writer's wait short (commit, close)
        self._progress = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._started = asyncio.Event()  # recover() ran: the writer exists (or never will)
        self._keeper: asyncio.Task[None] | None = None
        self._adopt_from = 0.0  # monotonic time before which nothing is adopted
        self._closed = False
        #: ``"ok"``, or why Redis cannot take our writes: ``"down"``, ``"busy"``, ``"refused"``.
        self.state = "ok"
        self.down = False

    def __repr__(self) -> str:
        return f"<RedisOutbox {self.url.shown} consumer={self.consumer!r} state={self.state}>"

    # -- called by the sender on the loop (cheap: list appends) ----------------------
    def settled(
        self, events: Sequence[Event], outcome: Settlement, error: UndeliveredError | None
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
                self._held.forget(e.dedup_id)

    def hands_off(self, event: Event) -> bool:
        """Whether Redis is known to hold ``event`` (written, and found there by the
        last :meth:`commit`): then another client delivers it once this one is gone."""
        return self._held.holds(event.dedup_id)

    # -- life cycle ------------------------------------------------------------------
    async def check(self) -> None:
        """At start: run every script on probe keys of ours, which needs everything the
        outbox needs (auth, the ACL's scripting and stream commands on our keys, TLS).
        Raises :class:`~aiofuul.storage.redis_errors.RedisRefusedError` when Redis refuses us;
        down or full, the client starts degraded (logged)."""
        try:
            probe = f"{self.keys.stream}:probe:{secrets.token_hex(4)}"  # this client's own
            await scripts.probe(self._redis, probe, GROUP)
        except Exception as exc:
            problem = classify(exc)
            if problem is None:
                raise
            refused_at_start(problem, "outbox", self.url.shown, _NEEDS)
            self._degraded(problem)

    async def recover(self) -> list[Event]:
        """Announce this consumer, adopt what dead ones left (up to a round's worth),
        start the writer and the heartbeat. Redis unreachable is no error: events then
        wait in memory until it is back."""
        loop = asyncio.get_running_loop()
        events: list[Event] = []
        try:
            await self._beat_once()
            events = await self._claim(_ADOPT_MOST)
        except Exception as exc:
            self._failed(exc)
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

    async def _beat_once(self) -> None:
        """Refresh the heartbeat; notice a stream gone since the last one."""
        keys = [self._heartbeat, self.keys.stream, self.keys.epoch]
        length, epoch = await self._beat(keys=keys, args=[self._ttl])
        self._held.heartbeat(int(length), epoch)
        if self.state == "down":  # a connection again (a full Redis stays "busy")
            self._came_back()

    async def _claim(self, most: int) -> list[Event]:
        """Claim up to ``most`` entries of dead consumers; returns their events."""
        keys, args = [self.keys.stream], [GROUP, self.consumer, self.keys.alive, most]
        taken = decode_entries(await self._adopt(keys=keys, args=args))
        self._held.record((event.dedup_id, entry_id) for entry_id, event in taken)
        if taken:
            log.warning("adopted %d event(s) of client(s) gone from the shared outbox",
                        len(taken))  # fmt: skip
        return [event for _, event in taken]

    async def _keep_loop(self, feed: Feed, room: Callable[[], int]) -> None:
        """Beat every period; adopt what dead clients left, as much as there is room for."""
        while True:
            try:
                await self._beat_once()
                most = min(room(), _ADOPT_MOST)
                while most > 0 and time.monotonic() >= self._adopt_from:
                    events = await self._claim(most)
                    feed(events)
                    most = min(room(), _ADOPT_MOST) if len(events) == most else 0
            except Exception as exc:
                self._failed(exc)
            await asyncio.sleep(self._period)

    async def _write_loop(self) -> None:
        while True:
            if not self._closed:
                # Group what arrives within the interval (or, while Redis is away, the
                # pause between tries) into one write, unless a commit waits for it.
                with contextlib.suppress(asyncio.TimeoutError):
                    wait = self._retry if self.state != "ok" else self._interval
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
                if not written and self._inserts:
                    log.error("closing with the shared outbox %s: %d event(s) accepted "
                              "were never written to it", self.state,
                              len(self._inserts))  # fmt: skip
                return

    def _pending(self) -> bool:
        return bool(self._inserts or self._deletes or self._rejected or self._acks)

    async def _write_group(self) -> bool:
        """Settle, then write, what was reported since the last group (after an outage
        the group may be large: ``commit_size`` events per script call); False while
        Redis cannot take it, with everything not written kept for the next try."""
        inserts, acks, letters = self._inserts[:], self._acks, self._letters
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
        for dedup_id in deletes:
            entry = None if dedup_id in unwritten else self._held.forget(dedup_id)
            if entry is not None:
                acks.append(entry)
        gone = unwritten.intersection(deletes)
        left = [e for e in inserts if e.dedup_id not in gone] if gone else inserts
        try:
            # Settled first: a full Redis takes these, and they make room for the rest.
            if acks or letters:
                await self._settle(
                    keys=[self.keys.stream, self.keys.dead],
                    args=[GROUP, len(acks), *acks, *letters],
                )
                acks, letters = [], []
            if not left and self.state != "ok":
                # Nothing to add proves nothing: an empty write (its SET is refused by
                # a full Redis, its script by an ACL) says whether Redis takes writes.
                await self._add([])
            while left:
                chunk = left[: self._size]
                written = await self._add(chunk)
                self._held.record(zip((e.dedup_id for e in chunk), written, strict=True))
                left = left[self._size :]
        except Exception as exc:
            self._inserts[:0] = left
            self._acks, self._letters = acks + self._acks, letters + self._letters
            self._failed(exc)
            return False
        self._came_back()
        return True

    async def _add(self, events: list[Event]) -> list[bytes]:
        """Add ``events`` to the stream, pending under this consumer; their entry ids."""
        written = await self._write(
            keys=[self.keys.stream, self._heartbeat, self.keys.epoch],
            args=[GROUP, self.consumer, self._ttl, secrets.token_hex(8),
                  *(encode_event(e) for e in events)],
        )  # fmt: skip
        self._held.wrote(written[0])
        return list(written[1:])

    def _failed(self, exc: Exception) -> None:
        """A Redis call failed: degrade for what Redis means, raise a bug."""
        problem = classify(exc)
        if problem is None:
            raise exc
        self._degraded(problem)

    def _degraded(self, problem: SharedRedisError) -> None:
        self.down = True
        if problem.kind != self.state:
            self.state = problem.kind
            level = logging.ERROR if problem.kind == "refused" else logging.WARNING
            log.log(level, "shared outbox " + _SAID[problem.kind], problem)

    def _came_back(self) -> None:
        if self.state != "ok":
            if self.state != "busy":
                # Others' heartbeats may have lapsed meanwhile: give them time to beat again.
                self._adopt_from = time.monotonic() + self._adopt_after
            self.state, self.down = "ok", False
            log.warning("shared outbox reachable again: the events kept meanwhile are written")
            self._urgent.set()

    async def commit(self) -> None:
        """Wait until everything reported so far is written, or a write failed (then
        ``down`` is True: Redis cannot take it, and the events wait in memory); then
        check that Redis still holds what this client wrote (what it no longer holds is
        never handed off)."""
        await self._started.wait()  # a commit right after start must not pass for one
        assert self._writer is not None
        target = self._generation + 1
        self._urgent.set()
        while self._committed < target and not self._writer.done():
            self._progress.clear()
            await self._progress.wait()
        try:
            await self._held.confirm()
        except Exception as exc:
            self._failed(exc)

    async def close(self) -> None:
        """Write what is left; then drop the heartbeat, so that what this client still
        holds (handed off) is adopted at once by another; close the connections. Never
        raises for Redis: what it could not do is logged."""
        self._closed = True
        if self._keeper is not None:
            self._keeper.cancel()
        if self._writer is not None:
            self._urgent.set()
        # Their failures were logged when they ended (_task_done).
        tasks = [t for t in (self._keeper, self._writer) if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            if self._started.is_set():
                await self._redis.delete(self._heartbeat)
        except Exception as exc:
            if classify(exc) is None:
                log.error("could not drop the outbox heartbeat", exc_info=exc)
        finally:
            await self._redis.aclose()


async def check_shared(limiter: RedisLimiter | None, journal: object) -> None:
    """``start()``'s check of a Redis limiter and a Redis outbox (when there are):
    raises :class:`~aiofuul.storage.redis_errors.RedisRefusedError` naming what Redis refuses."""
    checks = [limiter.check()] if limiter is not None else []
    if isinstance(journal, RedisOutbox):
        checks.append(journal.check())
    # Side by side: a Redis that does not answer costs its timeout once, not twice.
    for outcome in await asyncio.gather(*checks, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome
