"""What one client of the Redis outbox has in the stream, and whether Redis still holds
it: the one owner of the map from dedup id to stream entry id.

An event written (or adopted) and not settled is held for this client. At close, the
ledger hands off only what :meth:`Holdings.holds` (another client delivers it), so the
map must never claim more than Redis has: :meth:`Holdings.confirm` (run by every
commit, so at close too) looks each entry up, and a stream found gone (a restart of
Redis without persistence: a heartbeat finds no stream, a write has to create it) is
logged once with what it held when last seen, dead clients' backlogs included.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

__all__ = ["Holdings"]

log = logging.getLogger("aiofuul")

_CHUNK = 1000  # stream ids one look-up script takes


class Holdings:
    """The entries this client holds in ``stream`` (see the module docstring);
    ``held`` is the registered script that returns which ids the stream lacks."""

    def __init__(self, stream: str, held: Any):
        self._stream = stream
        self._held = held
        self._ids: dict[str, bytes] = {}  # dedup id -> entry id
        self._known = True  # the last confirm() went through
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

    def heartbeat(self, length: int) -> None:
        """The stream's length as a heartbeat saw it (-1: no stream)."""
        if length < 0 and (self.seen > 0 or self._ids):
            self._vanished()
        self.seen = length

    def wrote(self, created: bool) -> None:
        """A write went through; ``created``: it had to make the stream anew."""
        if created and (self.seen > 0 or self._ids):
            self._vanished()
        self.seen = max(self.seen, 0)

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
        self._ids.clear()
        self.seen = -1

    async def confirm(self) -> None:
        """Drop what the stream no longer holds, saying so. Until it completes, nothing
        counts as held; a Redis error is raised (and nothing counts as held)."""
        self._known = False
        written = list(self._ids.items())
        missing: set[bytes] = set()
        for first in range(0, len(written), _CHUNK):
            ids = [entry for _, entry in written[first : first + _CHUNK]]
            missing.update(await self._held(keys=[self._stream], args=ids))
        lost = [dedup for dedup, entry in written if entry in missing]
        for dedup in lost:
            self._ids.pop(dedup, None)
        if lost:
            log.error(
                "%d event(s) this client wrote are no longer in the shared outbox (Redis "
                "restarted without persistence, or they were deleted): they are "
                "delivered from memory, and reported as undelivered if the client "
                "closes first",
                len(lost),
            )
        self._known = True
