"""The wire schema of the Fuul events API, as msgspec Structs.

This module is the one description of what goes over the wire: the client encodes
with it, and the sandbox server decodes with it. The rules a value must obey beyond
its type (lengths, identifier formats, timestamps) live in :mod:`aiofuul.wire.validation`.

Example::

    from aiofuul import Amount, Currency, Event, User

    user = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")
    event = Event("deposit", user, dedup_id="dep-0xabc",
                  args={"value": Amount("1500000", Currency(name="USDC"))})
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal, get_args

import msgspec

__all__ = [
    "IDENTIFIER_TYPES",
    "MAX_BATCH_EVENTS",
    "MAX_EVENT_BYTES",
    "MAX_REQUEST_BYTES",
    "TRACKING_EVENTS",
    "Amount",
    "ArgValue",
    "DECODE_ERRORS",
    "BatchResult",
    "Conversion",
    "Currency",
    "Event",
    "EventPipeline",
    "IdentifierType",
    "SendResult",
    "Trigger",
    "TriggerExecution",
    "User",
    "required_scope",
    "decode_batch",
    "decode_conversions",
    "decode_event",
    "decode_ingested",
    "decode_pipeline",
    "encode_batch",
    "encode_batch_in_steps",
    "encode_event",
]

#: The identifier types a user may have (the official JS SDK's ``UserIdentifierType``).
IdentifierType = Literal[
    "evm_address", "solana_address", "xrpl_address", "sui_address", "stellar_address", "email"
]
IDENTIFIER_TYPES: frozenset[str] = frozenset(get_args(IdentifierType))

#: The batch endpoint refuses more events than this in one request.
MAX_BATCH_EVENTS = 100

#: The largest request body the client sends, in bytes. Fuul publishes no cap; the
#: sandbox's is this one (it answers 413 above it).
MAX_REQUEST_BYTES = 8 * 1024 * 1024

#: The largest event, encoded as JSON: validation refuses a larger one, so that a batch of
#: :data:`MAX_BATCH_EVENTS` events, with its brackets and commas, stays under
#: :data:`MAX_REQUEST_BYTES` however the sender groups them.
MAX_EVENT_BYTES = 80 * 1024

#: Events a ``send:tracking_event`` key sends (the official SDK's); every other name is a
#: trigger event and needs a ``send:trigger_event`` key.
TRACKING_EVENTS: frozenset[str] = frozenset({"pageview", "connect_wallet"})


def required_scope(name: str) -> str:
    """The API key scope that sending an event called ``name`` needs."""
    return "send:tracking_event" if name in TRACKING_EVENTS else "send:trigger_event"


class User(msgspec.Struct, frozen=True, gc=False):
    """The user an event belongs to: ``User("0x5290...9EE7", "evm_address")``."""

    identifier: str
    identifier_type: str


class Currency(msgspec.Struct, frozen=True, omit_defaults=True):
    """A currency, in the recommended forms: by name (``Currency(name="USDC")``, ``"USD"``,
    ``"POINT"``) or by token (``Currency(identifier="0xA0b8...",
    identifier_type="evm_contract", chain_identifier="evm:1")``).

    It is a helper, not the only form accepted: ``args`` may also carry any form the
    vendor documents as a plain dict (``{"name": "USDC", "chain_id": 1}``, a numeric
    ``chain_identifier``, a bare ``"USDC"``), sent as written."""

    name: str | None = None
    identifier: str | None = None
    identifier_type: str | None = None
    chain_identifier: str | int | None = None


class Amount(msgspec.Struct, frozen=True):
    """A monetary amount for the standard ``value`` and ``revenue`` args.

    ``amount`` is an integer string in the currency's smallest unit
    (``Amount("1500000", Currency(name="USDC"))`` is 1.5 USDC with 6 decimals).
    """

    amount: str
    currency: Currency


#: What one ``args`` value usually is: a string, number or boolean, or an :class:`Amount`
#: (or a dict of the same shape) under ``value`` and ``revenue``.
ArgValue = str | int | float | bool | Amount


# gc=False: an event holds only strings, numbers and Structs, never a cycle, and a
# queue of 100,000 of them must not make every cyclic collection walk them all.
class Event(msgspec.Struct, omit_defaults=True, gc=False):
    """One event, exactly as the API takes it: a trigger event (``Event("deposit", user,
    dedup_id="dep-1", args={...})``) or a tracking event (``pageview``,
    ``connect_wallet``, with ``metadata={"tracking_id": ...}``).

    ``timestamp`` is milliseconds since the epoch (an int, or a string of digits as older
    guides send it); leave it ``None`` to let the server stamp the time it receives the
    event. ``user_address`` is the deprecated form of ``user``; ``project_id`` names the
    event's project in the body, as the official SDK does. Every optional field is
    left out of the body when unset. ``dedup_id`` is required: its empty default only
    lets a body without one be decoded, and validation refuses it.
    """

    name: str
    user: User | None = None
    # A default only so that a body without it decodes; validation refuses "".
    dedup_id: str = ""
    args: dict[str, Any] | None = None
    timestamp: int | str | None = None
    user_address: str | None = None
    metadata: dict[str, Any] | None = None
    signature: str | None = None
    signature_message: str | None = None
    signature_public_key: str | None = None
    account_chain_id: int | None = None
    # The official SDK puts the project in the body too when it works for several.
    project_id: str | None = None


class SendResult(msgspec.Struct, frozen=True):
    """The outcome of one ``POST /v1/events``.

    ``duplicate`` is True when the server already had this ``dedup_id`` (HTTP 409):
    the event exists, and the dedup id did its job.
    """

    dedup_id: str
    duplicate: bool = False


class BatchResult(msgspec.Struct, frozen=True):
    """The outcome of one ``POST /v1/events/batch``: ``ingested`` events were stored,
    ``skipped`` were already known by their dedup id."""

    ingested: int
    skipped: int


class _BatchResponse(msgspec.Struct):
    ingested_events: int


#: What decoding a body the client did not write may raise: malformed JSON, a wrong
#: shape, or nesting deeper than the decoder recurses (``RecursionError``). Every decoder
#: of an answer catches all of them: an unreadable answer is "no answer" (retried, then a
#: :class:`~aiofuul.TransportError`), never an exception of its own.
DECODE_ERRORS: tuple[type[Exception], ...] = (msgspec.MsgspecError, ValueError, RecursionError)

_ENCODER = msgspec.json.Encoder()
_EVENT_DECODER = msgspec.json.Decoder(Event)
_BATCH_DECODER = msgspec.json.Decoder(list[Event])
_BATCH_RESPONSE_DECODER = msgspec.json.Decoder(_BatchResponse)


def encode_event(event: Event) -> bytes:
    """The body of ``POST /v1/events``: one JSON object."""
    return _ENCODER.encode(event)


def encode_batch(events: list[Event]) -> bytes:
    """The body of ``POST /v1/events/batch``: a bare JSON array of event objects."""
    return _ENCODER.encode(events)


#: About a millisecond of encoding: the most body one event-loop turn builds.
_TURN_BYTES = 256 * 1024


async def encode_batch_in_steps(events: list[Event]) -> bytes:
    """:func:`encode_batch`, yielding to the event loop about every ``_TURN_BYTES``: a
    batch of large events (100 of 1 MB each) would otherwise hold the loop for a third
    of a second. A thread would not help: msgspec holds the GIL while it encodes.

    The first event is encoded alone to learn the events' size. A batch of ordinary
    events then fits one turn's budget and is encoded whole; otherwise the rest go in
    chunks that fill one turn's budget each, and the chunks' arrays are joined once at
    the end, without their inner brackets: growing one buffer instead would copy it at
    every reallocation."""
    encode = _ENCODER.encode
    n = len(events)
    if n > 1 and len(encode(events[:1])) * n <= _TURN_BYTES:
        return encode(events)  # the usual batch: one turn's work, one buffer, no join
    parts: list[bytes] = []
    i, step, since_yield = 0, 1, 0
    while i < n:
        j = min(n, i + step)
        part = encode(events[i:j])
        parts.append(part)
        since_yield += len(part)
        step = max(1, int(_TURN_BYTES * (j - i) / len(part)))
        i = j
        if since_yield >= _TURN_BYTES and i < n:
            await asyncio.sleep(0)
            since_yield = 0
    if len(parts) <= 1:
        return parts[0] if parts else b"[]"
    last = len(parts) - 1
    views = [memoryview(p)[(k > 0) : len(p) - (k < last)] for k, p in enumerate(parts)]
    return b",".join(views)


def decode_event(body: bytes) -> Event:
    """Parse a single-event body; raises ``msgspec.ValidationError`` or ``DecodeError``."""
    return _EVENT_DECODER.decode(body)


def decode_batch(body: bytes) -> list[Event]:
    """Parse a batch body; raises ``msgspec.ValidationError`` or ``DecodeError``."""
    return _BATCH_DECODER.decode(body)


def decode_ingested(body: bytes) -> int | None:
    """``ingested_events`` from a batch response, or None when the body has no usable count."""
    try:
        return _BATCH_RESPONSE_DECODER.decode(body).ingested_events
    except DECODE_ERRORS:
        return None


# -- answers of the read endpoints: decoded leniently, unknown fields kept -------------
# Fuul does not publish these shapes in full: a field that is missing or of another type
# must not make a useful answer unreadable, and fields nobody knows yet stay in ``raw``.


class TriggerExecution(msgspec.Struct, frozen=True):
    """One trigger that ran on an event: ``status`` (e.g. ``"success"``, ``"pending"``),
    ``status_details`` (why, when it did not succeed), and every field as sent in ``raw``."""

    status: str | None
    status_details: Any
    raw: dict[str, Any]


class EventPipeline(msgspec.Struct, frozen=True):
    """What became of one event (``GET /v1/events/pipeline``): the event as stored, the
    triggers it ran, and the attributions, payouts and movements it produced. The list
    entries are the server's objects as sent (their fields are not published); ``raw`` is
    the whole answer."""

    event: dict[str, Any] | None
    trigger_executions: list[TriggerExecution]
    attributions: list[dict[str, Any]]
    payouts: list[dict[str, Any]]
    movements: list[dict[str, Any]]
    raw: dict[str, Any]


class Trigger(msgspec.Struct, frozen=True):
    """A trigger of a conversion: an event whose ``name`` equals this one (case-sensitive)
    fires it."""

    name: str
    id: str | None
    raw: dict[str, Any]


class Conversion(msgspec.Struct, frozen=True):
    """A conversion of the project (``GET /v1/conversions``) with its triggers."""

    id: str | None
    name: str | None
    slug: str | None
    triggers: list[Trigger]
    raw: dict[str, Any]


def _dicts(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def decode_pipeline(body: bytes) -> EventPipeline | None:
    """An :class:`EventPipeline` from a pipeline answer; None when it is not a JSON object."""
    try:
        data = msgspec.json.decode(body)
    except DECODE_ERRORS:
        return None
    if not isinstance(data, dict):
        return None
    executions = [
        TriggerExecution(_text(x.get("status")), x.get("status_details"), x)
        for x in _dicts(data.get("trigger_executions"))
    ]
    event = data.get("event")
    return EventPipeline(
        event if isinstance(event, dict) else None,
        executions,
        _dicts(data.get("attributions")),
        _dicts(data.get("payouts")),
        _dicts(data.get("movements")),
        data,
    )


def decode_conversions(body: bytes) -> list[Conversion] | None:
    """The conversions of a ``GET /v1/conversions`` answer (a list, or an object holding
    it under ``data``); None when the body is neither."""
    try:
        data = msgspec.json.decode(body)
    except DECODE_ERRORS:
        return None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        return None
    conversions = []
    for item in _dicts(data):
        triggers = [
            Trigger(t["name"], _text(t.get("id")), t)
            for t in _dicts(item.get("triggers"))
            if isinstance(t.get("name"), str)
        ]
        conversions.append(
            Conversion(
                _text(item.get("id")),
                _text(item.get("name")),
                _text(item.get("slug")),
                triggers,
                item,
            )
        )
    return conversions
