"""Every rule of aiofuul.validation, by example and by property.

The example tests pin each rule with the field it names and the words of its message.
The Hypothesis tests throw arbitrary input at the checks: whatever comes in is either
refused with aiofuul.ValidationError (never any other exception) or accepted, and an
accepted event survives ``decode_event(encode_event(ev))`` unchanged.
"""

from __future__ import annotations

import math
import pickle
import string
from types import MappingProxyType
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiofuul import (
    IDENTIFIER_TYPES,
    MAX_BATCH_EVENTS,
    Amount,
    Currency,
    Event,
    User,
    ValidationError,
)
from aiofuul.models import decode_batch, decode_event, encode_batch, encode_event
from aiofuul.validation import (
    MAX_ID_LENGTH,
    check_args,
    check_dedup_id,
    check_name,
    check_timestamp,
    check_user,
    validate_batch,
    validate_event,
)

EVM_ID = "0x52908400098527886E0F7030069857D2E4169EE7"
EVM = User(EVM_ID, "evm_address")
TS = 1_700_000_000_000
LONE_SURROGATE = "ab\ud800cd"

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def attempt(call: Any, *args: Any) -> tuple[Any, ValidationError | None]:
    """``(result, None)`` when ``call`` accepts, ``(None, error)`` when it refuses; any
    other exception propagates (and fails the test)."""
    try:
        return call(*args), None
    except ValidationError as exc:
        return None, exc


