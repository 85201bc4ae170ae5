"""What the sandbox has stored: events in arrival order, indexed for the API's questions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from ..models import Event

__all__ = ["EventStore"]


class EventStore:
    """Stored events, with O(1) answers to "is this dedup id known" and "does any event
    match this (identifier, identifier type, name)"."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._ids: set[str] = set()
        self._triples: set[tuple[str, str, str]] = set()
        self._seen: Counter[str] = Counter()

    def clear(self) -> None:
        """Forget everything."""
        self.events.clear()
        self._ids.clear()
        self._triples.clear()
        self._seen.clear()

    def saw(self, dedup_ids: Iterable[str]) -> None:
        """Count one request carrying these dedup ids (each counted once per request)."""
        self._seen.update(set(dedup_ids))

    def has(self, dedup_id: str) -> bool:
        """Whether an event with this dedup id is stored."""
        return dedup_id in self._ids

    def add(self, event: Event) -> bool:
        """Store ``event`` unless its dedup id is known; True when stored."""
        if event.dedup_id in self._ids:
            return False
        self._ids.add(event.dedup_id)
        self._triples.add((event.user.identifier, event.user.identifier_type, event.name))
        self.events.append(event)
        return True

    def add_all(self, events: Iterable[Event]) -> int:
        """Store each event whose dedup id is not yet known (the first of a repeated id
        wins); returns how many were stored."""
        return sum(self.add(event) for event in events)

    def created(self, identifier: str, identifier_type: str, name: str) -> bool:
        """Whether any stored event has this user and (case-sensitive) name."""
        return (identifier, identifier_type, name) in self._triples

    def stored_count(self, dedup_id: str) -> int:
        """How many times this dedup id was stored: 0 or 1."""
        return int(dedup_id in self._ids)

    def seen_count(self, dedup_id: str) -> int:
        """How many valid requests carried this dedup id, duplicates included."""
        return self._seen[dedup_id]

    def stored_ids(self) -> list[str]:
        """The dedup ids of the stored events, in arrival order."""
        return [event.dedup_id for event in self.events]
