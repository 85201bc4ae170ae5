"""A durable outbox: events accepted by ``track()`` survive a crash of the process.

``FuulClient(outbox="events.db")`` keeps every accepted event in an embedded SQLite
database (WAL mode) until the server has it. Writes happen on a thread of their own,
in groups: everything accepted within ``commit_interval`` seconds (50 ms by default),
or ``commit_size`` events, is committed in one transaction, so ``track()`` only appends
to a list and stays as cheap as without an outbox. ``await fuul.flush()`` (and
:meth:`Outbox.commit`) commits at once, without waiting for the interval, and waits for
the commit. What a crash can lose is the last, uncommitted group: at most 50 ms of
events.

- Delivered (and duplicate) events leave the outbox in the same group commits.
- Events the server rejected (400) move to a dead-letter table with its message;
  ``aiofuul outbox FILE list|retry|purge`` manages them.
- Events not delivered when the client stopped (shutdown, retries exhausted, a key
  refused) stay in the outbox: the next client on the same file sends them again, and
  their dedup ids make the replay harmless.
- One client per file: a lock file (``FILE.lock``) refuses a second client, in this
  process or another, with a clear error.
- The files hold user identifiers (emails among them), so the database and its lock
  file are created readable and writable by their owner only (mode 0600, never more
  whatever the umask); SQLite gives its ``-wal`` and ``-shm`` files the database
  file's mode. A file that already exists keeps its mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import stat
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import msgspec

from ..engine.seams import Feed, Settlement
from ..errors import ClientStateError, UndeliveredError
from ..wire.models import Event, decode_event, encode_event

__all__ = [
    "DeadLetter",
    "Outbox",
    "dead_letters",
    "open_database",
    "pending_count",
    "purge_dead_letters",
    "requeue_dead_letters",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_id TEXT NOT NULL UNIQUE,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter (
    dedup_id TEXT PRIMARY KEY,
    body BLOB NOT NULL,
    reason TEXT NOT NULL,
    failed_at REAL NOT NULL
);
"""
log = logging.getLogger("aiofuul")


_PRIVATE = 0o600


def _create_private(path: str) -> None:
    # SQLite would create the file with the umask's mode (usually world-readable).
    # O_EXCL: a file that exists keeps the mode its owner gave it.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE))


