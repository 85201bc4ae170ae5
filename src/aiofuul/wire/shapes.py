"""Tier 2 of validation: the shapes Fuul's documents show for the standard ``args`` keys.

The vendor's pages do not agree with each other (see ``API-NOTES.md``, "Documented
variants"), so every shape any of them shows is accepted as written and sent unchanged.
A shape none of them shows is not refused: the server is the judge of what nobody
published. It is sent, and the ``aiofuul`` logger warns once per shape, unless the
client was built with ``ClientConfig(strict=True)``, which refuses it instead.

Each ``_*_rule`` function returns ``None`` for a documented shape, or ``(subfield,
rule)`` saying what no document shows.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from ..errors import ValidationError
from .models import Amount, Currency

__all__ = ["METADATA_KEYS", "STANDARD_ARGS", "check_shape", "undocumented"]

log = logging.getLogger("aiofuul")

_Rule = tuple[str, str] | None

_CURRENCY_NAMES = ("POINT", "USD", "USDC")
_FIAT = frozenset({"USD"})
_TOKEN_TYPES = ("evm_address", "evm_contract", "solana_mint", "stellar_contract")
_INTEGER = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"-?[0-9]+\.[0-9]+")
#: Known keys of a tracking event's ``metadata`` (the official SDK's ``FuulEventMetadata``);
#: each is a string. Unknown keys pass.
METADATA_KEYS = frozenset(
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
_SCALARS = (str, int, float, bool)

# One warning per shape: (field, rule) pairs already warned of, bounded so that args
# keys made up per event cannot grow it without end.
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()
_MAX_WARNED = 512


def undocumented(field: str, rule: str, value: object, strict: bool) -> None:
    """A shape no Fuul document shows: refuse it (``strict``) or warn once and go on."""
    if strict:
        raise ValidationError(field, rule, value, tier=2)
    key = (field, rule)
    with _warned_lock:
        if key in _warned or len(_warned) >= _MAX_WARNED:
            return
        _warned.add(key)
    log.warning(
        "%s: %s; sent anyway: no Fuul document shows this shape, so the server decides "
        "(ClientConfig(strict=True) refuses it instead). Warned once per shape.",
        field,
        rule,
    )


def _plain(value: object) -> object:
    # The Amount/Currency helpers are inspected as the JSON they encode to.
    return msgspec.to_builtins(value) if isinstance(value, (Amount, Currency)) else value


def _currency_rule(currency: object) -> _Rule:
    currency = _plain(currency)
    names = ", ".join(_CURRENCY_NAMES)
    if isinstance(currency, str):  # the oldest guide's bare "USDC"
        return None if currency in _CURRENCY_NAMES else ("currency", f"a name is one of {names}")
    if not isinstance(currency, Mapping):
        return ("currency", "is an object (or a bare currency name)")
    keys = set(currency)
    if "name" in keys:
        if keys - {"name", "chain_id"}:
            return ("currency", "takes a name (and chain_id), or an identifier, not both")
        if currency["name"] not in _CURRENCY_NAMES:
            return ("currency.name", f"is one of {names}")
        chain = currency.get("chain_id")
        if chain is not None and type(chain) is not int:
            return ("currency.chain_id", "is a number")
        return None
    if keys != {"identifier", "identifier_type", "chain_identifier"}:
        return ("currency", "has a name, or identifier, identifier_type and chain_identifier")
    if type(currency["identifier"]) is not str or not currency["identifier"]:
        return ("currency.identifier", "is a non-empty string")
    if currency["identifier_type"] not in _TOKEN_TYPES:
        return ("currency.identifier_type", "is one of " + ", ".join(_TOKEN_TYPES))
    chain = currency["chain_identifier"]
    if type(chain) is not int and (type(chain) is not str or not chain):
        return ("currency.chain_identifier", 'is a number (1) or a string ("evm:1")')
    return None


def _is_fiat(currency: object) -> bool:
    currency = _plain(currency)
    name = currency.get("name") if isinstance(currency, Mapping) else currency
    return isinstance(name, str) and name in _FIAT


def _amount_rule(value: object) -> _Rule:
    value = _plain(value)
    if type(value) in (int, float):  # the official SDK's own example: {value: 10}
        return None
    if not isinstance(value, Mapping):
        return ("", "is an object {amount, currency} (or a number)")
    if set(value) != {"amount", "currency"}:
        return ("", "has exactly the keys 'amount' and 'currency'")
    rule = _currency_rule(value["currency"])
    if rule is not None:
        return rule
    amount = value["amount"]
    if type(amount) is not str:
        return ("amount", "is a string (in the currency's smallest unit)")
    if _INTEGER.fullmatch(amount):
        return None
    if _DECIMAL.fullmatch(amount) and _is_fiat(value["currency"]):
        return None  # "decimals only for fiat"
    return ("amount", "is an integer string in the smallest unit (decimals only for USD)")


def _type_rule(*kinds: type, what: str) -> Callable[[object], _Rule]:
    def rule(value: object) -> _Rule:
        return None if type(value) in kinds else ("", f"is {what}")

    return rule


#: The standard ``args`` keys and the rule of each (the documented shapes).
STANDARD_ARGS: dict[str, Callable[[object], _Rule]] = {
    "value": _amount_rule,
    "revenue": _amount_rule,
    "chain_id": _type_rule(int, what="a number (the chain id)"),
    "transaction_hash": _type_rule(str, what="a string"),
    "token_id": _type_rule(str, int, what="a string or an integer"),
    "github_username": _type_rule(str, what="a string"),
    "discord_username": _type_rule(str, what="a string"),
}


def check_shape(field: str, key: str, value: Any, strict: bool) -> None:
    """Judge one ``args`` entry (already known to be JSON) against the documented shapes."""
    rule_of = STANDARD_ARGS.get(key)
    if rule_of is not None:
        broken = rule_of(value)
        if broken is not None:
            sub, rule = broken
            undocumented(f"{field}.{sub}" if sub else field, rule, value, strict)
    elif not isinstance(value, _SCALARS):
        undocumented(field, "args values are strings, numbers or booleans", value, strict)