def refused(call: Any, *args: Any, **kwargs: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        call(*args, **kwargs)
    return info.value


def event(**changes: Any) -> Event:
    fields: dict[str, Any] = {"name": "deposit", "user": EVM, "dedup_id": "dep-1"}
    fields.update(changes)
    return Event(**fields)


# -- name and dedup_id -----------------------------------------------------------------------


@pytest.mark.parametrize(("check", "field"), [(check_name, "name"), (check_dedup_id, "dedup_id")])
class TestNameAndDedupId:
    def test_lengths_1_and_200_are_accepted(self, check: Any, field: str) -> None:
        assert check("a") == "a"
        assert check("a" * MAX_ID_LENGTH) == "a" * 200

    @pytest.mark.parametrize("length", [0, 201, 10_000])
    def test_lengths_0_and_201_are_refused_with_the_length(
        self, check: Any, field: str, length: int
    ) -> None:
        err = refused(check, "a" * length)
        assert err.field == field
        assert f"must be 1 to 200 characters, not {length}" in str(err)
        assert str(err).startswith(f"{field}: ")

    @pytest.mark.parametrize("value", [None, 5, 1.5, b"bytes", ["a"], True])
    def test_non_strings_are_refused(self, check: Any, field: str, value: object) -> None:
        err = refused(check, value)
        assert (err.field, err.rule) == (field, "must be a string")

    def test_lone_surrogate_is_refused(self, check: Any, field: str) -> None:
        err = refused(check, LONE_SURROGATE)
        assert err.field == field
        assert "no lone surrogates" in err.rule

    def test_non_ascii_unicode_is_accepted(self, check: Any, field: str) -> None:
        assert check("dépôt-🚀") == "dépôt-🚀"
        assert check("é" * 200) == "é" * 200

    def test_str_subclass_is_accepted_as_plain_str(self, check: Any, field: str) -> None:
        class Name(str):
            pass

        out = check(Name("x"))
        assert out == "x"
        assert type(out) is str


# -- users -------------------------------------------------------------------------------------

HEX = "0123456789abcdefABCDEF"
BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
BASE32 = string.ascii_uppercase + "234567"

GOOD = {
    "evm_address": [
        EVM_ID,
        "0x" + "0" * 40,
        "0x" + "abcdef0123" * 4,
        "0x" + "ABCDEF0123" * 4,
    ],
    "sui_address": ["0x" + "a" * 64, "0x" + "0123456789ABCDEF" * 4],
    "solana_address": [
        "7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV",
        "1" * 32,
        "z" * 44,
        "So11111111111111111111111111111111111111112",
    ],
    "xrpl_address": [
        "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh",
        "r" + "1" * 24,
        "r" + "z" * 34,
    ],
    "stellar_address": [
        "GA7QYNF7SOWQ3GLR2BGMZEHXAVIRZA4KVWLTJJFC7MGXUA74P7UJVSGZ",
        "G" + "A" * 55,
        "G" + "2" * 55,
    ],
    "email": [
        "alice@example.com",
        "a.b+tag@sub.example.co.uk",
        "x@y.io",
        "a" * 64 + "@example.com",
    ],
}

BAD = {
    "evm_address": [
        "0x" + "a" * 39,
        "0x" + "a" * 41,
        "a" * 42,
        "0X" + "a" * 40,
        "0x" + "g" * 40,
        EVM_ID + "\n",
        " " + EVM_ID,
        "0x" + "a" * 64,  # a sui address is not an evm address
    ],
    "sui_address": ["0x" + "a" * 63, "0x" + "a" * 65, EVM_ID, "0x" + "z" * 64, "a" * 66],
    "solana_address": [
        "1" * 31,
        "1" * 45,
        "0" * 32,  # 0 is not base58
        "O" * 32,
        "I" * 32,
        "l" * 32,
        EVM_ID,
    ],
    "xrpl_address": [
        "r" + "1" * 23,
        "r" + "1" * 35,
        "x" + "1" * 30,
        "R" + "1" * 30,
        "r" + "0" * 30,
        "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyT!",
    ],
    "stellar_address": [
        "G" + "A" * 54,
        "G" + "A" * 56,
        "S" + "A" * 55,  # a secret seed, not an account
        "g" + "A" * 55,
        "G" + "a" * 55,
        "G" + "1" * 55,
        "G" + "8" * 55,
    ],
    "email": [
        "alice",
        "alice@",
        "@example.com",
        "alice@example",
        "alice@example.c",
        "a b@example.com",
        "alice@@example.com",
        "alice@exa mple.com",
        "a" * 65 + "@example.com",
        "alice@.com",
    ],
}


@pytest.mark.parametrize(("kind", "identifier"), [(k, i) for k, ids in GOOD.items() for i in ids])
def test_each_identifier_type_accepts_its_good_examples(kind: str, identifier: str) -> None:
    user = User(identifier, kind)
    assert check_user(user) is user


@pytest.mark.parametrize(("kind", "identifier"), [(k, i) for k, ids in BAD.items() for i in ids])
def test_each_identifier_type_refuses_its_bad_examples_naming_the_format(
    kind: str, identifier: str
) -> None:
    err = refused(check_user, User(identifier, kind))
    assert err.field == "user.identifier"
    assert err.rule.startswith(f"must be an {kind}: ")


@pytest.mark.parametrize(("kind", "identifier"), [(k, i) for k, ids in BAD.items() for i in ids])
def test_check_format_false_accepts_a_malformed_identifier(kind: str, identifier: str) -> None:
    user = User(identifier, kind)
    assert check_user(user, check_format=False) is user


@pytest.mark.parametrize("check_format", [True, False])
@pytest.mark.parametrize(
    "kind", ["bitcoin_address", "stellar_contract", "EVM_ADDRESS", "", "evm_address ", None, 1]
)
def test_unknown_identifier_type_is_refused_even_without_format_check(
    kind: object, check_format: bool
) -> None:
    err = refused(check_user, User(EVM_ID, kind), check_format)  # type: ignore[arg-type]
    assert err.field == "user.identifier_type"
    assert err.rule.startswith("must be one of ")
    for known in IDENTIFIER_TYPES:
        assert known in err.rule


@pytest.mark.parametrize("user", [None, (EVM_ID, "evm_address"), {"identifier": EVM_ID}, EVM_ID])
def test_check_user_refuses_what_is_not_a_user(user: object) -> None:
    err = refused(check_user, user)
    assert err.field == "user"
    assert "aiofuul.User" in err.rule


@pytest.mark.parametrize("check_format", [True, False])
@pytest.mark.parametrize(
    ("identifier", "rule"),
    [
        (None, "must be a string"),
        (123, "must be a string"),
        ("", "must be 1 to 254 characters, not 0"),
        ("a" * 255 + "@example.com", "must be 1 to 254 characters, not 267"),
        ("al\udcffce@example.com", "no lone surrogates"),
    ],
)
def test_identifier_type_length_and_unicode_are_checked_even_without_format_check(
    identifier: object, rule: str, check_format: bool
) -> None:
    err = refused(check_user, User(identifier, "email"), check_format)  # type: ignore[arg-type]
    assert err.field == "user.identifier"
    assert rule in err.rule


def test_check_user_names_the_field_it_is_given() -> None:
    err = refused(check_user, User("nope", "evm_address"), field="owner")
    assert err.field == "owner.identifier"


# -- timestamp -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ts", [None, TS, 100_000_000_000, 10_000_000_000_000])
def test_timestamp_accepts_none_and_milliseconds(ts: int | None) -> None:
    assert check_timestamp(ts) == ts


@pytest.mark.parametrize(
    ("ts", "words"),
    [
        (1_700_000_000, "looks like seconds"),
        (99_999_999_999, "looks like seconds"),
        (0, "looks like seconds"),
        (10_000_000_000_001, "looks like microseconds or nanoseconds"),
        (1_700_000_000_000_000, "looks like microseconds or nanoseconds"),
        (1_700_000_000_000_000_000, "looks like microseconds or nanoseconds"),
        (2**200, "looks like microseconds or nanoseconds"),
        (-1, "must not be negative"),
        (-(2**200), "must not be negative"),
        (1.7e12, "must be an int of milliseconds"),
        (True, "must be an int of milliseconds"),
        ("1700000000000", "must be an int of milliseconds"),
        (math.nan, "must be an int of milliseconds"),
    ],
)
def test_timestamp_refusals_say_why(ts: object, words: str) -> None:
    err = refused(check_timestamp, ts)
    assert err.field == "timestamp"
    assert words in err.rule


def test_timestamp_in_seconds_message_tells_to_multiply_by_1000() -> None:
    assert "multiply by 1000" in str(refused(check_timestamp, 1_700_000_000))


# -- args -------------------------------------------------------------------------------------------


def test_args_none_is_none() -> None:
    assert check_args(None) is None


def test_empty_args_dict_is_accepted_and_sent_as_an_empty_object() -> None:
    ev = event(args={})
    assert validate_event(ev) == ev
    assert encode_event(ev).endswith(b',"args":{}}')
    assert decode_event(encode_event(ev)) == ev


def test_args_of_plain_values_are_returned_as_an_equal_copy() -> None:
    args = {"size": 2.5, "chain_id": 1, "vip": False, "tx": "0xabc", "big": 2**64 - 1}
    out = check_args(args)
    assert out == args
    assert out is not args  # the caller may change its dict after track() returns


@pytest.mark.parametrize("args", [[("a", 1)], "a=1", 5, MappingProxyType({"a": 1}), ("a",)])
def test_args_that_are_not_a_dict_are_refused(args: object) -> None:
    err = refused(check_args, args)
    assert (err.field, err.rule) == ("args", "must be a dict of str keys to values")


@pytest.mark.parametrize("key", ["", 1, None, ("a",), b"a"])
def test_args_keys_must_be_non_empty_strings(key: object) -> None:
    err = refused(check_args, {key: 1})
    assert (err.field, err.rule) == ("args", "keys must be non-empty strings")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_args_float_must_be_finite_naming_the_key(value: float) -> None:
    err = refused(check_args, {"size": value})
    assert err.field == "args.size"
    assert "finite" in err.rule
    assert "NaN" in err.rule


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**30])
def test_args_int_must_fit_64_bits(value: int) -> None:
    err = refused(check_args, {"n": value})
    assert (err.field, err.rule) == ("args.n", "must fit in 64 bits")


