"""Request bodies and queries to events, with the API's 400 messages.

Decoding is msgspec's (:func:`aiofuul.wire.models.decode_event`, ``decode_batch``); every rule
beyond the types is the sandbox's own table of the documented variants
(:mod:`aiofuul.sandbox.documented`), never the client's :mod:`aiofuul.wire.validation`: a
client rule stricter than the docs must show up as a difference in tests. Messages are
shaped like the API's, and every message about one event of a batch starts with its
index: ``[3].user.identifier: ...``.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from ..wire.models import MAX_BATCH_EVENTS, Event, decode_batch, decode_event
from .documented import judge_event, judge_identifier_type, judge_text

__all__ = [
    "BadRequest",
    "parse_batch",
    "parse_event",
    "parse_pipeline_query",
    "parse_status_query",
]

_AT = " - at `$"
_STATUS_PARAMS = ("user_identifier", "user_identifier_type", "event_name")
_MAX_IDENTIFIER = 254
_JSON_KINDS: dict[type, str] = {
    dict: "an object",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


class BadRequest(Exception):
    """The request is invalid: ``messages`` go in the body of the 400; ``events`` is how
    many events the body held, when it could be read as a list."""

    def __init__(self, messages: list[str], events: int = 0):
        super().__init__("; ".join(messages))
        self.messages = messages
        self.events = events

    def body(self) -> bytes:
        """The body of the 400, shaped like the API's."""
        return msgspec.json.encode(
            {"message": self.messages, "error": "Bad Request", "statusCode": 400}
        )


def _type_message(exc: msgspec.ValidationError, prefix: str = "") -> str:
    """msgspec's "Expected `str`, got `int` - at `$.name`" as "<prefix>name: Expected ..."."""
    text = str(exc)
    head, sep, tail = text.rpartition(_AT)
    path = ""
    if sep:
        text, path = head, tail.removesuffix("`").removeprefix(".")
    # A whole-event type error has no path: name the event itself.
    return f"{prefix}{path or 'event'}: {text}"


def parse_event(body: bytes, check_format: bool) -> Event:
    """The valid event in a ``POST /v1/events`` body, or :class:`BadRequest`."""
    try:
        event = decode_event(body)
    except msgspec.ValidationError as exc:
        raise BadRequest([_type_message(exc)]) from None
    except msgspec.DecodeError as exc:
        raise BadRequest([f"body: must be a JSON object ({exc})"]) from None
    messages = judge_event(event, check_format)
    if messages:
        raise BadRequest(messages)
    return event


def _length_message(events: list[object]) -> str | None:
    if 0 < len(events) <= MAX_BATCH_EVENTS:
        return None
    return f"events: must hold 1 to {MAX_BATCH_EVENTS} events, not {len(events)}"


def parse_batch(body: bytes, check_format: bool) -> list[Event]:
    """The valid events of a ``POST /v1/events/batch`` body, or :class:`BadRequest` with
    one message per broken event, each prefixed ``[index].``."""
    items: list[object]
    typed_error: msgspec.ValidationError | None = None
    try:
        items = list(decode_batch(body))
    except msgspec.ValidationError as exc:  # a DecodeError too: catch it first
        # Typed decoding stops at the first broken event: decode untyped to find them all.
        typed_error = exc
        try:
            plain = msgspec.json.decode(body)
        except msgspec.DecodeError as exc2:
            # The type error came before the syntax error: still not JSON.
            raise BadRequest([f"body: must be a JSON array of event objects ({exc2})"]) from None
        if not isinstance(plain, list):
            kind = _JSON_KINDS.get(type(plain), "a value")
            raise BadRequest([f"body: must be a JSON array of event objects, not {kind}"]) from None
        items = plain
    except msgspec.DecodeError as exc:
        raise BadRequest([f"body: must be a JSON array of event objects ({exc})"]) from None
    length = _length_message(items)
    if length is not None:
        raise BadRequest([length], len(items))
    events: list[Event] = []
    messages: list[str] = []
    for index, item in enumerate(items):
        try:
            event = item if type(item) is Event else msgspec.convert(item, Event)
        except msgspec.ValidationError as exc:
            messages.append(_type_message(exc, f"[{index}]."))
            continue
        messages.extend(f"[{index}].{message}" for message in judge_event(event, check_format))
        events.append(event)
    if typed_error is not None and not messages:
        # Converting the elements one by one found nothing wrong (msgspec's decoding and
        # converting can differ at the edges): report the whole-array error, whose path
        # already starts with the index ("$[3].name").
        messages.append(_type_message(typed_error))
    if messages:
        raise BadRequest(messages, len(items))
    return events


def parse_status_query(query: Mapping[str, str]) -> tuple[str, str, str]:
    """``(identifier, identifier_type, event_name)`` of a ``GET /v1/events/status``, or
    :class:`BadRequest` for a missing parameter or an unknown identifier type (the
    reference page's ``address`` included: the message names ``evm_address``)."""
    missing = [f"{name} should not be empty" for name in _STATUS_PARAMS if not query.get(name)]
    if missing:
        raise BadRequest(missing)
    identifier = query["user_identifier"]
    kind = query["user_identifier_type"]
    name = query["event_name"]
    # The format is not checked: a malformed identifier simply matches nothing.
    checks = (
        judge_identifier_type("user_identifier_type", kind),
        judge_text("user_identifier", identifier, _MAX_IDENTIFIER),
        judge_text("event_name", name),
    )
    messages = [message for message in checks if message is not None]
    if messages:
        raise BadRequest(messages)
    return identifier, kind, name


def parse_pipeline_query(query: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """``(event_id, dedup_id, event_name)`` of a ``GET /v1/events/pipeline``: either
    ``event_id`` alone, or ``dedup_id`` and ``event_name`` (event_id then None); else
    :class:`BadRequest`."""
    event_id = query.get("event_id")
    if event_id:
        return event_id, None, None
    dedup_id, name = query.get("dedup_id"), query.get("event_name")
    if not dedup_id or not name:
        raise BadRequest(["event_id should not be empty, or give both dedup_id and event_name"])
    checks = (judge_text("dedup_id", dedup_id), judge_text("event_name", name))
    messages = [message for message in checks if message is not None]
    if messages:
        raise BadRequest(messages)
    return None, dedup_id, name
