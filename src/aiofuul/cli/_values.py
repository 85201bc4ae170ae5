"""Text to event values: ``--arg key=value`` and CSV ``arg.KEY`` cells, timestamps."""

from __future__ import annotations

import argparse
import re
from datetime import datetime

import msgspec

from ..wire.models import ArgValue

__all__ = [
    "ARG_VALUE_RULES",
    "TIMESTAMP_RULES",
    "arg_key",
    "parse_arg_value",
    "parse_key_value",
    "parse_timestamp",
    "timestamp_arg",
]

_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")

#: How a command-line or CSV value becomes an ``args`` value (also the ``--help`` text).
ARG_VALUE_RULES = (
    "true/false become booleans, integers without leading zeros (42, -7) become ints, "
    'decimals (2.5, 1e3) become floats, a JSON object ({"amount": ...}) becomes an '
    "amount; anything else stays a string. Name the key KEY:str to keep the text as is"
)


def parse_arg_value(text: str) -> ArgValue | dict[str, object]:
    """An ``args`` value from text, typed by :data:`ARG_VALUE_RULES`."""
    if text in ("true", "false"):
        return text == "true"
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text.startswith("{"):
        try:
            value = msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            raise ValueError(f"not a valid JSON object: {exc}") from None
        except RecursionError:
            raise ValueError("not a valid JSON object (nested too deeply)") from None
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        return value
    return text


def arg_key(raw: str) -> tuple[str, bool]:
    """``"size"`` -> ``("size", False)``; ``"ref:str"`` -> ``("ref", True)`` (keep text)."""
    if raw.endswith(":str"):
        return raw[:-4], True
    return raw, False


def parse_key_value(text: str) -> tuple[str, ArgValue | dict[str, object]]:
    """``--arg key=value`` (argparse type): the key and its typed value."""
    raw, sep, value = text.partition("=")
    if not sep or not raw:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    key, keep_text = arg_key(raw)
    try:
        return key, value if keep_text else parse_arg_value(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--arg {key}: {exc}") from None


TIMESTAMP_RULES = (
    "milliseconds since the epoch (1717171717000) or an ISO 8601 time with a zone "
    "(2024-05-31T16:08:37Z)"
)


def parse_timestamp(text: str) -> int:
    """Milliseconds since the epoch from ``text`` (see :data:`TIMESTAMP_RULES`).

    An integer is taken as milliseconds as is (validation then refuses seconds)."""
    text = text.strip()
    if _INT.fullmatch(text):
        return int(text)
    try:
        when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise ValueError(f"expected {TIMESTAMP_RULES}, not {text!r}") from None
    if when.tzinfo is None:
        raise ValueError(f"the time {text!r} has no zone: add one (Z for UTC)")
    return round(when.timestamp() * 1000)


def timestamp_arg(text: str) -> int:
    """:func:`parse_timestamp` as an argparse type."""
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
