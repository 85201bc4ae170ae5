"""Payloads are bounded before they are walked or sent: ``args`` take at most
``MAX_ARGS_BYTES`` and an event at most ``MAX_EVENT_BYTES`` once encoded, so that a batch
of 100 events always fits the server's request cap (the sandbox answers 413 above it);
a huge value is refused as soon as that is sure, not after walking it all.

(How long the loop is held is measured in ``benchmarks/payload_bounds.py``, not here.)"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiofuul import Amount, ClientConfig, Currency, Event, FuulClient, User, ValidationError
from aiofuul.sandbox import Sandbox
from aiofuul.sandbox.exchange import MAX_BODY
from aiofuul.wire.models import (
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    MAX_REQUEST_BYTES,
    encode_batch,
    encode_event,
)
from aiofuul.wire.payload import MAX_ARGS_BYTES, MAX_ITEMS, _json, _Size, check_args, check_metadata
from aiofuul.wire.validation import MAX_ID_LENGTH, validate_event
from conftest import API_KEY, EVM, FAST_LIMITS, fast_config

CAP = f"{MAX_ARGS_BYTES:,} bytes"


def _size_of(args: Mapping[str, Any]) -> int:
    return len(msgspec.json.encode(args))


def _args_of_size(size: int, key: str = "blob") -> dict[str, str]:
    """``{key: "xxx..."}`` encoding to exactly ``size`` bytes."""
    overhead = _size_of({key: ""})
    return {key: "x" * (size - overhead)}


# -- the caps fit the server's ----------------------------------------------------------
def test_a_full_batch_of_the_largest_events_fits_the_request_cap() -> None:
    # 100 events, 99 commas, two brackets.
    assert MAX_BATCH_EVENTS * MAX_EVENT_BYTES + MAX_BATCH_EVENTS + 1 <= MAX_REQUEST_BYTES
    assert MAX_REQUEST_BYTES <= MAX_BODY  # the sandbox's cap, by its own table


def test_the_largest_track_event_fits_the_event_cap() -> None:
    # Every other field at its longest, in characters that encode to 6 bytes each.
    worst = Event(
        "\x01" * MAX_ID_LENGTH,
        User("\x01" * 254, "email"),
        "\x01" * MAX_ID_LENGTH,
        _args_of_size(MAX_ARGS_BYTES),
        "9" * 13,
    )
    checked = validate_event(worst, check_format=False)
    assert len(encode_event(checked)) <= MAX_EVENT_BYTES
    assert len(encode_batch([checked] * MAX_BATCH_EVENTS)) <= MAX_REQUEST_BYTES


# -- args -------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["blob", "value-ish key that is long " * 3])
def test_args_at_the_cap_pass_and_one_byte_more_is_refused(key: str) -> None:
    for _ in range(2):  # the first time by the full rules, then by the fast path
        at_cap = _args_of_size(MAX_ARGS_BYTES, key)
        assert check_args(at_cap) == at_cap
        over = _args_of_size(MAX_ARGS_BYTES + 1, key)
        with pytest.raises(
            ValidationError, match=f"at most {CAP} as JSON, not (at least )?65,537"
        ) as e:
            check_args(over)
        assert e.value.field == "args"
        assert "8,388,608-byte request cap" in str(e.value)


@pytest.mark.parametrize(
    ("char", "width"), [("\u00e9", 2), ("\u20ac", 3), ("\U0001f600", 4), ("\x01", 6)]
)
def test_the_size_is_the_encoded_one_not_the_characters(char: str, width: int) -> None:
    fits = (MAX_ARGS_BYTES - _size_of({"s": ""})) // width
    assert _size_of({"s": char * fits}) <= MAX_ARGS_BYTES
    assert check_args({"s": char * fits}) == {"s": char * fits}
    with pytest.raises(ValidationError, match=CAP):
        check_args({"s": char * (fits + 1)})


class _Untouchable:
    """Anything the validation walks fails loudly."""


def test_a_huge_list_is_refused_before_it_is_walked() -> None:
    # A million items that would each be refused as "not JSON" if they were looked at.
    with pytest.raises(ValidationError, match=f"{CAP} as JSON, not at least 2,000,") as e:
        check_args({"xs": [_Untouchable()] * 1_000_000})
    assert e.value.field == "args"


def test_a_huge_nested_value_is_refused_part_way() -> None:
    inner = [_Untouchable()] * 40_000
    with pytest.raises(ValidationError, match="not at least"):
        check_args({"a": {"b": [inner]}})


class _HugeMapping(Mapping[str, int]):
    """A mapping of a million keys that fails if anyone iterates over it."""

    def __len__(self) -> int:
        return 1_000_000

    def __getitem__(self, key: str) -> int:
        raise AssertionError("walked")

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("walked")


def test_a_mapping_with_too_many_keys_is_refused_before_it_is_copied() -> None:
    with pytest.raises(ValidationError, match="at most 10,000 values in all") as e:
        check_args(_HugeMapping())
    assert e.value.field == "args"
    with pytest.raises(ValidationError, match=r"metadata: .* at least"):
        check_metadata({"m": _HugeMapping()})


@pytest.mark.parametrize(
    "make",
    [
        lambda n: {"xs": [0] * n},
        lambda n: {"xs": [[]] * n},
        lambda n: {"a": [0] * (n // 2), "b": [0] * (n - n // 2)},
        lambda n: {"d": {str(i): [0] for i in range(n // 2)}},
    ],
)
def test_at_most_max_items_values_are_walked(make: Any) -> None:
    check_args(make(MAX_ITEMS - 10))
    with pytest.raises(ValidationError, match=f"at most {MAX_ITEMS:,} values in all") as e:
        check_args(make(MAX_ITEMS + 1))
    assert e.value.field == "args"


def test_many_small_plain_entries_are_counted_too() -> None:
    args = {f"k{i}": "v" * 20 for i in range(3000)}  # about 90 KB encoded
    check_args({"k0": "v"})  # teach the fast path the keys
    with pytest.raises(ValidationError, match=CAP):
        check_args(args)
    fewer = {f"k{i}": "v" * 20 for i in range(1500)}
    assert _size_of(fewer) <= MAX_ARGS_BYTES
    assert check_args(fewer) == fewer


def test_helpers_count_like_the_dicts_they_encode_to() -> None:
    amount = Amount("1" * 100, Currency(name="USDC"))
    args: dict[str, Any] = {"value": amount, "blob": ""}
    room = MAX_ARGS_BYTES - _size_of(args)
    assert check_args({**args, "blob": "x" * room})["blob"] == "x" * room  # type: ignore[index]
    with pytest.raises(ValidationError, match=CAP):
        check_args({**args, "blob": "x" * (room + 1)})


# Any JSON value the validation accepts, with strings of every width.
_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
_KEYS = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(_KEYS, inner, max_size=6),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_the_walk_bounds_the_encoded_size_from_both_sides(value: object) -> None:
    size = _Size("v", 10**9)
    size.take(0, 1)  # the top level, as check_metadata counts it
    _json("v", value, size)
    encoded = len(msgspec.json.encode(value))
    assert size.chars + size.units <= encoded <= size.high


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(_KEYS, _JSON, max_size=8), st.integers(0, 70_000), _TEXT)
def test_args_are_refused_exactly_when_they_do_not_fit(
    args: dict[str, Any], pad: int, char: str
) -> None:
    args = {**args, "pad": (char or "x") * pad}
    if _size_of(args) <= MAX_ARGS_BYTES:
        check_args(args)
    else:
        with pytest.raises(ValidationError, match="as JSON"):
            check_args(args)


# -- the whole event ----------------------------------------------------------------------
def _tracking(**fields: Any) -> Event:
    return Event("pageview", EVM, "p-1", **fields)


@pytest.mark.parametrize("field", ["metadata", "signature", "signature_message"])
def test_an_event_too_large_is_refused_naming_its_largest_field(field: str) -> None:
    big: Any = {"m": "x" * 40_000} if field == "metadata" else "x" * 40_000
    event = _tracking(args=_args_of_size(MAX_ARGS_BYTES), **{field: big})
    with pytest.raises(ValidationError, match="with the rest of the event") as e:
        validate_event(event)
    assert e.value.field == "args"  # the largest one here
    alone = _tracking(**{field: {"m": "x" * 90_000} if field == "metadata" else "x" * 81_900})
    with pytest.raises(ValidationError, match="81,920") as e:
        validate_event(alone)
    assert e.value.field == field


def test_a_tracking_event_up_to_the_cap_passes() -> None:
    event = _tracking(args=_args_of_size(MAX_ARGS_BYTES), metadata={"tracking_id": "t" * 9000})
    checked = validate_event(event)
    assert len(encode_event(checked)) <= MAX_EVENT_BYTES


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 70_000),
    st.integers(0, 30_000),
    st.integers(0, 30_000),
    st.sampled_from(["x", "\u00e9", "\x01"]),
)
def test_every_event_accepted_fits_the_cap(args: int, meta: int, sig: int, char: str) -> None:
    event = _tracking(
        args={"a": char * args},
        metadata={"tracking_id": char * meta},
        signature=char * sig or None,
    )
    if len(encode_event(event)) <= MAX_EVENT_BYTES and _size_of(event.args or {}) <= MAX_ARGS_BYTES:
        validate_event(event)  # surely within both caps: never refused
    try:
        checked = validate_event(event)
    except ValidationError as exc:
        refusal = exc
    else:
        assert len(encode_event(checked)) <= MAX_EVENT_BYTES
        return
    assert "as JSON" in refusal.rule


# -- against the sandbox: no batch is ever answered 413 -------------------------------------
async def test_a_queue_of_the_largest_events_is_delivered_without_a_413() -> None:
    async with Sandbox(limits=FAST_LIMITS) as sb:
        config = fast_config(linger=0.05, check_identifier_format=False)
        async with FuulClient(API_KEY, base_url=sb.url, config=config) as fuul:
            args = _args_of_size(MAX_ARGS_BYTES)
            for i in range(2 * MAX_BATCH_EVENTS):
                fuul.track("trade", EVM, dedup_id=f"{i:0>200}", args=args)
            assert await fuul.flush(60)
            stats = fuul.stats()
        assert stats.delivered == 2 * MAX_BATCH_EVENTS and stats.failed == 0
        assert all(r.status != 413 for r in sb.requests)
        assert any(r.events == MAX_BATCH_EVENTS for r in sb.requests)


async def test_send_batch_of_the_largest_events_is_not_refused_for_size() -> None:
    async with Sandbox(limits=FAST_LIMITS) as sb:
        async with FuulClient(API_KEY, base_url=sb.url, config=fast_config()) as fuul:
            args = _args_of_size(MAX_ARGS_BYTES)
            events = [Event("trade", EVM, f"{i:0>200}", args) for i in range(MAX_BATCH_EVENTS)]
            result = await fuul.send_batch(events)
        assert result.ingested == MAX_BATCH_EVENTS
        assert [r.status for r in sb.requests] == [201]


def test_track_refuses_a_huge_payload_before_queueing() -> None:
    import asyncio

    async def main() -> None:
        from aiofuul.testing import MockTransport, respond

        transport = MockTransport(lambda request: respond(201))
        async with FuulClient("k", transport=transport, config=ClientConfig()) as fuul:
            with pytest.raises(ValidationError, match=CAP):
                fuul.track("trade", EVM, args={"xs": list(range(1_000_000))})
            assert fuul.stats().tracked == 0
        assert transport.requests == []

    asyncio.run(main())
