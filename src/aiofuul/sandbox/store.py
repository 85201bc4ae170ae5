"""What the sandbox has stored: events in arrival order, indexed for the API's questions."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

from ..wire.models import Event

__all__ = ["EventStore", "StoredEvent"]


class StoredEvent(NamedTuple):
    """One stored event, its sandbox event id, and when it was stored (``at``:
    ``time.monotonic()``; ``wall``: seconds since the epoch)."""

    event: Event
    id: str
    at: float
    wall: float


class EventStore:
    """Stored events, with O(1) answers to "is this dedup id known", "does any event
    match this (identifier, identifier type, name)" and "which event has this id"."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._index: dict[str, int] = {}  # dedup id -> position in events
        self._at: list[float] = []  # monotonic store time, by position
        self._triples: set[tuple[str, str, str]] = set()
        self._seen: Counter[str] = Counter()
        # Event ids are made on first request: a load test storing 200,000 events should
        # not pay for 200,000 uuids nobody asks for, and no one can know an id not yet made.
        self._event_ids: dict[str, str] = {}
        self._by_event_id: dict[str, str] = {}
        self._wall_offset = time.time() - time.monotonic()

    def clear(self) -> None:
        """Forget everything."""
        self.events.clear()
        self._index.clear()
        self._at.clear()
        self._triples.clear()
        self._seen.clear()
        self._event_ids.clear()
        self._by_event_id.clear()

    def saw(self, dedup_ids: Iterable[str]) -> None:
        """Count one request carrying these dedup ids (each counted once per request)."""
        self._seen.update(set(dedup_ids))

    def add(self, event: Event, now: float | None = None) -> bool:
        """Store ``event`` (at ``now``, ``time.monotonic()`` by default) unless its dedup id
        is known; True when stored."""
        if event.dedup_id in self._index:
            return False
        self._index[event.dedup_id] = len(self.events)
        self.events.append(event)
        self._at.append(time.monotonic() if now is None else now)
        if event.user is not None:
            self._triples.add((event.user.identifier, event.user.identifier_type, event.name))
        elif event.user_address is not None:
            # The deprecated user_address is the EVM address the oldest guide sent.
            self._triples.add((event.user_address, "evm_address", event.name))
        return True

    def add_all(self, events: Iterable[Event]) -> int:
        """Store each event whose dedup id is not yet known (the first of a repeated id
        wins); returns how many were stored."""
        now = time.monotonic()
        return sum(self.add(event, now) for event in events)

    def created(self, identifier: str, identifier_type: str, name: str) -> bool:
        """Whether any stored event has this user and (case-sensitive) name."""
        return (identifier, identifier_type, name) in self._triples

    def stored_count(self, dedup_id: str) -> int:
        """How many times this dedup id was stored: 0 or 1."""
        return int(dedup_id in self._index)

    def seen_count(self, dedup_id: str) -> int:
        """How many valid requests carried this dedup id, duplicates included."""
        return self._seen[dedup_id]

    def stored_ids(self) -> list[str]:
        """The dedup ids of the stored events, in arrival order."""
        return [event.dedup_id for event in self.events]

    def event_id(self, dedup_id: str) -> str | None:
        """The sandbox event id (a uuid4 string) of the stored event with this dedup id,
        or None when none is stored. The same id every time."""
        if dedup_id not in self._index:
            return None
        event_id = self._event_ids.get(dedup_id)
        if event_id is None:
            event_id = self._event_ids[dedup_id] = str(uuid.uuid4())
            self._by_event_id[event_id] = dedup_id
        return event_id

    def lookup(self, dedup_id: str) -> StoredEvent | None:
        """The stored event with this dedup id, or None."""
        position = self._index.get(dedup_id)
        if position is None:
            return None
        event_id = self.event_id(dedup_id)
        assert event_id is not None
        at = self._at[position]
        return StoredEvent(self.events[position], event_id, at, at + self._wall_offset)

    def stored_at(self, position: int) -> tuple[float, float]:
        """When the event at ``position`` of :attr:`events` was stored: ``(monotonic,
        wall)`` (no event id is made: a catch-up over 200,000 events stays cheap)."""
        at = self._at[position]
        return at, at + self._wall_offset

    def lookup_id(self, event_id: str) -> StoredEvent | None:
        """The stored event with this sandbox event id, or None."""
        dedup_id = self._by_event_id.get(event_id)
        return None if dedup_id is None else self.lookup(dedup_id)
