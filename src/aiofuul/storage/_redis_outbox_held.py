"""What one client of the Redis outbox has in the stream, and whether Redis still holds
it: the one owner of the map from dedup id to stream entry id.

An event written (or adopted) and not settled is held for this client. At close, the
ledger hands off only what :meth:`Holdings.holds` (another client delivers it), so the
map must never claim more than Redis has: :meth:`Holdings.confirm` (run by every
commit, so at close too) looks entries up, and a stream found gone (a restart of Redis
without persistence: a heartbeat finds no stream, or a new epoch, made by whichever
client wrote first to the stream made anew) is logged once with what it held when last
seen, dead clients' backlogs included.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

__all__ = ["Holdings"]

log = logging.getLogger("aiofuul")

_CHUNK = 1000  # stream ids one look-up script takes
# Everything held is looked up at most this often; in between only the epoch (a write's
# answer proves its entries are there; a restart since changes the epoch), so that a
# flush() in a loop costs no pass over a large backlog.
_FULL_EVERY = 1.0


class Holdings:
    """The entries this client holds in ``stream`` (see the module docstring);
    ``held`` is the registered script that returns which ids the stream lacks, and
    ``epoch`` the key of the name of the stream's life."""

    def __init__(self, stream: str, epoch: str, held: Any):
        self._stream = stream
        self._keys = [stream, epoch]
        self._held = held
        self._epoch: bytes | None = None  # the life of the stream our entries are in
        self._ids: dict[str, bytes] = {}  # dedup id -> entry id
        self._known = True  # the last confirm() went through
        self._full_at = -_FULL_EVERY  # monotonic time of the last full confirm()
        #: The stream's length at the last heartbeat (-1: there was none).
        self.seen = -1

    def __len__(self) -> int:
        return len(self._ids)

    def holds(self, dedup_id: str) -> bool:
        """Whether Redis is known to hold the entry of ``dedup_id`` for this client."""
        return self._known and dedup_id in self._ids

    def record(self, pairs: Iterable[tuple[str, bytes]]) -> None:
        """Entries written or adopted: ``(dedup id, entry id)``."""
        self._ids.update(pairs)

    def forget(self, dedup_id: str) -> bytes | None:
        """No longer ours to count (settled); its entry id, if it was written."""
        return self._ids.pop(dedup_id, None)

    def heartbeat(self, length: int, epoch: bytes | None) -> None:
        """The stream's length and epoch as a heartbeat saw them (-1: no stream)."""
        if length < 0 and (self.seen > 0 or self._ids):
            self._vanished()
        else:
            self._same_life(epoch)
        self.seen = length

    def wrote(self, epoch: bytes) -> None:
        """A write went through, in the stream's life ``epoch``."""
        self._same_life(epoch)
        self._epoch = epoch
        self.seen = max(self.seen, 0)

    def _same_life(self, epoch: bytes | None) -> None:
        # None: the epoch is gone (with the stream), or the stream is older than epochs.
        if epoch != self._epoch:
            if self._epoch is not None and (self._ids or self.seen > 0):
                self._vanished()
            self._epoch = epoch

    def _vanished(self) -> None:
        mine = len(self._ids)
        log.error(
            "the shared outbox stream %s is gone (Redis restarted without persistence?): "
            "it held %d event(s) when last seen (of every client, dead ones included), "
            "%d of them written by this client, which still delivers those from memory "
            "(no longer durable); the others are lost",
            self._stream,
            max(self.seen, mine),
            mine,
        )
        self.clear()

    def clear(self) -> None:
        """Hold nothing (the stream is gone, or was deleted on purpose)."""
        self._ids.clear()
        self.seen = -1

    async def confirm(self) -> None:
        """Drop what the stream no longer holds, saying so: every entry is looked up,
        or (within ``_FULL_EVERY`` of the last full pass) only the stream's epoch.
        Until it completes nothing counts as held; a Redis error is raised (and nothing
        does)."""
        self._known = False
        now = time.monotonic()
        full = now - self._full_at >= _FULL_EVERY
        written = list(self._ids.items()) if full else []
        missing: set[bytes] = set()
        for first in range(0, max(len(written), 1), _CHUNK):  # once at least: the epoch
            ids = [entry for _, entry in written[first : first + _CHUNK]]
            epoch, *gone = await self._held(keys=self._keys, args=ids)
            self._same_life(epoch)
            missing.update(gone)
        lost = [dedup for dedup, entry in written if entry in missing]
        for dedup in lost:
            self._ids.pop(dedup, None)
        if full:
            self._full_at = now
        if lost:
            log.error(
                "%d event(s) this client wrote are no longer in the shared outbox (Redis "
                "restarted without persistence, or they were deleted): they are "
                "delivered from memory, and reported as undelivered if the client "
                "closes first",
                len(lost),
            )
        self._known = True
