"""The wire schema of the Fuul events API, as msgspec Structs.

This module is the one description of what goes over the wire: the client encodes
with it, and the sandbox server decodes with it. The rules a value must obey beyond
its type (lengths, identifier formats, timestamps) live in :mod:`aiofuul.validation`.

Example::

    from aiofuul import Amount, Currency, Event, User

    user = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")
    event = Event("deposit", user, dedup_id="dep-0xabc",
                  args={"value": Amount("1500000", Currency(name="USDC"))})
"""

from __future__ import annotations

from typing import Literal, get_args

import msgspec

__all__ = [
    "IDENTIFIER_TYPES",
    "MAX_BATCH_EVENTS",
    "Amount",
    "ArgValue",
    "BatchResult",
    "Currency",
    "Event",
    "IdentifierType",
    "SendResult",
    "User",
    "decode_batch",
    "decode_event",
    "encode_batch",
    "encode_event",
]

#: The identifier types a user may have (the official JS SDK's ``UserIdentifierType``).
IdentifierType = Literal[
    "evm_address", "solana_address", "xrpl_address", "sui_address", "stellar_address", "email"
]
IDENTIFIER_TYPES: frozenset[str] = frozenset(get_args(IdentifierType))

#: The batch endpoint refuses more events than this in one request.
MAX_BATCH_EVENTS = 100


class User(msgspec.Struct, frozen=True, gc=False):
    """The user an event belongs to: ``User("0x5290...9EE7", "evm_address")``."""

    identifier: str
    identifier_type: str


class Currency(msgspec.Struct, frozen=True, omit_defaults=True):
    """A currency: by name (``Currency(name="USDC")``, ``"USD"``, ``"POINT"``) or by token
    (``Currency(identifier="0xA0b8...", identifier_type="evm_contract",
    chain_identifier="evm:1")``)."""

    name: str | None = None
    identifier: str | None = None
    identifier_type: str | None = None
    chain_identifier: str | None = None


class Amount(msgspec.Struct, frozen=True):
    """A monetary amount for the standard ``value`` and ``revenue`` args.

    ``amount`` is an integer string in the currency's smallest unit
    (``Amount("1500000", Currency(name="USDC"))`` is 1.5 USDC with 6 decimals).
    """

    amount: str
    currency: Currency


#: What one ``args`` value may be on the wire.
ArgValue = str | int | float | bool | Amount


# gc=False: an event holds only strings, numbers and Structs, never a cycle, and a
# queue of 100,000 of them must not make every cyclic collection walk them all.
class Event(msgspec.Struct, omit_defaults=True, gc=False):
    """One trigger event, exactly as the API takes it.

    ``timestamp`` is milliseconds since the epoch; leave it ``None`` to let the
    server stamp the time it receives the event.
    """

    name: str
    user: User
    dedup_id: str
    args: dict[str, ArgValue] | None = None
    timestamp: int | None = None


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


def decode_event(body: bytes) -> Event:
    """Parse a single-event body; raises ``msgspec.ValidationError`` or ``DecodeError``."""
    return _EVENT_DECODER.decode(body)


def decode_batch(body: bytes) -> list[Event]:
    """Parse a batch body; raises ``msgspec.ValidationError`` or ``DecodeError``."""
    return _BATCH_DECODER.decode(body)


def _encode_json(value: object) -> bytes:
    return _ENCODER.encode(value)


def _decode_ingested(body: bytes) -> int | None:
    """``ingested_events`` from a batch response, or None when the body has no usable count."""
    try:
        return _BATCH_RESPONSE_DECODER.decode(body).ingested_events
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
