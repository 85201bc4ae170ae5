"""The rules an event must obey, checked before anything is sent or queued.

Client-side validation catches mistakes early; it never refuses what the real server
may accept. The rules come in three tiers, and every refusal says which:

1. **Always refused**: what the wire or every documented version of the API forbids.
   ``name`` or ``dedup_id`` not a string of 1 to 200 characters (or holding NUL), a user
   identifier type outside the documented set, ``args`` or ``metadata`` that are not
   JSON (non-string keys, NaN or infinity, ints beyond 64 bits, arbitrary objects), a
   timestamp that is not milliseconds, an event nobody can be credited with, an event
   larger than :data:`~aiofuul.models.MAX_EVENT_BYTES` once encoded (80 KiB: a batch of
   100 must fit the server's request cap), ``args`` larger than :data:`MAX_ARGS_BYTES`.
2. **Known shapes** of the standard ``args`` keys (:mod:`aiofuul.shapes`): every shape a
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
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from .errors import ValidationError
from .models import (
    IDENTIFIER_TYPES,
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    MAX_REQUEST_BYTES,
    Amount,
    Currency,
    Event,
    User,
)
from .shapes import METADATA_KEYS, STANDARD_ARGS, check_shape, undocumented

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
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_MAX_DEPTH = 32

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
# No string can be longer than the event it is in.
_MAX_ARG_TEXT = MAX_EVENT_BYTES
# Keys longer than this are checked in full each time (the fast path bounds their size).
_MAX_PLAIN_KEY = 64
# What the other fields of a track() event take at most, encoded: name, dedup_id and the
# user's identifier at their longest, 6 bytes a character (a \u00XX escape), the
# identifier type, a timestamp, and the JSON around them.
_FIXED_BYTES = 6 * (2 * MAX_ID_LENGTH + _MAX_IDENTIFIER + 16) + 256
#: ``args`` and ``metadata`` hold at most this many values each, counting the items of
#: every list and dict in them: a bound on how long checking them can take (a few ms).
MAX_ITEMS = 10_000
#: ``args`` take at most this many bytes once encoded (64 KiB). Checked by
#: :func:`check_args`, which stops walking a huge value as soon as it surely cannot fit.
MAX_ARGS_BYTES = 64 * 1024
# What an event of MAX_EVENT_BYTES leaves a tracking event's metadata and text fields
# beside args at their largest: within it, an event is never encoded to be measured.
_EXTRAS_BYTES = MAX_EVENT_BYTES - _FIXED_BYTES - MAX_ARGS_BYTES
# At most 20 digits: int() of a longer string is slow, and refused past 4,300 digits.
_DIGITS = re.compile(r"[0-9]{1,20}")
_TYPES_TEXT = ", ".join(sorted(IDENTIFIER_TYPES))


def _check_text(
    field: str, value: object, max_len: int = MAX_ID_LENGTH, min_len: int = 1, nul: bool = False
) -> str:
    if type(value) is not str:
        if not isinstance(value, str):
            raise ValidationError(field, "must be a string", value)
        # A str subclass (a str-valued Enum, say) is sent as the plain string it holds.
        value = str.__str__(value)
    if not min_len <= len(value) <= max_len:
        raise ValidationError(
            field, f"must be {min_len} to {max_len} characters, not {len(value)}", value
        )
    if not nul and "\x00" in value:
        raise ValidationError(field, "must not contain NUL characters", value)
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValidationError(
                field, "must be valid Unicode (no lone surrogates)", value
            ) from None
    return value


def check_name(name: object) -> str:
    """``name``: a string of 1-200 characters, matching a trigger configured in the project
    (case-sensitive: ``trade`` is not ``Trade``)."""
    return _check_text("name", name)


def check_dedup_id(dedup_id: object) -> str:
    """``dedup_id``: a string of 1-200 characters, unique per event."""
    return _check_text("dedup_id", dedup_id)


def check_query_value(field: str, value: object, max_len: int = MAX_QUERY_VALUE_LENGTH) -> str:
    """A value that goes into a URL query: a ``str`` of 1 to ``max_len`` characters
    (default :data:`MAX_QUERY_VALUE_LENGTH`), no NUL, valid Unicode. Returns the plain
    string to send (a str subclass, a str Enum say, becomes the string it holds).

    The one rule for every query value of every endpoint, checked before the request is
    made: the URL library would silently drop a lone surrogate (``'proj\\ud800X'`` would
    be sent as ``projX``, naming another project) and would send ``123`` as ``"123"``.
    Numbers (page sizes, limits) are checked by their own rules, then formatted with
    ``str()`` by their endpoint. Raises :class:`ValidationError` naming ``field``.

    Example::

        params = {"event_id": check_query_value("event_id", event_id)}
    """
    return _check_text(field, value, max_len)


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
    ident = _check_text(f"{field}.identifier", user.identifier, _MAX_IDENTIFIER)
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


def _too_big(field: str, room: int, size: int, at_least: bool) -> ValidationError:
    return ValidationError(
        field,
        f"must take at most {room:,} bytes as JSON, not {'at least ' if at_least else ''}"
        f"{size:,} (an event at most {MAX_EVENT_BYTES:,}, so that a batch of "
        f"{MAX_BATCH_EVENTS} fits the server's {MAX_REQUEST_BYTES:,}-byte request cap)",
        show_value=False,
    )


class _Size:
    """What a JSON value will take once encoded, bounded from both sides while it is
    walked, so that a huge one is refused before it is walked in full (an ``args`` list
    of a million ints at once, not after half a second of checking each).

    ``chars`` counts the characters of its strings, keys included: each encodes to 1 to
    6 bytes (UTF-8, or a ``\\u00XX`` escape). ``units`` counts the rest: a container,
    before its items are walked, takes one unit per bracket, comma, colon and key quote,
    and one per item standing for the item's first byte (a number's only one), less the
    one its own parent took for it; a string then takes one for its other quote. Each
    unit is at least 1 byte and, the longest number included, at most 28: ``chars +
    units`` and :attr:`high` bound the encoded size from below and above."""

    __slots__ = ("chars", "field", "items", "room", "units")

    def __init__(self, field: str, room: int) -> None:
        self.field = field
        self.room = room
        self.chars = 0
        self.units = 0
        self.items = 0

    def hold(self, items: int) -> None:
        """Count the items of a list or dict about to be walked: at most
        :data:`MAX_ITEMS` in all, so that no walk holds the loop for long."""
        self.items += items
        if self.items > MAX_ITEMS:
            raise ValidationError(
                self.field,
                f"must hold at most {MAX_ITEMS:,} values in all, nested lists and dicts "
                f"included (not at least {self.items:,})",
                show_value=False,
            )

    @property
    def high(self) -> int:
        return 6 * self.chars + 28 * self.units

    def take(self, chars: int, units: int) -> None:
        """Count more of the value; refuse it once it surely cannot fit ``room``."""
        self.chars += chars
        self.units += units
        if self.chars + self.units > self.room:
            raise _too_big(self.field, self.room, self.chars + self.units, at_least=True)

    def check(self, value: object) -> int:
        """The bytes ``value`` (walked whole) takes: bounded, or encoded when the bound
        says it might not fit. Refuses it when it does not."""
        high = self.high
        if high <= self.room:
            return high
        size = len(msgspec.json.encode(value))
        if size > self.room:
            raise _too_big(self.field, self.room, size, at_least=False)
        return size


def _json(field: str, value: object, size: _Size, depth: int = 0) -> object:
    """Tier 1: ``value`` as JSON the API can read, copied (dicts and lists) so later
    changes by the caller never reach the queue; the Amount/Currency helpers as they are.
    Its size is counted in ``size`` as it is walked.

    The plain types are told by ``type()`` first: a value at the size cap may hold tens
    of thousands of items, and an ``isinstance()`` of an ABC costs more than the rest."""
    kind = type(value)
    if kind is str:
        size.take(len(value), 1)  # type: ignore[arg-type]
        return _check_text(field, value, max_len=_MAX_ARG_TEXT, min_len=0, nul=True)
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:  # type: ignore[operator]
            raise ValidationError(field, "must fit in 64 bits", value)
        return value
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise ValidationError(field, "must be a finite number (no NaN or infinity)", value)
        return value
    if kind is bool or value is None:
        return value
    if kind is list or kind is tuple:
        return _list(field, value, size, depth)  # type: ignore[arg-type]
    if kind is dict:
        return _dict(field, value, size, depth)  # type: ignore[arg-type]
    if isinstance(value, (Amount, Currency)):
        return _helper(field, value, size, depth)
    if isinstance(value, Mapping):
        return _dict(field, value, size, depth)
    if isinstance(value, (list, tuple)):
        return _list(field, value, size, depth)
    if isinstance(value, (str, int, float)):  # subclasses: str Enums, IntEnums, ...
        return _json(field, _plain_value(value), size, depth)
    raise ValidationError(field, "must be JSON: a str, int, float, bool, None, list or dict", value)


def _dict(field: str, value: Mapping[object, object], size: _Size, depth: int) -> dict[str, object]:
    if depth >= _MAX_DEPTH:
        raise ValidationError(field, f"must be nested at most {_MAX_DEPTH} deep", show_value=False)
    size.take(0, 5 * len(value) or 1)
    size.hold(len(value))
    out: dict[str, object] = {}
    for key, item in value.items():
        key = _key(field, key, size)
        out[key] = _json(f"{field}.{key}", item, size, depth + 1)
    return out


def _list(
    field: str, value: list[object] | tuple[object, ...], size: _Size, depth: int
) -> list[object]:
    if depth >= _MAX_DEPTH:
        raise ValidationError(field, f"must be nested at most {_MAX_DEPTH} deep", show_value=False)
    size.take(0, 2 * len(value) or 1)
    size.hold(len(value))
    out: list[object] = []
    append = out.append
    for i, item in enumerate(value):
        kind = type(item)
        # Plain numbers decided inline: a list of them is the longest walk there is.
        if (kind is int and _INT_MIN <= item <= _INT_MAX) or (kind is float and item - item == 0.0):  # type: ignore[operator]
            append(item)
        else:
            append(_json(f"{field}[{i}]", item, size, depth + 1))
    return out


def _helper(field: str, value: Amount | Currency, size: _Size, depth: int) -> Amount | Currency:
    """An Amount or Currency, its fields held to the same JSON rules as a dict's (a new
    one holding plain values when the caller's held str subclasses)."""
    fields: dict[str, Any] = {name: getattr(value, name) for name in value.__struct_fields__}
    # Encoded as an object; a field left None may be left out (Currency): not counted.
    present = [name for name, item in fields.items() if item is not None]
    size.take(sum(map(len, present)), 5 * len(present) or 1)
    checked: dict[str, Any] = {
        name: item if item is None else _json(f"{field}.{name}", item, size, depth + 1)
        for name, item in fields.items()
    }
    if all(checked[name] is fields[name] for name in fields):
        return value
    return type(value)(**checked)