@pytest.mark.parametrize("value", [2**64 - 1, -(2**63), 0])
def test_args_int_at_the_64_bit_edges_is_accepted(value: int) -> None:
    assert check_args({"n": value}) == {"n": value}


@pytest.mark.parametrize("value", [None, [1, 2], b"x", object(), {1, 2}, (1,)])
def test_args_value_of_another_type_is_refused(value: object) -> None:
    err = refused(check_args, {"thing": value})
    assert err.field == "args.thing"
    assert err.rule == "must be a str, int, float, bool or aiofuul.Amount"


def test_args_string_with_lone_surrogate_is_refused() -> None:
    err = refused(check_args, {"note": LONE_SURROGATE})
    assert err.field == "args.note"
    assert "lone surrogates" in err.rule


def test_args_amount_struct_is_kept_as_is() -> None:
    args = {"value": Amount("1500000", Currency(name="USDC"))}
    out = check_args(args)
    assert out == args
    assert out["value"] is args["value"]


def test_args_dict_shaped_amount_becomes_an_amount_struct_in_a_copy() -> None:
    args = {"value": {"amount": "1500000", "currency": {"name": "USDC"}}, "chain_id": 1}
    out = check_args(args)
    assert out == {"value": Amount("1500000", Currency(name="USDC")), "chain_id": 1}
    assert out is not args
    assert type(out["value"]) is Amount
    assert type(out["value"].currency) is Currency
    assert args["value"] == {"amount": "1500000", "currency": {"name": "USDC"}}  # not mutated


