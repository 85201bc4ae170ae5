"""The rules an event must obey, checked before anything is sent or queued.

Client-side validation catches mistakes early; it never refuses what the real server
may accept. The rules come in three tiers, and every refusal says which:

1. **Always refused**: what the wire or every documented version of the API forbids.
   ``name`` or ``dedup_id`` not a string of 1 to 200 characters (or holding NUL), a user
   identifier type outside the documented set, ``args`` or ``metadata`` that are not
   JSON (non-string keys, NaN or infinity, ints beyond 64 bits, arbitrary objects), a
   timestamp that is not milliseconds, an event nobody can be credited with, an event
   larger than :data:`~aiofuul.wire.models.MAX_EVENT_BYTES` once encoded (80 KiB: a batch of
   100 must fit the server's request cap). ``args`` and ``metadata`` have a module of
   their own, :mod:`aiofuul.wire.payload` (JSON, copies, size caps).
2. **Known shapes** of the standard ``args`` keys (:mod:`aiofuul.wire.shapes`): every shape a
   Fuul document shows passes as written; any other is sent with one warning per shape,
   or refused with ``ClientConfig(strict=True)``.
3. **Identifier formats** (evm hex, base58, ...): on by default, off with
   ``check_format=False`` (``ClientConfig(check_identifier_format=False)``).

Values are sent as the caller wrote them: dicts stay dicts, in their key order; only
copies are taken (the caller may change its dict after ``track()`` returns) and str or
int subclasses (Enums) become the plain values they hold. The sandbox server does not
run these rules: it judges by its own table of the documented variants, so a rule here
that is stricter than the documents fails a test.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

import msgspec

from ..errors import ValidationError
from .models import (
    IDENTIFIER_TYPES,
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    Event,
    User,
)
from .payload import (
    INT_MAX,
    INT_MIN,
    MAX_ARGS_BYTES,
    MAX_ITEMS,
    MAX_TEXT_LENGTH,
    check_args,
    check_metadata,
    check_text,
    size_error,
    sized_metadata,
)

__all__ = [
    "MAX_ARGS_BYTES",
    "MAX_ID_LENGTH",
    "MAX_ITEMS",
    "MAX_QUERY_VALUE_LENGTH",
    "check_args",
    "check_dedup_id",
    "check_metadata",
    "check_name",
    "check_query_value",
    "check_timestamp",
    "check_user",
    "validate_batch",
    "validate_event",
]

log = logging.getLogger("aiofuul")

#: ``name`` and ``dedup_id`` are 1 to this many characters (the vendor's own tooling).
MAX_ID_LENGTH = 200

# Milliseconds before this (1973-03-03) are almost surely seconds; after this
# (2286-11-20) almost surely microseconds or nanoseconds.
_MIN_MS = 100_000_000_000
_MAX_MS = 10_000_000_000_000

_BASE58 = "1-9A-HJ-NP-Za-km-z"
_FORMATS: dict[str, tuple[re.Pattern[str], str]] = {
    "evm_address": (re.compile(r"0x[0-9a-fA-F]{40}"), "0x followed by 40 hex digits"),
    "sui_address": (re.compile(r"0x[0-9a-fA-F]{64}"), "0x followed by 64 hex digits"),
    "solana_address": (re.compile(f"[{_BASE58}]{{32,44}}"), "32 to 44 base58 characters"),
    "xrpl_address": (
        re.compile(f"r[{_BASE58}]{{24,34}}"),
        "r followed by 24 to 34 base58 characters",
    ),
    "stellar_address": (
        re.compile(r"G[A-Z2-7]{55}"),
        "G followed by 55 base32 characters (A-Z, 2-7)",
    ),
    "email": (
        re.compile(r"[^@\s]{1,64}@(?:[^@\s.]+\.)+[^@\s.]{2,}"),
        "a plausible email address (local@domain.tld)",
    ),
}
_MAX_IDENTIFIER = 254
#: A value in a URL query (``?project_id=``, ``event_id``, ...) is 1 to this many
#: characters unless its caller says otherwise: far more than any id, far less than the
#: ~8 KB at which servers and proxies start refusing a URL.
MAX_QUERY_VALUE_LENGTH = 1024
# What a query value must not hold: a URL's value is no place for them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What the other fields of a track() event take at most, encoded: name, dedup_id and the
# user's identifier at their longest, 6 bytes a character (a \u00XX escape), the
# identifier type, a timestamp, and the JSON around them.
_FIXED_BYTES = 6 * (2 * MAX_ID_LENGTH + _MAX_IDENTIFIER + 16) + 256
# What an event of MAX_EVENT_BYTES leaves a tracking event's metadata and text fields
# beside args at their largest: within it, an event is never encoded to be measured.
_EXTRAS_BYTES = MAX_EVENT_BYTES - _FIXED_BYTES - MAX_ARGS_BYTES
# At most 20 digits: int() of a longer string is slow, and refused past 4,300 digits.
_DIGITS = re.compile(r"[0-9]{1,20}")
_TYPES_TEXT = ", ".join(sorted(IDENTIFIER_TYPES))


def check_name(name: object) -> str:
    """``name``: a string of 1-200 characters, matching a trigger configured in the project
    (case-sensitive: ``trade`` is not ``Trade``)."""
    return check_text("name", name, MAX_ID_LENGTH)


def check_dedup_id(dedup_id: object) -> str:
    """``dedup_id``: a string of 1-200 characters, unique per event."""
    return check_text("dedup_id", dedup_id, MAX_ID_LENGTH)


def check_query_value(field: str, value: object, max_len: int = MAX_QUERY_VALUE_LENGTH) -> str:
    """A value that goes into a URL query: a ``str``, not blank, of at most ``max_len``
    characters (default :data:`MAX_QUERY_VALUE_LENGTH`), without control characters,
    valid Unicode. Returns the plain string to send (a str subclass, a str Enum say,
    becomes the string it holds).

    The one rule for every query value of every endpoint (the events' ``project_id`` and
    ``event_id``, and every value of :mod:`aiofuul.api`), checked before the request is
    made: the URL library would silently drop a lone surrogate (``'proj\\ud800X'`` would
    be sent as ``projX``, naming another project) and would send ``123`` as ``"123"``.
    Numbers (page sizes, limits) are checked by their own rules, then formatted with
    ``str()`` by their endpoint. Raises :class:`ValidationError` naming ``field``.

    Example::

        params = {"event_id": check_query_value("event_id", event_id)}
    """
    if type(value) is not str:
        if not isinstance(value, str):
            raise ValidationError(field, "must be a string", value)
        value = str.__str__(value)
    if not value or value.isspace():
        raise ValidationError(field, "must not be empty", value)
    if len(value) > max_len:
        raise ValidationError(
            field, f"must be at most {max_len:,} characters, not {len(value):,}", value
        )
    if _CONTROL.search(value) is not None:
        raise ValidationError(field, "must not contain control characters", value)
    return check_text(field, value, max_len)  # and valid Unicode


def check_user(user: object, check_format: bool = True, field: str = "user") -> User:
    """A :class:`User` with a documented identifier type and (unless ``check_format`` is
    False) an identifier in that type's format. Returns the user to send (a new one
    holding plain strings, when it was given str subclasses)."""
    if type(user) is not User:
        raise ValidationError(field, "must be an aiofuul.User(identifier, identifier_type)", user)
    kind = user.identifier_type
    if isinstance(kind, str) and type(kind) is not str:
        kind = str.__str__(kind)
    if type(kind) is not str or kind not in IDENTIFIER_TYPES:
        rule = "must be one of " + _TYPES_TEXT
        if kind == "stellar_contract":
            rule += " (stellar_contract names a currency, never a user)"
        elif kind == "address":
            rule += " (for an EVM wallet: evm_address)"
        raise ValidationError(f"{field}.identifier_type", rule, kind)
    ident = check_text(f"{field}.identifier", user.identifier, _MAX_IDENTIFIER)
    if check_format:
        pattern, rule = _FORMATS[kind]
        if pattern.fullmatch(ident) is None:
            raise ValidationError(
                f"{field}.identifier", f"must be an {kind}: {rule}", ident, tier=3
            )
    if ident is not user.identifier or kind is not user.identifier_type:
        return User(ident, kind)
    return user


def check_timestamp(timestamp: object) -> int | str | None:
    """``timestamp``: None, or milliseconds since the epoch: an int, or a string of digits
    (as older Fuul guides send it; sent as written)."""
    if timestamp is None:
        return None
    if type(timestamp) is int:
        ms = timestamp
    elif type(timestamp) is str and _DIGITS.fullmatch(timestamp):
        ms = int(timestamp)
    else:
        raise ValidationError(
            "timestamp", "must be an int (or a string of digits) of milliseconds", timestamp
        )
    if ms < _MIN_MS:
        if ms < 0:
            raise ValidationError("timestamp", "must not be negative", timestamp)
        raise ValidationError(
            "timestamp",
            "looks like seconds, not milliseconds since the epoch (multiply by 1000)",
            timestamp,
        )
    if ms > _MAX_MS:
        raise ValidationError(
            "timestamp",
            "looks like microseconds or nanoseconds, not milliseconds since the epoch",
            timestamp,
        )
    return timestamp


def _optional_text(field: str, value: object) -> str | None:
    return None if value is None else check_text(field, value, max_len=MAX_TEXT_LENGTH)


def _check_account_chain_id(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError("account_chain_id", "must be an int (the chain id)", value)
    if not INT_MIN <= value <= INT_MAX:
        raise ValidationError("account_chain_id", "must fit in 64 bits", value)
    return int.__index__(value)


_deprecation_warned = False


def _check_user_address(value: object) -> str | None:
    global _deprecation_warned
    if value is None:
        return None
    address = check_text("user_address", value, _MAX_IDENTIFIER)
    if not _deprecation_warned:
        _deprecation_warned = True
        log.warning("user_address is deprecated by Fuul: prefer user=User(identifier, type)")
    return address


def _check_someone(event: Event) -> None:
    """Tier 1: an event must name someone to credit: a user, the deprecated user_address,
    or (a tracking event from a visitor not yet known) a ``metadata.tracking_id``."""
    if event.user is None and event.user_address is None:
        metadata = event.metadata
        if not (metadata and metadata.get("tracking_id")):
            raise ValidationError(
                "user",
                "is required (or user_address, or metadata.tracking_id for a tracking event)",
                show_value=False,
            )


def validate_event(event: object, check_format: bool = True, *, strict: bool = False) -> Event:
    """Check every field of an :class:`Event`; returns the event to send (a new one,
    holding copies of its args and metadata). Raises :class:`ValidationError` on the
    first broken rule, and warns of undocumented shapes unless ``strict``."""
    if type(event) is not Event:
        raise ValidationError("event", "must be an aiofuul.Event", event)
    metadata, metadata_size = sized_metadata(event.metadata, strict)
    checked = Event(
        check_name(event.name),
        None if event.user is None else check_user(event.user, check_format=check_format),
        check_dedup_id(event.dedup_id),
        check_args(event.args, strict=strict),
        check_timestamp(event.timestamp),
        _check_user_address(event.user_address),
        metadata,
        _optional_text("signature", event.signature),
        _optional_text("signature_message", event.signature_message),
        _optional_text("signature_public_key", event.signature_public_key),
        _check_account_chain_id(event.account_chain_id),
        # The same rule as the ?project_id= of a request: it names the same thing.
        None if event.project_id is None else check_query_value("project_id", event.project_id),
    )
    _check_someone(checked)
    _check_event_size(checked, metadata_size)
    return checked


# The fields a tracking event may add beyond args and metadata, held as text.
_TEXT_FIELDS = ("user_address", "signature", "signature_message", "signature_public_key")
# Their names, project_id's and account_chain_id's, and the JSON around them.
_EXTRA_FIELDS_BYTES = 512


def _check_event_size(event: Event, metadata: int) -> None:
    """The whole event within :data:`~aiofuul.wire.models.MAX_EVENT_BYTES`: its args are
    within theirs, the rest is bounded from its parts, and the event is encoded only when
    the bound says it might not fit."""
    texts = (
        len(event.user_address or "")
        + len(event.signature or "")
        + len(event.signature_message or "")
        + len(event.signature_public_key or "")
        + len(event.project_id or "")
    )
    if metadata + 6 * texts + _EXTRA_FIELDS_BYTES <= _EXTRAS_BYTES:
        return
    size = len(msgspec.json.encode(event))
    if size > MAX_EVENT_BYTES:
        parts = ("args", "metadata", *_TEXT_FIELDS)
        largest = max(parts, key=lambda name: len(msgspec.json.encode(getattr(event, name))))
        err = size_error(largest, MAX_EVENT_BYTES, size, at_least=False)
        raise ValidationError(largest, "with the rest of the event, " + err.rule, show_value=False)


def validate_batch(
    events: object, check_format: bool = True, *, strict: bool = False
) -> list[Event]:
    """Check a batch: a non-empty list of at most 100 valid events. A broken event's
    error names its index (``[3].user.identifier: ...``)."""
    if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Iterable):
        raise ValidationError("events", "must be a list of aiofuul.Event", events)
    events = list(events)
    if not 0 < len(events) <= MAX_BATCH_EVENTS:
        raise ValidationError(
            "events",
            f"must hold 1 to {MAX_BATCH_EVENTS} events, not {len(events)}",
            show_value=False,
        )
    out: list[Event] = []
    for index, event in enumerate(events):
        try:
            out.append(validate_event(event, check_format, strict=strict))
        except ValidationError as exc:
            raise exc.within(f"[{index}].") from None
    return out