def _key(field: str, key: object, size: _Size | None = None) -> str:
    if not isinstance(key, str):
        raise ValidationError(field, "keys must be strings", key)
    if size is not None:
        size.take(len(key), 0)
    return _check_text(f"{field} key", key, max_len=_MAX_ARG_TEXT, min_len=0)


def _plain_value(value: str | int | float) -> str | int | float:
    # bool cannot be subclassed, so an int subclass here is never a bool.
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__index__(value)
    return float.__float__(value)


def check_args(args: object, *, strict: bool = False) -> dict[str, Any] | None:
    """``args``: None, or a mapping of string keys to JSON values; the standard keys
    (``value``, ``revenue``, ``chain_id``, ...) in any shape a Fuul document shows; at
    most :data:`MAX_ARGS_BYTES` once encoded (a larger value is refused as soon as that
    is sure, before it is walked in full).

    Returns the args to send: always a copy, otherwise as written. An undocumented shape
    is sent with a warning (once per shape), or refused when ``strict``."""
    if args is None:
        return None
    # type() first: isinstance() of an ABC costs as much as the rest of the fast path.
    if type(args) is not dict and not isinstance(args, Mapping):
        raise ValidationError("args", "must be a mapping (dict) of str keys to values", args)
    n = len(args)
    if n > MAX_ITEMS:  # before the copy: a million keys are refused at once
        _Size("args", MAX_ARGS_BYTES).hold(n)
    room = MAX_ARGS_BYTES
    converted = args.copy() if type(args) is dict else dict(args)
    plain = _PLAIN_KEYS
    chars = 0  # of the plain str values; the plain keys are bounded by _MAX_PLAIN_KEY
    # Counted only once an entry leaves the fast path: the common args never need it.
    size: _Size | None = None
    for key, value in converted.items():
        # The common case decided inline (a key already found plain, a plain scalar
        # value): one set lookup, since an app sends the same few keys again and again.
        # Anything else goes through _check_arg, which owns the rules.
        if key in plain and type(key) is str:
            kind = type(value)
            if kind is str:
                chars += len(value)
                if chars <= room and value.isascii():
                    continue
                chars -= len(value)  # counted by _check_arg
            elif kind is float:
                if value - value == 0.0:  # false for NaN and both infinities
                    continue
            elif kind is int:
                if _INT_MIN <= value <= _INT_MAX:
                    continue
            elif kind is bool:
                continue
        elif type(key) is not str:
            return check_args({_key("args", k): v for k, v in converted.items()}, strict=strict)
        elif _is_plain_key(key):
            plain.add(key)  # its value is checked below, this once by the full rules
        if size is None:
            size = _Size("args", room)
            size.units = 5 * n + 1 if n else 2  # see _Size: the top level
            size.items = n
        size.chars += chars
        chars = 0
        checked = _check_arg(key, value, strict, size)
        if checked is not value:
            converted[key] = checked
    if size is None:
        if n <= _FEW_KEYS and chars <= _FEW_CHARS:
            return converted  # surely within MAX_ARGS_BYTES: the common case
        size = _Size("args", room)
        size.units = 5 * n + 1 if n else 2  # see _Size: the top level
    size.chars += chars + _MAX_PLAIN_KEY * n  # each plain key at its longest
    size.check(converted)
    return converted