def test_args_dict_amount_with_currency_struct_is_converted() -> None:
    out = check_args({"revenue": {"amount": "-5", "currency": Currency(name="POINT")}})
    assert out == {"revenue": Amount("-5", Currency(name="POINT"))}


def test_args_token_currency_is_accepted_as_struct_and_as_dict() -> None:
    token = {"identifier": "0xA0b8", "identifier_type": "evm_contract", "chain_identifier": "evm:1"}
    out = check_args({"value": {"amount": "7", "currency": token}})
    assert out == {"value": Amount("7", Currency(**token))}
    mint = Currency(identifier="EPjF", identifier_type="solana_mint")
    assert check_args({"value": Amount("7", mint)}) == {"value": Amount("7", mint)}


@pytest.mark.parametrize(
    ("value", "field", "words"),
    [
        ({"amount": "1"}, "args.value", "exactly the keys 'amount' and 'currency'"),
        (
            {"amount": "1", "currency": {"name": "USDC"}, "x": 1},
            "args.value",
            "exactly the keys",
        ),
        ({}, "args.value", "exactly the keys"),
        (Amount("1.5", Currency(name="USDC")), "args.value.amount", "integer string"),
        (Amount("1e6", Currency(name="USDC")), "args.value.amount", "integer string"),
        (Amount(" 15", Currency(name="USDC")), "args.value.amount", "integer string"),
        (Amount("", Currency(name="USDC")), "args.value.amount", "1 to 200 characters"),
        (Amount(15, Currency(name="USDC")), "args.value.amount", "must be a string"),  # type: ignore[arg-type]
        (Amount("1", "USDC"), "args.value.currency", "aiofuul.Currency or a dict"),  # type: ignore[arg-type]
        (
            {"amount": "1", "currency": {"name": "USDC", "symbol": "$"}},
            "args.value.currency",
            "has unknown keys ['symbol']",
        ),
        (Amount("1", Currency(name="EUR")), "args.value.currency.name", "one of POINT, USD, USDC"),
        (Amount("1", Currency(name="usdc")), "args.value.currency.name", "one of POINT, USD"),
        (Amount("1", Currency(name="")), "args.value.currency.name", "1 to 200 characters"),
        (
            Amount("1", Currency(name="USDC", identifier="0xA0b8")),
            "args.value.currency",
            "takes a name, or an identifier and its type, not both",
        ),
        (
            Amount("1", Currency(name="USDC", identifier_type="evm_contract")),
            "args.value.currency",
            "not both",
        ),
        (Amount("1", Currency()), "args.value.currency.identifier", "must be a string"),
        (
            Amount("1", Currency(identifier="0xA0b8")),
            "args.value.currency.identifier_type",
            "one of evm_contract, solana_mint",
        ),
        (
            Amount("1", Currency(identifier="0xA0b8", identifier_type="erc20")),
            "args.value.currency.identifier_type",
            "one of evm_contract, solana_mint",
        ),
        (
            Amount(
                "1",
                Currency(identifier="0xA0b8", identifier_type="evm_contract", chain_identifier=""),
            ),
            "args.value.currency.chain_identifier",
            "1 to 200 characters",
        ),
        (
            Amount(
                "1",
                Currency(identifier="0xA0b8", identifier_type="evm_contract", chain_identifier=1),
            ),  # type: ignore[arg-type]
            "args.value.currency.chain_identifier",
            "must be a string",
        ),
    ],
)
def test_args_amount_and_currency_rules_name_the_nested_field(
    value: object, field: str, words: str
) -> None:
    err = refused(check_args, {"value": value})
    assert err.field == field
    assert words in err.rule