def _restrict_sidecars(path: str) -> None:
    # SQLite's unix VFS creates -wal and -shm with the database file's mode; this only
    # matters on a build that does not, so that they never reveal more than it.
    allowed = stat.S_IMODE(os.stat(path).st_mode)
    for sidecar in (path + "-wal", path + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(os.stat(sidecar).st_mode)
            if mode & ~allowed:
                os.chmod(sidecar, mode & allowed)


def open_database(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open (creating if needed, mode 0600) an outbox database in WAL mode."""
    name = os.fspath(path)
    _create_private(name)
    conn = sqlite3.connect(name, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable against a process crash in WAL mode (not against power loss).
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(_SCHEMA)
    _restrict_sidecars(name)
    return conn


class DeadLetter(msgspec.Struct, frozen=True):
    """An event the server rejected, with its reason."""

    dedup_id: str
    event: Event
    reason: str
    failed_at: float


def _lock(path: Path) -> IO[str]:
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, _PRIVATE)
    handle = os.fdopen(fd, "a+")  # held open for the client's lifetime
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise ClientStateError(
            f"outbox {path.with_suffix('')} is in use by another client (pid {owner}); "
            "give each client (and each worker process) a file of its own"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


#: Released after a fork: the outbox threads parked before it wait on it.
_parked: list[threading.Event] = []


def _park(executor: ThreadPoolExecutor) -> None:
    """Hold an outbox's one worker thread in a task of ours until the fork is done: a
    fork while that thread is inside SQLite leaves SQLite's mutex locked in the child,
    whose own outbox then hangs on its first open."""
    release, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(30)

    try:
        executor.submit(hold)
    except RuntimeError:  # the outbox is closed: its thread is not in SQLite
        return
    _parked.append(release)
    started.wait(5)


def _before_fork() -> None:
    for outbox in list(_open):
        _park(outbox._thread)


def _after_fork() -> None:
    while _parked:
        _parked.pop().set()


class Outbox:
    """The journal the sender reports to: which events were accepted, which settled."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        commit_interval: float = 0.05,
        commit_size: int = 1000,
    ):
        self.path = Path(path)
        self._lock_file = _lock(self.path.with_name(self.path.name + ".lock"))
        self._interval = commit_interval
        self._size = commit_size
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aiofuul-outbox")
        self._conn: sqlite3.Connection | None = None
        self._inserts: list[Event] = []
        self._deletes: list[str] = []
        self._dead: list[tuple[Event, str]] = []
        self._generation = 0  # groups handed to the writer
        self._committed = 0  # groups committed
        # asyncio.Event binds to a loop on first use (3.10+), so these can exist now.
        self._changed = asyncio.Event()
        self._urgent = asyncio.Event()  # cuts the grouping wait short
        self._progress = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self.down = False  # the writer failed: nothing is written any more
        _open.add(self)

    # -- called by the sender on the loop (cheap: list appends) ----------------------
    def added(self, event: Event) -> None:
        self._inserts.append(event)
        self._kick(len(self._inserts) >= self._size)

    def settled(
        self, events: Sequence[Event], outcome: Settlement, error: UndeliveredError | None
    ) -> None:
        if outcome in ("delivered", "duplicates", "dropped"):
            self._deletes.extend(e.dedup_id for e in events)
        elif outcome == "rejected":
            reason = str(error.cause if error is not None and error.cause else error)
            self._dead.extend((e, reason) for e in events)
        else:  # failed: kept for the next client on this file to send again
            return
        self._kick(now=False)

    def hands_off(self, event: Event) -> bool:
        """Never: a file is nobody else's; its next client resends what it keeps."""
        return False

    def _kick(self, now: bool) -> None:
        if now or not self._changed.is_set():
            self._changed.set()
        if now:
            self._urgent.set()

    # -- life cycle ------------------------------------------------------------------
    async def recover(self) -> list[Event]:
        """Open the database and return what a previous run left, oldest first; start
        the group-commit writer."""
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(self._thread, self._open_and_read)
        self._writer = loop.create_task(self._write_loop(), name="aiofuul-outbox")
        self._writer.add_done_callback(self._writer_done)
        return [decode_event(body) for body in rows]

    def attach(self, feed: Feed, room: Callable[[], int]) -> None:
        """Nothing to attach: only this client uses the file, so nothing is adopted."""

    def _open_and_read(self) -> list[bytes]:
        self._conn = open_database(self.path)
        return [row[0] for row in self._conn.execute("SELECT body FROM outbox ORDER BY seq")]

    def _writer_done(self, task: asyncio.Task[None]) -> None:
        self._progress.set()  # nobody may wait forever on a writer that is gone
        if not task.cancelled() and task.exception() is not None:
            self.down = True
            log.error(
                "the outbox writer failed; events are no longer durable", exc_info=task.exception()
            )

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._changed.wait()
            if not self._closed and not self._urgent.is_set():
                # Group what arrives within the interval into one transaction, unless
                # someone waits for the commit (flush) or the group is full.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), self._interval)
            self._changed.clear()
            # Cleared with the group taken: a commit asked for during the write below
            # is for the next group, which then starts at once.
            self._urgent.clear()
            inserts, deletes, dead = self._inserts, self._deletes, self._dead
            self._inserts, self._deletes, self._dead = [], [], []
            self._generation += 1
            generation = self._generation
            if inserts or deletes or dead:
                await loop.run_in_executor(self._thread, self._write, inserts, deletes, dead)
            self._committed = generation
            self._progress.set()
            if self._closed and not (self._inserts or self._deletes or self._dead):
                return

    def _write(
        self, inserts: list[Event], deletes: list[str], dead: list[tuple[Event, str]]
    ) -> None:
        conn = self._conn
        assert conn is not None
        now = time.time()
        with conn:  # one transaction: BEGIN ... COMMIT
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT OR IGNORE INTO outbox (dedup_id, body) VALUES (?, ?)",
                [(e.dedup_id, encode_event(e)) for e in inserts],
            )
            conn.executemany("DELETE FROM outbox WHERE dedup_id = ?", [(d,) for d in deletes])
            conn.executemany(
                "INSERT OR REPLACE INTO dead_letter VALUES (?, ?, ?, ?)",
                [(e.dedup_id, encode_event(e), reason, now) for e, reason in dead],
            )
            conn.executemany(
                "DELETE FROM outbox WHERE dedup_id = ?", [(e.dedup_id,) for e, _ in dead]
            )

    async def commit(self) -> None:
        """Wait until everything reported so far is committed."""
        if self._writer is None:
            return
        target = self._generation + 1
        self._kick(now=True)
        while self._committed < target and self._writer is not None and not self._writer.done():
            self._progress.clear()
            await self._progress.wait()

    async def close(self) -> None:
        """Commit what is left, close the database and release the lock."""
        self._closed = True
        if self._writer is not None:
            self._kick(now=True)
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self._conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._conn.close)
        self._thread.shutdown(wait=True)
        _open.discard(self)
        self._lock_file.close()