# Args of at most _FEW_KEYS plain entries whose str values hold at most _FEW_CHARS
# characters surely fit MAX_ARGS_BYTES (_Size's high bound), so the fast path need not
# count more than those characters.
_FEW_KEYS = 32
_FEW_CHARS = (MAX_ARGS_BYTES - 28 * (5 * _FEW_KEYS + 1)) // 6 - _MAX_PLAIN_KEY * _FEW_KEYS

# Keys found plain (ASCII, not empty, no NUL, not too long, not a standard key): the
# ones an app uses, bounded so that generated keys cannot grow it without end.
_PLAIN_KEYS: set[str] = set()
_MAX_PLAIN_KEYS = 4096


def _is_plain_key(key: str) -> bool:
    return (
        len(_PLAIN_KEYS) < _MAX_PLAIN_KEYS
        and 0 < len(key) <= _MAX_PLAIN_KEY
        and key.isascii()
        and "\x00" not in key
        and key not in STANDARD_ARGS
    )


def _check_arg(key: str, value: object, strict: bool, size: _Size) -> object:
    """One args entry, every rule: returns the value to send."""
    key = _key("args", key, size)
    if not key:
        undocumented("args", "keys are non-empty strings", key, strict)
    field = f"args.{key}"
    value = _json(field, value, size)
    check_shape(field, key, value, strict)
    return value


