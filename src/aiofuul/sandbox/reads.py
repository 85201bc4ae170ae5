"""The read endpoints: ``GET events/status``, ``GET events/pipeline`` and ``GET conversions``.

Each answer is ``(status, body)`` for a query, or
:class:`~aiofuul.sandbox.parsing.BadRequest`. What the sandbox makes up (conversions,
executions, attributions) has ids derived from the stored event's, so repeated polls see
the same ids. The pipeline's payouts and movements are the ones
:class:`~aiofuul.sandbox.state.FuulState` made of the event, as every other endpoint and
the webhooks show them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from ..wire.models import Event
from .movements import iso as _iso
from .movements import movement_row, pipeline_payout
from .parsing import parse_pipeline_query, parse_status_query
from .state import conversion_of
from .store import EventStore, StoredEvent

if TYPE_CHECKING:
    from .state import Payout

__all__ = ["answer_conversions", "answer_pipeline", "answer_status", "default_conversions"]

_ID_SPACE = uuid.UUID("6f1c3f0e-4b0e-4d5c-9a59-5a4e2f2a7c11")
_DEFAULT_TRIGGERS = ("trade", "deposit", "swap", "custom_conversion", "pageview", "connect_wallet")
_CONFIGURED_AT = "2026-01-01T00:00:00.000Z"
_CREATED_TRUE = msgspec.json.encode({"created": True})
_CREATED_FALSE = msgspec.json.encode({"created": False})
_EVENT_NOT_FOUND = msgspec.json.encode({"message": "Event not found", "statusCode": 404})


def _made_up_id(*parts: str) -> str:
    """A uuid that is the same every time for the same parts (stable across polls)."""
    return str(uuid.uuid5(_ID_SPACE, "/".join(parts)))


def default_conversions() -> list[dict[str, Any]]:
    """One conversion whose triggers are the event names the docs use."""
    triggers = [
        {
            "id": _made_up_id("trigger", name),
            "name": name,
            "description": f"Fires on {name} events (sandbox)",
            "type": "off-chain-event",
        }
        for name in _DEFAULT_TRIGGERS
    ]
    conversion = {
        "id": _made_up_id("conversion", "sandbox"),
        "external_id": 1,
        "name": "Sandbox conversion",
        "slug": "sandbox-conversion",
        "triggers": triggers,
        "payout_terms": [],
        "created_at": _CONFIGURED_AT,
        "updated_at": _CONFIGURED_AT,
    }
    return [conversion]


def answer_status(store: EventStore, query: Mapping[str, str]) -> tuple[int, bytes]:
    """``GET events/status``: whether any stored event has this user and name."""
    triple = parse_status_query(query)
    return 200, _CREATED_TRUE if store.created(*triple) else _CREATED_FALSE


def answer_conversions(conversions: Sequence[Mapping[str, Any]]) -> tuple[int, bytes]:
    """``GET conversions``: ``conversions``, as they are."""
    return 200, msgspec.json.encode(conversions)


def answer_pipeline(
    store: EventStore,
    query: Mapping[str, str],
    conversions: Sequence[Mapping[str, Any]],
    pipeline_status: str,
    pipeline_delay: float,
    payouts_of: Callable[[str], Sequence[Payout]],
) -> tuple[int, bytes]:
    """``GET events/pipeline``: what became of one stored event, as of now. It is
    ``"pending"`` until ``pipeline_delay`` seconds after it was stored, then
    ``pipeline_status`` (``"success"``: attributed to the conversion one of whose
    triggers has its name, with the payouts ``payouts_of(dedup_id)`` made of it: its
    user's and, when the user has a referrer, the referrer's)."""
    event_id, dedup_id, name = parse_pipeline_query(query)
    record: StoredEvent | None
    if event_id is not None:
        record = store.lookup_id(event_id)
    else:
        assert dedup_id is not None
        record = store.lookup(dedup_id)
        if record is not None and record.event.name != name:
            record = None
    if record is None:
        return 404, _EVENT_NOT_FOUND
    done = time.monotonic() - record.at >= pipeline_delay
    status = pipeline_status if done else "pending"
    success = done and status == "success"
    done_at = _iso(record.wall + pipeline_delay)
    paid = payouts_of(record.event.dedup_id) if success else ()
    answer = {
        "event": {**msgspec.to_builtins(record.event), "id": record.id},
        "trigger_executions": [_execution(record, status, done)],
        "attributions": [_attribution(record, conversions, done_at)] if success else [],
        "payouts": [pipeline_payout(p) for p in paid],
        "movements": [movement_row(p) for p in paid],
        "project_id": query.get("project_id"),  # another field no client knows
    }
    return 200, msgspec.json.encode(answer)


def _execution(record: StoredEvent, status: str, done: bool) -> dict[str, Any]:
    details = None
    if done and status != "success":
        details = f"sandbox pipeline_status is {status!r}: nothing was attributed"
    return {
        "id": _made_up_id(record.id, "execution"),
        "trigger_name": record.event.name,
        "status": status,
        "status_details": details,
        "created_at": _iso(record.wall),
        "sandbox": True,  # a field no client knows: it must be tolerated
    }


def _attribution(
    record: StoredEvent, conversions: Sequence[Mapping[str, Any]], created_at: str
) -> dict[str, Any]:
    """The attribution of a processed event to the conversion one of whose triggers
    has its name (none: the conversion fields are null)."""
    conversion = conversion_of(conversions, record.event.name)
    return {
        "id": _made_up_id(record.id, "attribution"),
        "conversion_id": conversion.get("id"),
        "conversion_name": conversion.get("name"),
        "user_identifier": _who(record.event),
        "attributor": None,
        "created_at": created_at,
    }


def _who(event: Event) -> str | None:
    """Whom the event is attributed to: the user, the deprecated address, or the tracking id."""
    if event.user is not None:
        return event.user.identifier
    if event.user_address is not None:
        return event.user_address
    tracking = (event.metadata or {}).get("tracking_id")
    return tracking if isinstance(tracking, str) else None
