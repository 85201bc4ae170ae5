"""The rules an event must obey, checked before anything is sent or queued.

Client-side validation catches mistakes early; it never refuses what the real server
may accept. The rules come in three tiers, and every refusal says which:

1. **Always refused**: what the wire or every documented version of the API forbids.
   ``name`` or ``dedup_id`` not a string of 1 to 200 characters (or holding NUL), a user
   identifier type outside the documented set, ``args`` or ``metadata`` that are not
   JSON (non-string keys, NaN or infinity, ints beyond 64 bits, arbitrary objects), a
   timestamp that is not milliseconds, an event nobody can be credited with.
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

from .errors import ValidationError
from .models import IDENTIFIER_TYPES, MAX_BATCH_EVENTS, Amount, Currency, Event, User
from .shapes import METADATA_KEYS, STANDARD_ARGS, check_shape, undocumented

__all__ = [
    "MAX_ID_LENGTH",
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
_MAX_ARG_TEXT = 1 << 20
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


def _json(field: str, value: object, depth: int = 0) -> object:
    """Tier 1: ``value`` as JSON the API can read, copied (dicts and lists) so later
    changes by the caller never reach the queue; the Amount/Currency helpers as they are."""
    kind = type(value)
    if kind is str:
        return _check_text(field, value, max_len=_MAX_ARG_TEXT, min_len=0, nul=True)
    if kind is bool or value is None:
        return value
    if isinstance(value, (Amount, Currency)):
        return _helper(field, value, depth)
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:  # type: ignore[operator]
            raise ValidationError(field, "must fit in 64 bits", value)
        return value
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise ValidationError(field, "must be a finite number (no NaN or infinity)", value)
        return value
    if depth >= _MAX_DEPTH:
        raise ValidationError(field, f"must be nested at most {_MAX_DEPTH} deep", show_value=False)
    if isinstance(value, Mapping):
        out: dict[str, object] = {}
        for key, item in value.items():
            key = _key(field, key)
            out[key] = _json(f"{field}.{key}", item, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_json(f"{field}[{i}]", item, depth + 1) for i, item in enumerate(value)]
    if isinstance(value, (str, int, float)):  # subclasses: str Enums, IntEnums, ...
        return _json(field, _plain_value(value), depth)
    raise ValidationError(field, "must be JSON: a str, int, float, bool, None, list or dict", value)


def _helper(field: str, value: Amount | Currency, depth: int) -> Amount | Currency:
    """An Amount or Currency, its fields held to the same JSON rules as a dict's (a new
    one holding plain values when the caller's held str subclasses)."""
    fields: dict[str, Any] = {name: getattr(value, name) for name in value.__struct_fields__}
    checked: dict[str, Any] = {
        name: item if item is None else _json(f"{field}.{name}", item, depth + 1)
        for name, item in fields.items()
    }
    if all(checked[name] is fields[name] for name in fields):
        return value
    return type(value)(**checked)


def _key(field: str, key: object) -> str:
    if not isinstance(key, str):
        raise ValidationError(field, "keys must be strings", key)
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
    (``value``, ``revenue``, ``chain_id``, ...) in any shape a Fuul document shows.

    Returns the args to send: always a copy, otherwise as written. An undocumented shape
    is sent with a warning (once per shape), or refused when ``strict``."""
    if args is None:
        return None
    if type(args) is dict:
        converted = args.copy()
    elif isinstance(args, Mapping):
        converted = dict(args)
    else:
        raise ValidationError("args", "must be a mapping (dict) of str keys to values", args)
    plain = _PLAIN_KEYS
    for key, value in converted.items():
        # The common case decided inline (a key already found plain, a plain scalar
        # value): one set lookup, since an app sends the same few keys again and again.
        # Anything else goes through _check_arg, which owns the rules.
        if key in plain and type(key) is str:
            kind = type(value)
            if kind is str:
                if len(value) <= _MAX_ARG_TEXT and value.isascii():
                    continue
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
        checked = _check_arg(key, value, strict)
        if checked is not value:
            converted[key] = checked
    return converted


# Keys found plain (ASCII, not empty, no NUL, not too long, not a standard key): the
# ones an app uses, bounded so that generated keys cannot grow it without end.
_PLAIN_KEYS: set[str] = set()
_MAX_PLAIN_KEYS = 4096


def _is_plain_key(key: str) -> bool:
    return (
        len(_PLAIN_KEYS) < _MAX_PLAIN_KEYS
        and 0 < len(key) <= _MAX_ARG_TEXT
        and key.isascii()
        and "\x00" not in key
        and key not in STANDARD_ARGS
    )


def _check_arg(key: str, value: object, strict: bool) -> object:
    """One args entry, every rule: returns the value to send."""
    key = _key("args", key)
    if not key:
        undocumented("args", "keys are non-empty strings", key, strict)
    field = f"args.{key}"
    value = _json(field, value)
    check_shape(field, key, value, strict)
    return value


def check_metadata(metadata: object, *, strict: bool = False) -> dict[str, Any] | None:
    """``metadata`` of a tracking event: None, or a mapping of string keys to JSON values;
    the known keys (``tracking_id``, ``affiliate_id``, ``referrer_url``, ``project_id``,
    ``source``, ``category``, ``title``, ``tag``) are strings. Unknown keys pass."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise ValidationError(
            "metadata", "must be a mapping (dict) of str keys to values", metadata
        )
    checked = _json("metadata", metadata)
    assert isinstance(checked, dict)
    for key, value in checked.items():
        if key in METADATA_KEYS and type(value) is not str:
            undocumented(f"metadata.{key}", "is a string", value, strict)
    return checked


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
    checked = Event(
        check_name(event.name),
        None if event.user is None else check_user(event.user, check_format=check_format),
        check_dedup_id(event.dedup_id),
        check_args(event.args, strict=strict),
        check_timestamp(event.timestamp),
        _check_user_address(event.user_address),
        check_metadata(event.metadata, strict=strict),
        _optional_text("signature", event.signature),
        _optional_text("signature_message", event.signature_message),
        _optional_text("signature_public_key", event.signature_public_key),
        _check_account_chain_id(event.account_chain_id),
        # The same rule as the ?project_id= of a request: it names the same thing.
        None if event.project_id is None else check_query_value("project_id", event.project_id),
    )
    _check_someone(checked)
    return checked


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