def test_args_unknown_currency_name_is_accepted_without_format_check() -> None:
    out = check_args({"value": Amount("1", Currency(name="EUR"))}, check_format=False)
    assert out == {"value": Amount("1", Currency(name="EUR"))}
    # ... but the shape of a currency is always checked.
    err = refused(check_args, {"value": Amount("1", Currency(identifier="x"))}, False)
    assert err.field == "args.value.currency.identifier_type"


def test_args_key_with_lone_surrogate_is_refused_not_left_to_crash_the_encoder() -> None:
    accepted, err = attempt(validate_event, event(args={LONE_SURROGATE: 1}))
    if err is None:
        encode_event(accepted)  # raises UnicodeEncodeError today
    assert err is not None
    assert err.field == "args"


@pytest.mark.parametrize("chain", [1, LONE_SURROGATE, "", ["evm:1"]])
def test_named_currency_checks_its_chain_identifier_too(chain: object) -> None:
    ev = event(args={"value": Amount("1", Currency(name="USDC", chain_identifier=chain))})  # type: ignore[arg-type]
    err = refused(validate_event, ev)
    assert err.field == "args.value.currency.chain_identifier"


# -- validate_event ------------------------------------------------------------------------------


def test_validate_event_returns_an_equal_event_with_its_own_args() -> None:
    ev = event(args={"a": 1}, timestamp=TS)
    out = validate_event(ev)
    assert out == ev
    assert out.args is not ev.args


def test_validate_event_returns_a_copy_with_amount_structs_when_dicts_were_given() -> None:
    ev = event(args={"value": {"amount": "1", "currency": {"name": "USD"}}}, timestamp=TS)
    out = validate_event(ev)
    assert out is not ev
    assert out == event(args={"value": Amount("1", Currency(name="USD"))}, timestamp=TS)
    assert decode_event(encode_event(out)) == out


@pytest.mark.parametrize(
    "value", [None, {"name": "x"}, ("deposit", EVM, "d"), Amount("1", Currency(name="USD"))]
)
def test_validate_event_refuses_what_is_not_an_event(value: object) -> None:
    err = refused(validate_event, value)
    assert (err.field, err.rule) == ("event", "must be an aiofuul.Event")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"user": "0xabc"}, "user"),
        ({"user": User("0xabc", "evm_address")}, "user.identifier"),
        ({"user": User(EVM_ID, "btc")}, "user.identifier_type"),
        ({"dedup_id": "d" * 201}, "dedup_id"),
        ({"args": {"size": math.nan}}, "args.size"),
        ({"args": []}, "args"),
        ({"timestamp": 1_700_000_000}, "timestamp"),
    ],
)
def test_validate_event_names_the_broken_field(changes: dict[str, Any], field: str) -> None:
    assert refused(validate_event, event(**changes)).field == field


def test_validate_event_reports_the_first_broken_rule_in_field_order() -> None:
    ev = event(name="", dedup_id="", timestamp=-1)
    assert refused(validate_event, ev).field == "name"


def test_validate_event_check_format_false_passes_a_malformed_identifier() -> None:
    ev = event(user=User("not-an-address", "evm_address"))
    assert validate_event(ev, check_format=False) == ev
    assert refused(validate_event, ev).field == "user.identifier"


# -- validate_batch ---------------------------------------------------------------------------------


def test_validate_batch_prefixes_the_index_of_the_broken_event() -> None:
    events = [event(dedup_id=f"d-{i}") for i in range(5)]
    events[3] = event(dedup_id="d-3", user=User("0xnope", "evm_address"))
    err = refused(validate_batch, events)
    assert err.field == "[3].user.identifier"
    assert str(err).startswith("[3].user.identifier: must be an evm_address")
    assert "'0xnope'" in str(err)  # the value is still quoted


@pytest.mark.parametrize("count", [0, MAX_BATCH_EVENTS + 1])
def test_validate_batch_refuses_0_and_101_events(count: int) -> None:
    err = refused(validate_batch, [event(dedup_id=f"d-{i}") for i in range(count)])
    assert err.field == "events"
    assert f"must hold 1 to 100 events, not {count}" in str(err)


@pytest.mark.parametrize("count", [1, 100])
def test_validate_batch_accepts_1_and_100_events_as_list_or_tuple(count: int) -> None:
    events = [event(dedup_id=f"d-{i}") for i in range(count)]
    assert validate_batch(events) == events
    assert validate_batch(tuple(events)) == events


