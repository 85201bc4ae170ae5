"""The send endpoints, ``POST events`` and ``POST events/batch``: parse the body, check
the key's scopes against each event, and store what is new."""

from __future__ import annotations

import msgspec

from ..engine.limits import LaneName
from ..wire.models import Event, required_scope
from .parsing import parse_batch, parse_event
from .store import EventStore

__all__ = [
    "NO_SEND_SCOPE",
    "SEND_LANES",
    "SEND_SCOPES",
    "TOO_LARGE",
    "answer_send",
    "may_send",
]

#: A key needs one of these scopes to send events (the read endpoints need none): a
#: trigger event needs ``send:trigger_event``, a tracking event ``send:tracking_event``,
#: and ``service_role`` may send both.
SEND_SCOPES = frozenset({"send:trigger_event", "send:tracking_event", "service_role"})
#: The lanes whose requests send events (the others only read).
SEND_LANES: frozenset[LaneName] = frozenset({"single", "batch"})

_SERVICE_ROLE = "service_role"
_EMPTY = b"{}"
_CONFLICT = msgspec.json.encode(
    {"message": "Event with this dedup_id already exists", "statusCode": 409}
)


def _forbidden(scope: str) -> bytes:
    message = f"Forbidden: this API key lacks the {scope} scope"
    return msgspec.json.encode({"message": message, "statusCode": 403})


#: The body of the 403 to a key with no send scope at all.
NO_SEND_SCOPE = _forbidden("send:trigger_event or send:tracking_event")
#: The body of the 413 to a body over the size cap.
TOO_LARGE = msgspec.json.encode(
    {"message": "request entity too large", "error": "Payload Too Large", "statusCode": 413}
)


def may_send(scopes: frozenset[str] | None) -> bool:
    """Whether a key with these scopes (None: every scope) may send events at all."""
    return scopes is None or not scopes.isdisjoint(SEND_SCOPES)


def _missing_scope(scopes: frozenset[str] | None, events: list[Event]) -> str | None:
    """The first scope the events need that the key lacks (every event's is needed)."""
    if scopes is None or _SERVICE_ROLE in scopes:
        return None
    for event in events:
        needed = required_scope(event.name)
        if needed not in scopes:
            return needed
    return None


def answer_send(
    lane: LaneName,
    body: bytes,
    scopes: frozenset[str] | None,
    check_format: bool,
    store: EventStore | None,
) -> tuple[int, bytes, int]:
    """``(status, body, events in the body)`` for a send of ``body`` by a key with
    ``scopes``, or :class:`~aiofuul.sandbox.parsing.BadRequest`. With ``store`` None the
    events are judged as always but the store is not touched (a fault that loses them).
    """
    if lane == "single":
        events = [parse_event(body, check_format)]
    else:
        events = parse_batch(body, check_format)
    missing = _missing_scope(scopes, events)
    if missing is not None:
        return 403, _forbidden(missing), len(events)
    if store is None:
        if lane == "single":
            return 201, _EMPTY, 1
        unique = len({event.dedup_id for event in events})
        return 201, msgspec.json.encode({"ingested_events": unique}), len(events)
    store.saw(event.dedup_id for event in events)
    if lane == "single":
        return (201, _EMPTY, 1) if store.add(events[0]) else (409, _CONFLICT, 1)
    stored = store.add_all(events)
    return 201, msgspec.json.encode({"ingested_events": stored}), len(events)