#: Outboxes not closed yet in this process, whose threads a fork must park.
_open: weakref.WeakSet[Outbox] = weakref.WeakSet()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork
    )


# -- managing a file no client has open (``aiofuul outbox``) ------------------------------
def _managed(path: str | os.PathLike[str]) -> tuple[IO[str], sqlite3.Connection]:
    target = Path(path)
    if not target.exists():
        raise FileNotFoundError(f"no outbox at {target}")
    return _lock(target.with_name(target.name + ".lock")), open_database(target)


def pending_count(path: str | os.PathLike[str]) -> int:
    """How many events wait in the outbox for a client to send them."""
    lock, conn = _managed(path)
    try:
        return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
    finally:
        conn.close()
        lock.close()


def dead_letters(path: str | os.PathLike[str]) -> list[DeadLetter]:
    """The events the server rejected, oldest first."""
    lock, conn = _managed(path)
    try:
        rows = conn.execute(
            "SELECT dedup_id, body, reason, failed_at FROM dead_letter ORDER BY failed_at"
        ).fetchall()
    finally:
        conn.close()
        lock.close()
    return [DeadLetter(d, decode_event(body), reason, at) for d, body, reason, at in rows]


def _where(ids: Sequence[str] | None) -> tuple[str, list[str]]:
    if ids is None:
        return "", []
    return f" WHERE dedup_id IN ({','.join('?' * len(ids))})", list(ids)


def requeue_dead_letters(path: str | os.PathLike[str], ids: Sequence[str] | None = None) -> int:
    """Move dead letters (all, or those ``ids``) back into the outbox, for the next
    client on the file to send again; returns how many moved."""
    lock, conn = _managed(path)
    where, args = _where(ids)
    try:
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT OR IGNORE INTO outbox (dedup_id, body) "
                f"SELECT dedup_id, body FROM dead_letter{where}",
                args,
            )
            return int(conn.execute(f"DELETE FROM dead_letter{where}", args).rowcount)
    finally:
        conn.close()
        lock.close()


def purge_dead_letters(path: str | os.PathLike[str], ids: Sequence[str] | None = None) -> int:
    """Delete dead letters (all, or those ``ids``); returns how many."""
    lock, conn = _managed(path)
    where, args = _where(ids)
    try:
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            return int(conn.execute(f"DELETE FROM dead_letter{where}", args).rowcount)
    finally:
        conn.close()
        lock.close()