@pytest.mark.parametrize("value", [None, 5, event(), {"a": event()}, "events", b"events"])
def test_validate_batch_refuses_what_is_not_a_list(value: object) -> None:
    err = refused(validate_batch, value)
    assert (err.field, err.rule) == ("events", "must be a list of aiofuul.Event")


def test_validate_batch_takes_any_iterable_of_events() -> None:
    events = [event(dedup_id=f"d-{i}") for i in range(3)]
    assert validate_batch(iter(events)) == events
    assert validate_batch(e for e in events) == events


def test_validate_batch_converts_amount_dicts_of_each_event() -> None:
    raw = event(args={"value": {"amount": "1", "currency": {"name": "USDC"}}})
    (out,) = validate_batch([raw])
    assert out.args == {"value": Amount("1", Currency(name="USDC"))}


def test_validate_batch_check_format_false_reaches_every_event() -> None:
    events = [event(dedup_id="a"), event(dedup_id="b", user=User("x", "sui_address"))]
    assert validate_batch(events, check_format=False) == events
    assert refused(validate_batch, events).field == "[1].user.identifier"


# -- the error itself ---------------------------------------------------------------------------------


def test_validation_error_is_a_value_error_and_truncates_long_values() -> None:
    err = refused(check_name, "x" * 500)
    assert isinstance(err, ValueError)
    assert len(str(err)) < 200
    assert str(err).endswith("...)")


def test_validation_error_survives_pickling_with_its_prefix() -> None:
    err = refused(validate_batch, [event(), event(name="")])
    back = pickle.loads(pickle.dumps(err))
    assert (back.field, back.rule, str(back)) == (err.field, err.rule, str(err))


# == Hypothesis strategies ===========================================================================

#: Text without lone surrogates (for the few places that need it).
clean_text = st.text(st.characters(blacklist_categories=("Cs",)))


def raw_text(max_size: int | None = None) -> st.SearchStrategy[str]:
    """Any text, lone surrogates included: ``st.text()`` leaves them out by default, and
    a union of alphabets inside ``st.text`` hardly ever draws them, so mix by hand."""
    surrogate_or_not = st.characters(categories=["Cs"]) | st.characters()
    return st.text(max_size=max_size or 40) | st.lists(surrogate_or_not, max_size=max_size).map(
        "".join
    )


#: Dict keys, lone surrogates included (an args key with one was a bug once).
clean_key = raw_text(8)


# -- valid values ---------------------------------------------------------------------


def _ident(prefix: str, alphabet: str, lo: int, hi: int | None = None) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=lo, max_size=hi if hi is not None else lo).map(
        lambda s: prefix + s
    )


label = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=10)
valid_email = st.builds(
    lambda local, labels, tld: f"{local}@{'.'.join(labels)}.{tld}",
    st.text(string.ascii_letters + string.digits + "._+-", min_size=1, max_size=30),
    st.lists(label, min_size=1, max_size=3),
    st.text(string.ascii_lowercase, min_size=2, max_size=6),
)
valid_users = st.one_of(
    _ident("0x", HEX, 40).map(lambda i: User(i, "evm_address")),
    _ident("0x", HEX, 64).map(lambda i: User(i, "sui_address")),
    _ident("", BASE58, 32, 44).map(lambda i: User(i, "solana_address")),
    _ident("r", BASE58, 24, 34).map(lambda i: User(i, "xrpl_address")),
    _ident("G", BASE32, 55).map(lambda i: User(i, "stellar_address")),
    valid_email.map(lambda i: User(i, "email")),
)
valid_ids = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=200)
valid_currency = st.one_of(
    st.sampled_from(["USDC", "USD", "POINT"]).map(lambda n: Currency(name=n)),
    st.builds(
        Currency,
        identifier=st.text(BASE58, min_size=1, max_size=44),
        identifier_type=st.sampled_from(["evm_contract", "solana_mint"]),
        chain_identifier=st.none() | st.sampled_from(["evm:1", "evm:8453", "solana:mainnet"]),
    ),
)
valid_amount = st.builds(
    Amount,
    amount=st.integers(min_value=-(10**30), max_value=10**30).map(str),
    currency=valid_currency,
)
valid_values = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=50),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    valid_amount,
)
valid_args = st.one_of(
    st.none(),
    st.dictionaries(
        st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20),
        valid_values,
        min_size=1,
        max_size=6,
    ),
)
valid_timestamps = st.none() | st.integers(min_value=100_000_000_000, max_value=10_000_000_000_000)
valid_events = st.builds(
    Event,
    name=valid_ids,
    user=valid_users,
    dedup_id=valid_ids,
    args=valid_args,
    timestamp=valid_timestamps,
)