def check_metadata(metadata: object, *, strict: bool = False) -> dict[str, Any] | None:
    """``metadata`` of a tracking event: None, or a mapping of string keys to JSON values;
    the known keys (``tracking_id``, ``affiliate_id``, ``referrer_url``, ``project_id``,
    ``source``, ``category``, ``title``, ``tag``) are strings. Unknown keys pass. At most
    :data:`~aiofuul.models.MAX_EVENT_BYTES` once encoded."""
    return _check_metadata(metadata, strict)[0]


def _check_metadata(metadata: object, strict: bool) -> tuple[dict[str, Any] | None, int]:
    """:func:`check_metadata`, and at most how many bytes it takes once encoded."""
    if metadata is None:
        return None, 0
    if not isinstance(metadata, Mapping):
        raise ValidationError(
            "metadata", "must be a mapping (dict) of str keys to values", metadata
        )
    size = _Size("metadata", MAX_EVENT_BYTES)
    size.take(0, 1)  # the top level's first byte: no parent counted it
    checked = _json("metadata", metadata, size)
    assert isinstance(checked, dict)
    for key, value in checked.items():
        if key in METADATA_KEYS and type(value) is not str:
            undocumented(f"metadata.{key}", "is a string", value, strict)
    return checked, size.check(checked)


def _optional_text(field: str, value: object) -> str | None:
    return None if value is None else _check_text(field, value, max_len=_MAX_ARG_TEXT)


def _check_account_chain_id(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError("account_chain_id", "must be an int (the chain id)", value)
    if not _INT_MIN <= value <= _INT_MAX:
        raise ValidationError("account_chain_id", "must fit in 64 bits", value)
    return int.__index__(value)


_deprecation_warned = False


def _check_user_address(value: object) -> str | None:
    global _deprecation_warned
    if value is None:
        return None
    address = _check_text("user_address", value, _MAX_IDENTIFIER)
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
    metadata, metadata_size = _check_metadata(event.metadata, strict)
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
    """The whole event within :data:`~aiofuul.models.MAX_EVENT_BYTES`: its args are
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
        err = _too_big(largest, MAX_EVENT_BYTES, size, at_least=False)
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
