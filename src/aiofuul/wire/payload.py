"""Args and metadata: JSON the API can read, copied, within the size caps; and the text
rule every string field obeys (:func:`check_text`).

Tier 1 of validation (see :mod:`aiofuul.wire.validation`) for the two free-form fields:
string keys, ints within 64 bits, finite floats, at most 32 levels deep, no arbitrary
objects; dicts and lists are copied (the caller may change its dict after ``track()``
returns), str and int subclasses (Enums) become the plain values they hold.

And sizes: ``args`` take at most :data:`MAX_ARGS_BYTES` (64 KiB) as JSON, ``args`` and
``metadata`` hold at most :data:`MAX_ITEMS` values each, so that an event stays within
:data:`~aiofuul.wire.models.MAX_EVENT_BYTES` and a full batch within the server's request cap.
The size is bounded from both sides while the value is walked (:class:`_Size`), so a
huge value is refused as soon as it surely cannot fit, before it is walked in full, and
a value is encoded to be measured only when the bounds disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgspec

from ..errors import ValidationError
from .models import MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_REQUEST_BYTES, Amount, Currency
from .shapes import METADATA_KEYS, STANDARD_ARGS, check_shape, undocumented

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "MAX_ARGS_BYTES",
    "MAX_ITEMS",
    "MAX_TEXT_LENGTH",
    "check_args",
    "check_metadata",
    "check_text",
    "size_error",
    "sized_metadata",
]

#: The ints the API takes: 64 bits, signed or not.
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
_MAX_DEPTH = 32
#: No string can be longer than the event it is in.
MAX_TEXT_LENGTH = MAX_EVENT_BYTES
# Keys longer than this are checked in full each time (the fast path bounds their size).
_MAX_PLAIN_KEY = 64
#: ``args`` and ``metadata`` hold at most this many values each, counting the items of
#: every list and dict in them: a bound on how long checking them can take (a few ms).
MAX_ITEMS = 10_000
#: ``args`` take at most this many bytes once encoded (64 KiB). Checked by
#: :func:`check_args`, which stops walking a huge value as soon as it surely cannot fit.
MAX_ARGS_BYTES = 64 * 1024


def check_text(field: str, value: object, max_len: int, min_len: int = 1, nul: bool = False) -> str:
    """``value`` as the plain string to send: a ``str`` of ``min_len`` to ``max_len``
    characters, valid Unicode (no lone surrogate), without NUL unless ``nul``. A str
    subclass (a str-valued Enum, say) becomes the plain string it holds."""
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


def size_error(field: str, room: int, size: int, at_least: bool) -> ValidationError:
    """The refusal of ``field``, which takes ``size`` bytes as JSON (``at_least``: or
    more) where ``room`` is allowed."""
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
            raise size_error(self.field, self.room, self.chars + self.units, at_least=True)

    def check(self, value: object) -> int:
        """The bytes ``value`` (walked whole) takes: bounded, or encoded when the bound
        says it might not fit. Refuses it when it does not."""
        high = self.high
        if high <= self.room:
            return high
        size = len(msgspec.json.encode(value))
        if size > self.room:
            raise size_error(self.field, self.room, size, at_least=False)
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
        return check_text(field, value, max_len=MAX_TEXT_LENGTH, min_len=0, nul=True)
    if kind is int:
        if not INT_MIN <= value <= INT_MAX:  # type: ignore[operator]
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
        if (kind is int and INT_MIN <= item <= INT_MAX) or (kind is float and item - item == 0.0):  # type: ignore[operator]
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
    return check_text(f"{field} key", key, max_len=MAX_TEXT_LENGTH, min_len=0)


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
                if INT_MIN <= value <= INT_MAX:
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
    :data:`~aiofuul.wire.models.MAX_EVENT_BYTES` once encoded."""
    return sized_metadata(metadata, strict)[0]


def sized_metadata(metadata: object, strict: bool) -> tuple[dict[str, Any] | None, int]:
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