# -- arbitrary values: garbage, and valid values with garbage mixed in -----------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    raw_text(),
    st.binary(max_size=8),
)
anything = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(clean_key, inner, max_size=4),
    max_leaves=8,
)
currency_names = st.sampled_from(["USDC", "USD", "POINT", "EUR", ""]) | raw_text(6)
token_types = st.sampled_from(["evm_contract", "solana_mint", "erc20"]) | raw_text(6)
any_currency = st.one_of(
    valid_currency,
    valid_currency.map(msgspec.to_builtins),
    st.builds(
        Currency,
        name=currency_names | anything,
        chain_identifier=st.none() | raw_text(10) | anything,
    ),
    st.builds(
        Currency,
        identifier=st.none() | raw_text(10) | anything,
        identifier_type=st.none() | token_types | anything,
        chain_identifier=st.none() | raw_text(10) | anything,
    ),
    st.fixed_dictionaries({}, optional={"name": currency_names, "identifier": raw_text(6)}),
    st.dictionaries(clean_key, anything, max_size=3),
    anything,
)
amount_texts = st.from_regex(r"-?[0-9]{1,20}", fullmatch=True) | raw_text(8) | anything
any_amount = st.one_of(
    valid_amount,
    st.builds(Amount, amount=amount_texts, currency=any_currency),
    st.fixed_dictionaries({"amount": amount_texts, "currency": any_currency}),
    st.fixed_dictionaries(
        {"amount": amount_texts, "currency": any_currency},
        optional={"extra": anything},
    ),
)
arg_values = st.one_of(valid_values, scalars, any_amount, anything)
any_args = st.one_of(
    valid_args,
    st.dictionaries(clean_key | st.integers(), arg_values, max_size=5),
    # Valid args with one more entry that may be anything.
    st.builds(
        lambda base, key, value: {**(base or {}), key: value},
        valid_args,
        clean_key | st.integers() | st.none(),
        arg_values,
    ),
    anything,
)
identifier_types = st.sampled_from(sorted(IDENTIFIER_TYPES)) | raw_text(16) | anything
any_user = st.one_of(
    valid_users,
    st.builds(User, identifier=raw_text(70) | anything, identifier_type=identifier_types),
    st.builds(
        User,
        identifier=valid_users.map(lambda u: u.identifier),
        identifier_type=st.sampled_from(sorted(IDENTIFIER_TYPES)),
    ),
    anything,
)
any_timestamp = st.one_of(
    valid_timestamps,
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.integers(min_value=90_000_000_000, max_value=11_000_000_000_000),
    st.floats(),
    st.booleans(),
    raw_text(5),
)
any_text = valid_ids | raw_text(210) | anything
_ANY_FIELD: dict[str, st.SearchStrategy[Any]] = {
    "name": any_text,
    "user": any_user,
    "dedup_id": any_text,
    "args": any_args,
    "timestamp": any_timestamp,
}
any_event = st.one_of(
    # Every field arbitrary (most such events fail on the first field checked) ...
    st.builds(Event, **_ANY_FIELD),
    # ... and a valid event with one field arbitrary, so every later rule is reached too.
    st.tuples(valid_events, st.sampled_from(sorted(_ANY_FIELD))).flatmap(
        lambda pair: _ANY_FIELD[pair[1]].map(
            lambda value: msgspec.structs.replace(pair[0], **{pair[1]: value})
        )
    ),
)


def assert_round_trips(ev: Event) -> None:
    back = decode_event(encode_event(ev))
    assert back == ev
    assert msgspec.to_builtins(back) == msgspec.to_builtins(ev)


# == Hypothesis: arbitrary input ======================================================================


@PROPERTY
@given(ev=any_event, check_format=st.booleans())
def test_any_event_is_refused_with_validation_error_or_accepted_and_round_trips(
    ev: Event, check_format: bool
) -> None:
    accepted, err = attempt(validate_event, ev, check_format)
    if err is not None:
        assert err.field
        assert str(err).startswith(err.field + ": ")
    else:
        assert_round_trips(accepted)


