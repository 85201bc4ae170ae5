"""The sandbox's own judgement of an event: the variants the vendor documents, nothing else.

Written from the published documentation (``API-NOTES.md``, "Documented variants"),
independently of :mod:`aiofuul.wire.validation`: shared rules would hide a client rule
stricter than the docs from every test. It plays a strict server: every documented shape
is accepted (``args.value`` as a bare number too, as the SDK's browser events send it);
anything else is refused with messages naming the field, ``"args.value.currency: ..."``.
``judge_event(event, check_format=True)`` returns them; ``[]`` means accepted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from ..wire.models import Event, User

__all__ = ["CURRENCY_NAMES", "USER_TYPES", "judge_event", "judge_identifier_type", "judge_text"]

#: The identifier types a user may have (the official SDK's ``UserIdentifierType``).
USER_TYPES = frozenset(
    {"evm_address", "solana_address", "xrpl_address", "sui_address", "stellar_address", "email"}
)
#: The currency names the docs show; ``USD`` is the fiat one (decimal amounts allowed).
CURRENCY_NAMES = frozenset({"USDC", "USD", "POINT"})
_FIAT = frozenset({"USD"})
_TOKEN_TYPES = frozenset({"evm_contract", "evm_address", "solana_mint", "stellar_contract"})
_MAX_TEXT = 200
_MAX_IDENTIFIER = 254
_MIN_MS = 10**11
_MAX_MS = 10**13
# The metadata keys the SDK sends (and "referrer", seen with them): their values are strings.
_METADATA_TEXT = frozenset(
    {
        "tracking_id",
        "affiliate_id",
        "referrer_url",
        "project_id",
        "source",
        "category",
        "title",
        "tag",
        "referrer",
    }
)
_ARG_TEXT = frozenset({"transaction_hash", "github_username", "discord_username"})
_AMOUNT_KEYS = frozenset({"amount", "currency"})

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# type -> (pattern, what the message says it must be)
_FORMATS: dict[str, tuple[re.Pattern[str], str]] = {
    "evm_address": (re.compile(r"0x[0-9a-fA-F]{40}"), "0x followed by 40 hex digits"),
    "sui_address": (re.compile(r"0x[0-9a-fA-F]{64}"), "0x followed by 64 hex digits"),
    "solana_address": (re.compile(f"[{_B58}]{{32,44}}"), "32 to 44 base58 characters"),
    "xrpl_address": (re.compile(f"r[{_B58}]{{24,34}}"), "r followed by 24 to 34 base58 characters"),
    "stellar_address": (
        re.compile(r"G[A-Z2-7]{55}"),
        "G followed by 55 base32 characters (A-Z, 2-7)",
    ),
    "email": (re.compile(r"[^\s@]{1,64}@(?:[^\s@.]+\.)+[^\s@.]{2,}"), "local@domain.tld"),
}
_INTEGER = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_DIGITS = re.compile(r"[0-9]{1,20}")


def _refuse(field: str, rule: str, value: object) -> str:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:60] + "..."
    return f"{field}: {rule} (got {shown})"


def _is_int(value: object) -> bool:
    # JSON true is not a number, though Python's bool is an int.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def judge_text(field: str, value: object, max_len: int = _MAX_TEXT) -> str | None:
    """None when ``value`` is a str of 1 to ``max_len`` characters without NUL, else the
    refusal message."""
    if not isinstance(value, str):
        return _refuse(field, "must be a string", value)
    if not 1 <= len(value) <= max_len:
        return _refuse(field, f"must be 1 to {max_len} characters, not {len(value)}", value)
    if "\x00" in value:
        return _refuse(field, "must not contain a NUL character", value)
    return None


def judge_identifier_type(field: str, kind: object) -> str | None:
    """None when ``kind`` is a user identifier type, else the refusal message (one that
    points at the right type for the known slips ``stellar_contract`` and ``address``)."""
    if isinstance(kind, str) and kind in USER_TYPES:
        return None
    allowed = ", ".join(sorted(USER_TYPES))
    if kind == "stellar_contract":
        rule = f"stellar_contract identifies currencies, not users; must be one of {allowed}"
    elif kind == "address":
        rule = f"'address' is not a type: use evm_address for an EVM address (one of {allowed})"
    else:
        rule = f"must be one of {allowed}"
    return _refuse(field, rule, kind)


def _judge_user(user: object, check_format: bool) -> list[str]:
    if not isinstance(user, User):
        return [_refuse("user", "must be an object with identifier and identifier_type", user)]
    kind_error = judge_identifier_type("user.identifier_type", user.identifier_type)
    if kind_error is not None:
        return [kind_error]
    ident = user.identifier
    text_error = judge_text("user.identifier", ident, _MAX_IDENTIFIER)
    if text_error is not None:
        return [text_error]
    pattern, rule = _FORMATS[user.identifier_type]
    if check_format and pattern.fullmatch(ident) is None:
        return [_refuse("user.identifier", f"must be an {user.identifier_type}: {rule}", ident)]
    return []


def _judge_someone(event: Event, check_format: bool) -> list[str]:
    """The user an event is attributed to: ``user``, the deprecated ``user_address``, or
    (tracking events have no user) ``metadata.tracking_id``."""
    if event.user is not None:
        return _judge_user(event.user, check_format)
    if event.user_address is not None:
        error = judge_text("user_address", event.user_address, _MAX_IDENTIFIER)
        return [] if error is None else [error]
    metadata = event.metadata
    tracking = metadata.get("tracking_id") if isinstance(metadata, Mapping) else None
    if isinstance(tracking, str) and tracking:
        return []
    return ["user: is required (or the deprecated user_address, or metadata.tracking_id)"]


def _judge_timestamp(value: object) -> str | None:
    if value is None:
        return None
    rule = "must be an integer of milliseconds since the epoch"
    # Older guides sent the milliseconds as a string of digits.
    if isinstance(value, str) and _DIGITS.fullmatch(value) is not None:
        number = int(value)
    elif isinstance(value, int) and _is_int(value):
        number = value
    else:
        return _refuse("timestamp", rule, value)
    if number < _MIN_MS:
        return _refuse("timestamp", f"looks like seconds: {rule}", value)
    return _refuse("timestamp", f"is too large: {rule}", value) if number > _MAX_MS else None


def _judge_currency(field: str, value: object) -> tuple[str | None, bool]:
    """``(refusal or None, whether the currency is fiat)``."""
    names = "|".join(sorted(CURRENCY_NAMES))
    if isinstance(value, str):
        if value in CURRENCY_NAMES:
            return None, value in _FIAT
        return _refuse(field, f"must be one of {names}", value), False
    if not isinstance(value, Mapping):
        return _refuse(field, "must be an object or a currency name", value), False
    keys = set(value)
    if keys in ({"name"}, {"name", "chain_id"}):
        name = value["name"]
        if not (isinstance(name, str) and name in CURRENCY_NAMES):
            return _refuse(f"{field}.name", f"must be one of {names}", name), False
        if "chain_id" in value and not _is_int(value["chain_id"]):
            return _refuse(f"{field}.chain_id", "must be an integer", value["chain_id"]), False
        return None, name in _FIAT
    if keys == {"identifier", "identifier_type", "chain_identifier"}:
        return _judge_token(field, value), False
    rule = (
        'must be {"name": ' + names + '} (optionally with "chain_id"), '
        'or {"identifier", "identifier_type", "chain_identifier"}'
    )
    return _refuse(field, rule, dict(value)), False


def _judge_token(field: str, value: Mapping[str, Any]) -> str | None:
    # No length or character rule: nothing published gives one for a token's fields.
    if not isinstance(value["identifier"], str) or not value["identifier"]:
        return _refuse(f"{field}.identifier", "must be a non-empty string", value["identifier"])
    kind = value["identifier_type"]
    if not (isinstance(kind, str) and kind in _TOKEN_TYPES):
        allowed = ", ".join(sorted(_TOKEN_TYPES))
        return _refuse(f"{field}.identifier_type", f"must be one of {allowed}", kind)
    chain = value["chain_identifier"]
    if _is_int(chain):
        return None
    if isinstance(chain, str) and chain:
        return None
    return _refuse(
        f"{field}.chain_identifier", 'must be a string like "evm:1" or an integer', chain
    )


def _judge_amount(field: str, value: object) -> list[str]:
    if _is_number(value):
        # The SDK's browser custom events send a bare number: sendEvent("e", {value: 10}).
        return []
    if not isinstance(value, Mapping) or set(value) != _AMOUNT_KEYS:
        rule = 'must be {"amount": "<string>", "currency": ...} or a number'
        return [_refuse(field, rule, value)]
    currency_error, fiat = _judge_currency(f"{field}.currency", value["currency"])
    errors = [] if currency_error is None else [currency_error]
    amount = value["amount"]
    if not isinstance(amount, str):
        errors.append(_refuse(f"{field}.amount", "must be a string", amount))
    elif fiat and _DECIMAL.fullmatch(amount) is None:
        errors.append(_refuse(f"{field}.amount", "must be a decimal string like 12.50", amount))
    elif not fiat and _INTEGER.fullmatch(amount) is None:
        rule = "must be an integer string in the smallest unit (decimals only for fiat)"
        errors.append(_refuse(f"{field}.amount", rule, amount))
    return errors


def _judge_arg(key: str, value: object) -> list[str]:
    field = f"args.{key}"
    if key in ("value", "revenue"):
        if isinstance(value, msgspec.Struct):
            # An Event built in Python may hold an Amount: judge it as it goes on the wire.
            value = msgspec.to_builtins(value)
        return _judge_amount(field, value)
    if key == "chain_id":
        ok, rule = _is_int(value), "must be an integer"
    elif key in _ARG_TEXT:
        ok, rule = isinstance(value, str), "must be a string"
    elif key == "token_id":
        ok, rule = isinstance(value, str) or _is_int(value), "must be a string or an integer"
    else:
        ok = isinstance(value, (str, bool)) or _is_number(value)
        rule = "must be a string, number or boolean"
    return [] if ok else [_refuse(field, rule, value)]


def _judge_args(args: object) -> list[str]:
    if args is None:
        return []
    if not isinstance(args, Mapping):
        return [_refuse("args", "must be an object", args)]
    errors: list[str] = []
    for key, value in args.items():
        if not isinstance(key, str) or not key:
            errors.append(_refuse("args", "keys must be non-empty strings", key))
        else:
            errors.extend(_judge_arg(key, value))
    return errors


def _judge_metadata(metadata: object) -> list[str]:
    if metadata is None:
        return []
    if not isinstance(metadata, Mapping):
        return [_refuse("metadata", "must be an object", metadata)]
    return [
        _refuse(f"metadata.{key}", "must be a string", value)
        for key, value in metadata.items()
        if key in _METADATA_TEXT and not isinstance(value, str)
    ]


def _judge_signing(event: Event) -> list[str]:
    errors = [
        _refuse(field, "must be a string", value)
        for field in ("signature", "signature_message", "signature_public_key", "project_id")
        if (value := getattr(event, field, None)) is not None and not isinstance(value, str)
    ]
    chain = event.account_chain_id
    if chain is not None and not _is_int(chain):
        errors.append(_refuse("account_chain_id", "must be an integer", chain))
    return errors


def judge_event(event: Event, check_format: bool) -> list[str]:
    """The 400 messages the documented API would give ``event``, ``"field: rule (got
    ...)"``; an empty list when it is accepted. ``check_format`` turns the user identifier
    format checks on (the identifier type is always checked)."""
    plain = (
        judge_text("name", event.name),
        judge_text("dedup_id", event.dedup_id),
        _judge_timestamp(event.timestamp),
    )
    errors = [error for error in plain if error is not None]
    errors.extend(_judge_someone(event, check_format))
    errors.extend(_judge_args(event.args))
    errors.extend(_judge_metadata(event.metadata))
    errors.extend(_judge_signing(event))
    return errors
