"""The rules an event must obey, checked before anything is sent or queued.

One copy of every rule: the client runs these on ``track()``, ``send_event`` and
``send_batch``; the sandbox server runs the very same functions on what it receives.
Each failure raises :class:`~aiofuul.errors.ValidationError` naming the field, the
rule and the (truncated) value.

The identifier format checks can be switched off (``check_format=False``, or
``FuulClient(config=ClientConfig(check_identifier_format=False))``) for users who
know better; the identifier *type* is always checked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ValidationError
from .models import IDENTIFIER_TYPES, MAX_BATCH_EVENTS, Amount, Currency, Event, User

__all__ = [
    "MAX_ID_LENGTH",
    "check_args",
    "check_dedup_id",
    "check_name",
    "check_timestamp",
    "check_user",
    "validate_batch",
    "validate_event",
]

#: ``name`` and ``dedup_id`` are 1 to this many characters (the vendor's own tooling).
MAX_ID_LENGTH = 200

# Milliseconds before this (1973-03-03) are almost surely seconds; after this
# (2286-11-20) almost surely microseconds or nanoseconds.
_MIN_MS = 100_000_000_000
_MAX_MS = 10_000_000_000_000
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1

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
_MAX_ARG_TEXT = 1 << 20
_CURRENCY_NAMES = frozenset({"USDC", "USD", "POINT"})
_TOKEN_TYPES = frozenset({"evm_contract", "solana_mint"})
_INTEGER = re.compile(r"-?[0-9]+")


def _check_text(field: str, value: object, max_len: int = MAX_ID_LENGTH, min_len: int = 1) -> str:
    if type(value) is not str:
        if not isinstance(value, str):
            raise ValidationError(field, "must be a string", value)
        # A str subclass (a str-valued Enum, say) is sent as the plain string it holds.
        value = str.__str__(value)
    if not min_len <= len(value) <= max_len:
        raise ValidationError(
            field, f"must be {min_len} to {max_len} characters, not {len(value)}", value
        )
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValidationError(
                field, "must be valid Unicode (no lone surrogates)", value
            ) from None
    return value


def check_name(name: object) -> str:
    """``name``: a string of 1-200 characters, matching a trigger configured in the project."""
    return _check_text("name", name)


def check_dedup_id(dedup_id: object) -> str:
    """``dedup_id``: a string of 1-200 characters, unique per event."""
    return _check_text("dedup_id", dedup_id)


def check_user(user: object, check_format: bool = True, field: str = "user") -> User:
    """A :class:`User` with a known identifier type and (unless ``check_format`` is
    False) an identifier in that type's format. Returns the user to send (a new one
    holding plain strings, when it was given str subclasses)."""
    if type(user) is not User:
        raise ValidationError(field, "must be an aiofuul.User(identifier, identifier_type)", user)
    kind = user.identifier_type
    if isinstance(kind, str) and type(kind) is not str:
        kind = str.__str__(kind)
    if type(kind) is not str or kind not in IDENTIFIER_TYPES:
        raise ValidationError(
            f"{field}.identifier_type",
            "must be one of " + ", ".join(sorted(IDENTIFIER_TYPES)),
            kind,
        )
    ident = _check_text(f"{field}.identifier", user.identifier, _MAX_IDENTIFIER)
    if check_format:
        pattern, rule = _FORMATS[kind]
        if pattern.fullmatch(ident) is None:
            raise ValidationError(f"{field}.identifier", f"must be an {kind}: {rule}", ident)
    if ident is not user.identifier or kind is not user.identifier_type:
        return User(ident, kind)
    return user


def check_timestamp(timestamp: object) -> int | None:
    """``timestamp``: None, or an int of milliseconds since the epoch."""
    if timestamp is None:
        return None
    if type(timestamp) is not int:
        raise ValidationError(
            "timestamp", "must be an int of milliseconds since the epoch", timestamp
        )
    if timestamp < _MIN_MS:
        if timestamp < 0:
            raise ValidationError("timestamp", "must not be negative", timestamp)
        raise ValidationError(
            "timestamp",
            "looks like seconds, not milliseconds since the epoch (multiply by 1000)",
            timestamp,
        )
    if timestamp > _MAX_MS:
        raise ValidationError(
            "timestamp",
            "looks like microseconds or nanoseconds, not milliseconds since the epoch",
            timestamp,
        )
    return timestamp


def _check_currency(field: str, value: object, check_format: bool) -> Currency:
    if isinstance(value, Mapping):
        unknown = set(value) - {"name", "identifier", "identifier_type", "chain_identifier"}
        if unknown:
            raise ValidationError(field, f"has unknown keys {sorted(map(str, unknown))}", value)
        value = Currency(**value)
    if type(value) is not Currency:
        raise ValidationError(field, "must be an aiofuul.Currency or a dict of its fields", value)
    chain = value.chain_identifier
    if chain is not None:
        chain = _check_text(f"{field}.chain_identifier", chain)
    if value.name is not None:
        if value.identifier is not None or value.identifier_type is not None:
            raise ValidationError(
                field, "takes a name, or an identifier and its type, not both", value
            )
        name = _check_text(f"{field}.name", value.name)
        if check_format and name not in _CURRENCY_NAMES:
            raise ValidationError(
                f"{field}.name", "must be one of " + ", ".join(sorted(_CURRENCY_NAMES)), name
            )
        if name is value.name and chain is value.chain_identifier:
            return value
        return Currency(name=name, chain_identifier=chain)
    ident = _check_text(f"{field}.identifier", value.identifier, _MAX_IDENTIFIER)
    kind = value.identifier_type
    if isinstance(kind, str) and type(kind) is not str:
        kind = str.__str__(kind)
    if type(kind) is not str or kind not in _TOKEN_TYPES:
        raise ValidationError(
            f"{field}.identifier_type",
            "must be one of " + ", ".join(sorted(_TOKEN_TYPES)),
            value.identifier_type,
        )
    if (
        ident is value.identifier
        and kind is value.identifier_type
        and chain is value.chain_identifier
    ):
        return value
    return Currency(identifier=ident, identifier_type=kind, chain_identifier=chain)


def _check_amount(field: str, value: object, check_format: bool) -> Amount:
    if isinstance(value, Mapping):
        if set(value) != {"amount", "currency"}:
            raise ValidationError(
                field, "must have exactly the keys 'amount' and 'currency'", value
            )
        value = Amount(value["amount"], value["currency"])
    assert type(value) is Amount
    amount = _check_text(f"{field}.amount", value.amount)
    if _INTEGER.fullmatch(amount) is None:
        raise ValidationError(
            f"{field}.amount", "must be an integer string in the currency's smallest unit", amount
        )
    currency = _check_currency(f"{field}.currency", value.currency, check_format)
    if currency is not value.currency or amount is not value.amount:
        value = Amount(amount, currency)
    return value


def check_args(args: object, check_format: bool = True) -> dict[str, Any] | None:
    """``args``: None, or a dict of string keys to str, int, float (finite), bool, or an
    :class:`Amount` (or a dict with its fields) for the standard ``value`` and ``revenue``.

    Returns the args to send: always a copy (the caller may change its dict after
    ``track()`` returns), with amount dicts made Structs.
    """
    if args is None:
        return None
    if not isinstance(args, dict):
        raise ValidationError("args", "must be a dict of str keys to values", args)
    converted = dict(args)
    for key, value in converted.items():
        kind = type(value)
        # The common cases decided inline (ASCII keys, plain values); anything else,
        # and every refusal with its message, goes through _check_arg.
        if type(key) is str and key and key.isascii():
            if kind is str:
                if value.isascii() and len(value) <= _MAX_ARG_TEXT:
                    continue
            elif kind is float:
                if value - value == 0.0:  # false for NaN and both infinities
                    continue
            elif kind is int:
                if _INT_MIN <= value <= _INT_MAX:
                    continue
            elif kind is bool:
                continue
        if type(key) is not str:
            return check_args(_plain_keys(converted), check_format)
        checked = _check_arg(key, value, check_format)
        if checked is not value:
            converted[key] = checked
    return converted


def _check_arg(key: str, value: object, check_format: bool) -> object:
    """One args entry, every rule: returns the value to send."""
    if not key:
        raise ValidationError("args", "keys must be non-empty strings", key)
    if not key.isascii():
        _check_text("args", key, max_len=_MAX_ARG_TEXT)
    field = f"args.{key}"
    kind = type(value)
    if kind is str:
        return _check_text(field, value, max_len=_MAX_ARG_TEXT, min_len=0)
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:  # type: ignore[operator]
            raise ValidationError(field, "must fit in 64 bits", value)
        return value
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise ValidationError(field, "must be a finite number (no NaN or infinity)", value)
        return value
    if kind is bool:
        return value
    if kind is Amount or isinstance(value, Mapping):
        return _check_amount(field, value, check_format)
    if isinstance(value, (str, int, float)):  # subclasses: str Enums, IntEnums, ...
        return _check_arg(key, _plain_value(value), check_format)
    raise ValidationError(field, "must be a str, int, float, bool or aiofuul.Amount", value)


def _plain_keys(args: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in args.items():
        if not isinstance(key, str):
            raise ValidationError("args", "keys must be non-empty strings", key)
        out[str.__str__(key)] = value
    return out


def _plain_value(value: str | int | float) -> str | int | float:
    # bool cannot be subclassed, so an int subclass here is never a bool.
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__index__(value)
    return float.__float__(value)


def validate_event(event: object, check_format: bool = True) -> Event:
    """Check every field of an :class:`Event`; returns the event to send (a new one
    holding a copy of its args, amount dicts made Structs, when it has args). Raises
    :class:`ValidationError` on the first broken rule."""
    if type(event) is not Event:
        raise ValidationError("event", "must be an aiofuul.Event", event)
    return Event(
        check_name(event.name),
        check_user(event.user, check_format),
        check_dedup_id(event.dedup_id),
        check_args(event.args, check_format),
        check_timestamp(event.timestamp),
    )


def validate_batch(events: object, check_format: bool = True) -> list[Event]:
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
            out.append(validate_event(event, check_format))
        except ValidationError as exc:
            raise exc.within(f"[{index}].") from None
    return out