@PROPERTY
@given(value=any_event | anything | any_user | any_amount)
def test_anything_at_all_is_refused_with_validation_error_by_validate_event(value: object) -> None:
    try:
        accepted = validate_event(value)
    except ValidationError:
        return
    assert_round_trips(accepted)


@PROPERTY
@given(value=any_text | anything)
def test_check_name_and_dedup_id_return_a_str_or_raise_validation_error(value: object) -> None:
    for check in (check_name, check_dedup_id):
        try:
            out = check(value)
        except ValidationError:
            continue
        assert type(out) is str
        assert 1 <= len(out) <= 200
        out.encode()


@PROPERTY
@given(user=any_user, check_format=st.booleans())
def test_check_user_returns_the_user_or_raises_validation_error(
    user: object, check_format: bool
) -> None:
    try:
        out = check_user(user, check_format)
    except ValidationError:
        return
    assert out is user
    assert_round_trips(event(user=out))


@PROPERTY
@given(ts=any_timestamp | anything)
def test_check_timestamp_returns_plausible_ms_or_raises_validation_error(ts: object) -> None:
    try:
        out = check_timestamp(ts)
    except ValidationError:
        return
    assert out is None or (type(out) is int and 100_000_000_000 <= out <= 10_000_000_000_000)


@PROPERTY
@given(args=any_args, check_format=st.booleans())
def test_check_args_returns_encodable_args_or_raises_validation_error(
    args: object, check_format: bool
) -> None:
    try:
        out = check_args(args, check_format)
    except ValidationError:
        return
    assert out is None or isinstance(out, dict)
    assert_round_trips(event(args=out))


@settings(PROPERTY, max_examples=120)
@given(events=st.lists(any_event, max_size=4) | anything)
def test_validate_batch_accepts_or_raises_validation_error_and_round_trips(events: object) -> None:
    accepted, err = attempt(validate_batch, events)
    if err is not None:
        assert err.field == "events" or err.field.startswith("[")
    else:
        assert decode_batch(encode_batch(accepted)) == accepted


# == Hypothesis: valid input ============================================================================


@PROPERTY
@given(user=valid_users)
def test_valid_identifiers_of_every_type_are_accepted_with_format_check(user: User) -> None:
    assert check_user(user) is user


@PROPERTY
@given(ev=valid_events)
def test_valid_events_are_accepted_unchanged_and_round_trip(ev: Event) -> None:
    assert validate_event(ev) == ev
    assert validate_event(ev, check_format=False) == ev
    assert_round_trips(ev)


@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(events=st.lists(valid_events, min_size=1, max_size=MAX_BATCH_EVENTS))
def test_valid_batches_are_accepted_and_round_trip_through_encode_batch(
    events: list[Event],
) -> None:
    assert validate_batch(events) == events
    body = encode_batch(events)
    assert body.startswith(b"[") and body.endswith(b"]")
    assert decode_batch(body) == events


@PROPERTY
@given(ev=valid_events)
def test_dict_shaped_amounts_validate_to_the_same_event_as_structs(ev: Event) -> None:
    if not ev.args:
        return
    as_dicts = {k: msgspec.to_builtins(v) if type(v) is Amount else v for k, v in ev.args.items()}
    out = validate_event(Event(ev.name, ev.user, ev.dedup_id, as_dicts, ev.timestamp))
    assert out == ev


def test_str_subclasses_are_sent_as_the_plain_strings_they_hold() -> None:
    import enum

    class Name(str, enum.Enum):
        TRADE = "trade"

    class Kind(str, enum.Enum):
        EVM = "evm_address"

    class Text(str):
        pass

    ev = Event(
        Name.TRADE,
        User(Text(EVM_ID), Kind.EVM),
        Text("d-1"),
        {Text("pair"): Text("ETH/USDC"), "value": Amount(Text("1"), Currency(name=Text("USD")))},
    )
    out = validate_event(ev)
    assert encode_event(out) == encode_event(
        Event(
            "trade",
            User(EVM_ID, "evm_address"),
            "d-1",
            {"pair": "ETH/USDC", "value": Amount("1", Currency(name="USD"))},
        )
    )
    assert type(out.name) is str
    assert type(out.user.identifier_type) is str
