"""Lenient decoding of the answers of :mod:`aiofuul.api`.

Every answer model is an :class:`Answer`: a msgspec Struct whose documented fields all
have defaults (a field the server leaves out is None, never an error) and whose
``extra`` keeps the fields no model knows. ``extra`` rather than a ``raw`` copy of the
row: a page of rows then costs its data once, not twice, and the typed fields stay the
one way to read what is documented.

The vendor's own types drifted between numbers and strings (``volume_usd``,
``chain_id``, ``conversion_id``, ``total_amount``): numbers are :class:`~decimal.Decimal`
or ``int`` and decode from either; identifiers are :class:`Text`, a ``str`` that
decodes from a number too; dates are :class:`Timestamp`, a ``datetime`` that decodes
from ISO 8601 (``Z``, date only, naive taken as UTC) or epoch seconds or milliseconds.
A value that is none of these (a word where a number belongs) leaves its field None and
lands in ``extra``: one odd field never costs the row, nor the page.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, TypeVar

import msgspec

from ..wire.models import DECODE_ERRORS

__all__ = ["Answer", "Text", "Timestamp", "as_dict", "convert", "convert_list", "decode_json"]

_EXTRA = "~aiofuul.extra"

T = TypeVar("T")


class Text(str):
    """A string field the server may send as a number (an id, a chain id in a string
    type): always a ``str`` here."""

    __slots__ = ()


class Timestamp(datetime):
    """A date field: a timezone-aware ``datetime`` (UTC when the server names no zone)."""

    __slots__ = ()


class Answer(msgspec.Struct, kw_only=True):
    """The base of every answer model: ``extra`` holds the fields the server sent that
    the model does not know (empty when none)."""

    # A wire name no server sends, so that a server field called "extra" lands in extra.
    extra: dict[str, Any] = msgspec.field(default_factory=dict, name=_EXTRA)


def _timestamp(value: object) -> Timestamp:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000 if abs(value) >= 100_000_000_000 else value
        moment = datetime.fromtimestamp(seconds, timezone.utc)
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    else:
        raise TypeError(f"not a date: {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return Timestamp(*moment.timetuple()[:6], moment.microsecond, moment.tzinfo)


def _hook(kind: type, value: Any) -> Any:
    if kind is Text:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return Text(value)
        raise TypeError(f"not a string: {value!r}")
    if kind is Timestamp:
        try:
            return _timestamp(value)
        except (ValueError, OverflowError, OSError) as exc:
            raise TypeError(str(exc)) from None
    raise NotImplementedError(kind)


def _keep_extra(value: Any, raw: Any) -> None:
    """Fill ``extra`` of ``value`` (and of the answers nested in it) from ``raw``."""
    if isinstance(value, Answer) and isinstance(raw, dict):
        fields = value.__struct_encode_fields__
        extra = {k: v for k, v in raw.items() if k not in fields}
        if extra:
            value.extra = extra
        for name, wire in zip(value.__struct_fields__, fields, strict=True):
            _keep_extra(getattr(value, name), raw.get(wire))
    elif isinstance(value, list) and isinstance(raw, list):
        for item, raw_item in zip(value, raw, strict=True):
            _keep_extra(item, raw_item)


def convert(raw: Any, model: type[T]) -> T:
    """``raw`` (decoded JSON) as ``model``, leniently: a documented field whose value
    cannot be read as its type (a word where a number belongs) is None, its value kept
    in ``extra`` under its name, rather than failing the row (and the page with it).
    Raises ``msgspec.ValidationError`` when ``raw`` cannot be read as one at all."""
    try:
        value = msgspec.convert(raw, model, strict=False, dec_hook=_hook)
    except msgspec.ValidationError as exc:
        name = _field_at(exc)
        if not isinstance(raw, dict) or name is None or name not in raw:
            raise
        rest = dict(raw)
        unreadable = rest.pop(name)
        value = convert(rest, model)
        if isinstance(value, Answer):
            value.extra = {**value.extra, name: unreadable}
        return value
    _keep_extra(value, raw)
    return value


_AT_FIELD = re.compile(r" - at `\$\.([^.\[`]+)")


def _field_at(exc: msgspec.ValidationError) -> str | None:
    """The top-level field a msgspec error is about (``$.rank``, ``$.codes[2].uses``)."""
    match = _AT_FIELD.search(str(exc))
    return None if match is None else match.group(1)


def convert_list(raw: Any, model: type[T]) -> list[T]:
    """A JSON list of ``model``."""
    if not isinstance(raw, list):
        raise msgspec.ValidationError("expected a list")
    return [convert(item, model) for item in raw]


def decode_json(body: bytes) -> Any:
    """The JSON of a body, or None when it is not JSON (a proxy's HTML page)."""
    try:
        return msgspec.json.decode(body)
    except DECODE_ERRORS:  # nested too deep included
        return None


def _encode(value: Any) -> Any:
    if isinstance(value, Text):
        return str.__str__(value)
    if isinstance(value, Timestamp):
        return value.isoformat().replace("+00:00", "Z")
    raise NotImplementedError(type(value))


def _merge_extra(value: Any) -> Any:
    if isinstance(value, dict):
        extra = value.pop(_EXTRA, None) or {}
        merged = {k: _merge_extra(v) for k, v in value.items()}
        merged.update(extra)
        return merged
    if isinstance(value, list):
        return [_merge_extra(v) for v in value]
    return value


def as_dict(answer: Any) -> Any:
    """An answer as plain JSON-ready data: its fields and its ``extra`` ones side by side,
    dates in ISO 8601, amounts as strings (no precision lost).

    Example::

        row = await fuul.users.referrer(user)
        json.dumps(as_dict(row))
    """
    return _merge_extra(msgspec.to_builtins(answer, enc_hook=_encode))
