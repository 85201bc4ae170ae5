"""Request bodies and queries to events, with the API's 400 messages.

Decoding is msgspec's (:func:`aiofuul.models.decode_event`, ``decode_batch``); every rule
beyond the types is :mod:`aiofuul.validation`'s, the very code the client runs. This
module only turns their errors into messages shaped like the API's, where every message
about one event of a batch starts with its index: ``[3].user.identifier: ...``.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from ..errors import ValidationError
from ..models import MAX_BATCH_EVENTS, Event, User, decode_batch, decode_event
from ..validation import check_name, check_user, validate_batch, validate_event

__all__ = ["BadRequest", "parse_batch", "parse_event", "parse_status_query"]

_AT = " - at `$"
_STATUS_PARAMS = ("user_identifier", "user_identifier_type", "event_name")
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


def _type_message(exc: msgspec.ValidationError, prefix: str = "") -> str:
    """msgspec's "Expected `str`, got `int` - at `$.name`" as "<prefix>name: Expected ..."."""
    text = str(exc)
    head, sep, tail = text.rpartition(_AT)
    path = ""
    if sep:
        text, path = head, tail.removesuffix("`").removeprefix(".")
    # A whole-event type error has no path: name it like validate_event does.
    return f"{prefix}{path or 'event'}: {text}"


def parse_event(body: bytes, check_format: bool) -> Event:
    """The valid event in a ``POST /v1/events`` body, or :class:`BadRequest`."""
    try:
        event = decode_event(body)
    except msgspec.ValidationError as exc:
        raise BadRequest([_type_message(exc)]) from None
    except msgspec.DecodeError as exc:
        raise BadRequest([f"body: must be a JSON object ({exc})"]) from None
    try:
        return validate_event(event, check_format)
    except ValidationError as exc:
        raise BadRequest([str(exc)]) from None


def _length_message(events: list[object]) -> str | None:
    if 0 < len(events) <= MAX_BATCH_EVENTS:
        return None
    try:
        validate_batch(events)
    except ValidationError as exc:
        # validate_batch checks the length first, so this is its length message.
        return str(exc)
    return None  # pragma: no cover - validate_batch refuses every such length


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
            events.append(validate_event(event, check_format))
        except msgspec.ValidationError as exc:
            messages.append(_type_message(exc, f"[{index}]."))
        except ValidationError as exc:
            messages.append(str(exc.within(f"[{index}].")))
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
    :class:`BadRequest` for a missing parameter or an unknown identifier type."""
    missing = [f"{name} should not be empty" for name in _STATUS_PARAMS if not query.get(name)]
    if missing:
        raise BadRequest(missing)
    identifier = query["user_identifier"]
    kind = query["user_identifier_type"]
    name = query["event_name"]
    messages: list[str] = []
    try:
        # The format is not checked: a malformed identifier simply matches nothing.
        check_user(User(identifier, kind), check_format=False)
    except ValidationError as exc:
        messages.append(str(exc).replace("user.", "user_", 1))
    try:
        check_name(name)
    except ValidationError as exc:
        messages.append("event_" + str(exc))
    if messages:
        raise BadRequest(messages)
    return identifier, kind, name
