"""The real client against the in-process sandbox over loopback: happy paths, every
refusal the server can give, 429 handling in the three Retry-After forms, 5xx, dropped
connections (exactly-once thanks to dedup ids) and hung requests.

Fault sequences are seeded: with ``Faults(seed=1)`` a rate of 0.5 fails the 1st request
and passes the 2nd (drops), or fails the first four and passes the 5th (5xx errors).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest

import aiofuul.wire.shapes
from aiofuul import (
    Amount,
    AuthenticationError,
    BadRequestError,
    BatchResult,
    Currency,
    Event,
    FuulClient,
    Limits,
    NotFoundError,
    PermissionDeniedError,
    RateLimit,
    RetryPolicy,
    SendResult,
    ServerError,
    TransportError,
    UndeliveredError,
    User,
    ValidationError,
)
from aiofuul.sandbox import Faults, RetryAfter, Sandbox
from conftest import API_KEY, FAST_LIMITS, HANG, fast_config

#: For failure tests: give up after a few quick attempts.
FEW_RETRIES = RetryPolicy(max_attempts=3, initial_backoff=0.005, max_backoff=0.02, max_elapsed=5.0)


@asynccontextmanager
async def running(sb: Sandbox, key: str = API_KEY, **config: object) -> AsyncIterator[FuulClient]:
    """A started sandbox and a client pointed at it (fast_config with ``config``)."""
    async with sb, FuulClient(key, base_url=sb.url, config=fast_config(**config)) as fuul:
        yield fuul


def statuses(sb: Sandbox, path: str = "/api/v1/events") -> list[int]:
    return [r.status for r in sb.requests if r.path == path]


# -- happy paths ----------------------------------------------------------------------------------


async def test_send_event_is_stored_once_exactly_as_sent(
    sandbox: Sandbox, client: FuulClient, evm_user: User
) -> None:
    result = await client.send_event(
        "deposit",
        evm_user,
        dedup_id="dep-1",
        args={
            "value": {"amount": "1500000", "currency": {"name": "USDC"}},
            "chain_id": 1,
            "size": 2.5,
            "vip": True,
        },
        timestamp=1_700_000_000_000,
    )
    assert result == SendResult("dep-1", duplicate=False)
    assert sandbox.stored_count("dep-1") == 1
    # Sent as written: the dict amount stays a dict (not an Amount struct).
    assert sandbox.events == [
        Event(
            "deposit",
            evm_user,
            "dep-1",
            {
                "value": {"amount": "1500000", "currency": {"name": "USDC"}},
                "chain_id": 1,
                "size": 2.5,
                "vip": True,
            },
            1_700_000_000_000,
        )
    ]
    assert statuses(sandbox) == [201]


async def test_send_event_amount_struct_is_stored_as_the_json_it_encodes_to(
    sandbox: Sandbox, client: FuulClient, evm_user: User
) -> None:
    value = Amount("1500000", Currency(name="USDC"))
    await client.send_event("deposit", evm_user, dedup_id="dep-2", args={"value": value})
    (stored,) = sandbox.events
    assert stored.args == {"value": msgspec.to_builtins(value)}


#: Shapes the documents show, none in the helpers' form: each is stored exactly as
#: written, key order included, without a warning, by a strict client too.
DOCUMENTED_VARIANTS = {
    "bare-currency-name": {"value": {"amount": "1000000", "currency": "USDC"}},
    "name-and-chain-id": {
        "revenue": {"amount": "100000", "currency": {"name": "USDC", "chain_id": 1}}
    },
    "usd-decimal": {"value": {"amount": "12.50", "currency": {"name": "USD"}}},
    "token-numeric-chain": {
        "value": {
            "amount": "1000000",
            "currency": {
                "identifier": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
                "identifier_type": "evm_address",
                "chain_identifier": 1,
            },
        }
    },
    "stellar-contract-currency": {
        "value": {
            "amount": "1000000",
            "currency": {
                "identifier": "CCW67TSZV3SSS2HXMBQ5JFGCKJNXKZM7UQUWUZPUTHXSTZLEO7SJMI75",
                "identifier_type": "stellar_contract",
                "chain_identifier": "stellar:pubnet",
            },
        }
    },
    "value-as-a-number": {"value": 10},
    "amount-keys-reversed": {"value": {"currency": {"name": "POINT"}, "amount": "500"}},
    "standard-keys": {
        "transaction_hash": "0x5c50",
        "chain_id": 1,
        "token_id": "4521",
        "github_username": "octocat",
    },
}


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("args", list(DOCUMENTED_VARIANTS.values()), ids=list(DOCUMENTED_VARIANTS))
async def test_documented_variants_are_stored_exactly_as_written(
    evm_user: User, caplog: pytest.LogCaptureFixture, args: dict[str, Any], strict: bool
) -> None:
    aiofuul.wire.shapes._warned.clear()
    caplog.set_level(logging.WARNING, logger="aiofuul")
    sb = Sandbox()
    async with running(sb, strict=strict) as fuul:
        await fuul.send_event("deposit", evm_user, dedup_id="v-1", args=args)
        fuul.track("deposit", evm_user, dedup_id="v-2", args=args)
        assert await fuul.send_batch([Event("deposit", evm_user, "v-3", args)]) == BatchResult(1, 0)
        assert await fuul.flush(timeout=5)
        stored = {e.dedup_id: e for e in sb.events}
    for dedup_id in ("v-1", "v-2", "v-3"):
        assert stored[dedup_id].args == args
        assert msgspec.json.encode(stored[dedup_id].args) == msgspec.json.encode(args)
    assert not [m for m in caplog.messages if "sent anyway" in m]


async def test_timestamp_as_a_string_of_digits_is_sent_as_a_string(
    sandbox: Sandbox, client: FuulClient, evm_user: User
) -> None:
    await client.send_event("deposit", evm_user, dedup_id="ts-1", timestamp="1700000000000")
    client.track("deposit", evm_user, dedup_id="ts-2", timestamp="1700000000001")
    assert await client.flush(timeout=5)
    stamps = {e.dedup_id: e.timestamp for e in sandbox.events}
    assert stamps == {"ts-1": "1700000000000", "ts-2": "1700000000001"}


async def test_a_tracking_event_without_a_user_is_stored(
    sandbox: Sandbox, client: FuulClient
) -> None:
    await client.send_event("pageview", metadata={"tracking_id": "V1StGXR8"}, dedup_id="pv-1")
    (stored,) = sandbox.events
    assert stored.user is None
    assert stored.metadata == {"tracking_id": "V1StGXR8"}
    with pytest.raises(ValidationError) as info:
        await client.send_event("pageview", dedup_id="pv-2")
    assert (info.value.field, info.value.tier) == ("user", 1)


#: Token currencies a strict client takes (its table asks for a non-empty string) and the
#: sandbox refuses (its own limits: no NUL, 254 and 200 characters); and a timestamp of
#: more than 20 digits (leading zeros). No Fuul document settles which side is right.
DISAGREEMENTS = {
    "identifier-nul": {
        "value": {
            "amount": "1",
            "currency": {
                "identifier": "0xA0b8\x00",
                "identifier_type": "evm_contract",
                "chain_identifier": "evm:1",
            },
        }
    },
    "identifier-255": {
        "value": {
            "amount": "1",
            "currency": {
                "identifier": "a" * 255,
                "identifier_type": "evm_contract",
                "chain_identifier": "evm:1",
            },
        }
    },
    "chain-identifier-201": {
        "value": {
            "amount": "1",
            "currency": {
                "identifier": "0xA0b8",
                "identifier_type": "evm_contract",
                "chain_identifier": "e" * 201,
            },
        }
    },
}


@pytest.mark.parametrize("args", list(DISAGREEMENTS.values()), ids=list(DISAGREEMENTS))
async def test_client_and_sandbox_agree_on_token_currency_text(
    evm_user: User, args: dict[str, Any]
) -> None:
    sb = Sandbox()
    async with running(sb, strict=True) as fuul:
        try:
            await fuul.send_event("deposit", evm_user, dedup_id="g-1", args=args)
        except ValidationError:
            return  # the client refuses it too: they agree
    assert sb.stored_ids() == ["g-1"]


async def test_client_and_sandbox_agree_on_a_long_timestamp_string(evm_user: User) -> None:
    sb = Sandbox()
    async with running(sb, strict=True) as fuul:
        try:
            await fuul.send_event(
                "x", evm_user, dedup_id="g-2", timestamp="0" * 10 + "1700000000000"
            )
        except ValidationError:
            return
    assert sb.stored_ids() == ["g-2"]


# -- shapes no document shows: the client sends them (with a warning), the server decides --------

#: (args, the field the warning, the strict refusal and the sandbox's 400 all name)
UNDOCUMENTED = {
    "currency-eur": (
        {"value": {"amount": "1", "currency": {"name": "EUR"}}},
        "args.value.currency",
    ),
    "usdc-decimal": (
        {"value": {"amount": "1.5", "currency": {"name": "USDC"}}},
        "args.value.amount",
    ),
    "nested-dict": ({"meta": {"campaign": "spring"}}, "args.meta"),
    "chain-id-string": ({"chain_id": "1"}, "args.chain_id"),
}


@pytest.mark.parametrize(("args", "field"), list(UNDOCUMENTED.values()), ids=list(UNDOCUMENTED))
async def test_undocumented_shape_is_sent_with_one_warning_and_refused_by_the_server(
    evm_user: User, caplog: pytest.LogCaptureFixture, args: dict[str, Any], field: str
) -> None:
    aiofuul.wire.shapes._warned.clear()
    caplog.set_level(logging.WARNING, logger="aiofuul")
    sb = Sandbox()
    async with running(sb) as fuul:
        with pytest.raises(BadRequestError) as info:
            await fuul.send_event("deposit", evm_user, dedup_id="u-1", args=args)
        messages = info.value.message
        assert isinstance(messages, list)
        assert any(m.startswith(field) for m in messages), messages
        with pytest.raises(BadRequestError):
            await fuul.send_event("deposit", evm_user, dedup_id="u-2", args=args)
    warned = [m for m in caplog.messages if "sent anyway" in m]
    assert len(warned) == 1, warned  # once per shape, however often it is sent
    assert warned[0].startswith(field)
    assert statuses(sb) == [400, 400]  # sent, and not retried
    assert sb.stored_ids() == []


@pytest.mark.parametrize(("args", "field"), list(UNDOCUMENTED.values()), ids=list(UNDOCUMENTED))
async def test_undocumented_shape_tracked_ends_rejected_and_spares_its_batch(
    evm_user: User, args: dict[str, Any], field: str
) -> None:
    reported: list[tuple[list[str], UndeliveredError]] = []

    def on_error(events: list[Event], error: UndeliveredError) -> None:
        reported.append(([e.dedup_id for e in events], error))

    sb = Sandbox()
    async with (
        sb,
        FuulClient(API_KEY, base_url=sb.url, config=fast_config(), on_error=on_error) as fuul,
    ):
        good = [fuul.track("deposit", evm_user, args={"i": i}) for i in range(5)]
        bad = fuul.track("deposit", evm_user, args=args)
        good += [fuul.track("deposit", evm_user, args={"i": i}) for i in range(5, 10)]
        assert await fuul.flush(timeout=5)
        stats = fuul.stats()
    assert (stats.delivered, stats.rejected) == (10, 1)
    assert [(ids, error.reason) for ids, error in reported] == [([bad], "rejected")]
    assert field in str(reported[0][1])
    assert sorted(sb.stored_ids()) == sorted(good)


@pytest.mark.parametrize(("args", "field"), list(UNDOCUMENTED.values()), ids=list(UNDOCUMENTED))
async def test_strict_client_refuses_an_undocumented_shape_before_sending(
    evm_user: User, args: dict[str, Any], field: str
) -> None:
    sb = Sandbox()
    async with running(sb, strict=True) as fuul:
        with pytest.raises(ValidationError) as tracked:
            fuul.track("deposit", evm_user, args=args)
        with pytest.raises(ValidationError) as sent:
            await fuul.send_event("deposit", evm_user, dedup_id="s-1", args=args)
        with pytest.raises(ValidationError) as batched:
            await fuul.send_batch([Event("deposit", evm_user, "s-2", args)])
        assert await fuul.flush(timeout=5)
        assert fuul.stats().tracked == 0
    for err in (tracked.value, sent.value, batched.value):
        assert err.tier == 2
        assert err.field.removeprefix("[0].").startswith(field)
        assert str(err).endswith("sends it with a warning]")
    assert sb.requests == []


async def test_send_event_without_dedup_id_stores_the_generated_id(
    sandbox: Sandbox, client: FuulClient, evm_user: User
) -> None:
    result = await client.send_event("signup", evm_user)
    assert sandbox.stored_ids() == [result.dedup_id]
    assert sandbox.events[0].timestamp is None  # the server stamps it


async def test_send_batch_stores_every_event_once(
    sandbox: Sandbox, client: FuulClient, evm_user: User
) -> None:
    events = [Event("trade", evm_user, f"t-{i}", {"n": i}) for i in range(100)]
    assert await client.send_batch(events) == BatchResult(ingested=100, skipped=0)
    assert sandbox.events == events
    assert all(sandbox.stored_count(f"t-{i}") == 1 for i in range(100))
    assert statuses(sandbox, "/api/v1/events/batch") == [201]


async def test_send_batch_with_known_dedup_ids_reports_them_skipped(
    sandbox: Sandbox, client: FuulClient, evm_user: User
) -> None:
    await client.send_event("trade", evm_user, dedup_id="k-1")
    await client.send_event("trade", evm_user, dedup_id="k-3")
    events = [Event("trade", evm_user, f"k-{i}") for i in range(5)]
    assert await client.send_batch(events) == BatchResult(ingested=3, skipped=2)
    assert sorted(sandbox.stored_ids()) == [f"k-{i}" for i in range(5)]
    assert all(sandbox.stored_count(f"k-{i}") == 1 for i in range(5))


async def test_send_batch_repeated_dedup_id_inside_one_batch_first_wins(
    sandbox: Sandbox, client: FuulClient, evm_user: User
) -> None:
    first = Event("trade", evm_user, "same", {"n": 1})
    again = Event("trade", evm_user, "same", {"n": 2})
    assert await client.send_batch([first, again]) == BatchResult(ingested=1, skipped=1)
    assert sandbox.events == [first]


async def test_event_status_is_false_before_and_true_after_and_case_sensitive(
    sandbox: Sandbox, client: FuulClient, evm_user: User
) -> None:
    assert await client.event_status(evm_user, "deposit") is False
    await client.send_event("deposit", evm_user, dedup_id="d-1")
    assert await client.event_status(evm_user, "deposit") is True
    assert await client.event_status(evm_user, "Deposit") is False
    other = User("0x" + "1" * 40, "evm_address")
    assert await client.event_status(other, "deposit") is False


async def test_event_status_round_trips_an_email_with_plus_and_a_name_with_spaces(
    sandbox: Sandbox, client: FuulClient
) -> None:
    user = User("a+b@example.com", "email")
    await client.send_event("signed up", user, dedup_id="e-1")
    # Found: the query's '+' reached the server as '+', not as a space.
    assert await client.event_status(user, "signed up") is True
    assert sandbox.events[0].user == user


async def test_409_on_a_known_dedup_id_is_a_duplicate_result_and_stored_once(
    sandbox: Sandbox, client: FuulClient, evm_user: User
) -> None:
    assert await client.send_event("x", evm_user, dedup_id="dup-1") == SendResult("dup-1", False)
    assert await client.send_event("x", evm_user, dedup_id="dup-1") == SendResult("dup-1", True)
    assert sandbox.stored_count("dup-1") == 1
    assert sandbox.seen_count("dup-1") == 2
    assert statuses(sandbox) == [201, 409]


# -- refusals -----------------------------------------------------------------------------------------


async def test_wrong_key_gets_401_authentication_error_without_retry(evm_user: User) -> None:
    sb = Sandbox(keys={API_KEY: ["send:trigger_event"]})
    async with running(sb, key="sk_wrong") as fuul:
        with pytest.raises(AuthenticationError) as info:
            await fuul.send_event("x", evm_user, dedup_id="a-1")
        assert info.value.status == 401
        with pytest.raises(AuthenticationError):
            await fuul.event_status(evm_user, "x")
        with pytest.raises(AuthenticationError):
            await fuul.send_batch([Event("x", evm_user, "a-2")])
        assert [r.status for r in sb.requests] == [401, 401, 401]
        assert sb.stored_ids() == []
        assert "sk_wrong" not in str(info.value)


async def test_right_key_is_accepted_by_a_sandbox_with_keys(evm_user: User) -> None:
    sb = Sandbox(keys={API_KEY: ["send:trigger_event"]})
    async with running(sb) as fuul:
        assert await fuul.send_event("x", evm_user, dedup_id="a-1") == SendResult("a-1")


async def test_key_without_send_scope_gets_403_on_sends_but_may_query_status(
    evm_user: User,
) -> None:
    sb = Sandbox(keys={"sk_read_only": []})
    async with running(sb, key="sk_read_only") as fuul:
        with pytest.raises(PermissionDeniedError) as info:
            await fuul.send_event("x", evm_user, dedup_id="p-1")
        assert info.value.status == 403
        assert "scope" in str(info.value.message)
        with pytest.raises(PermissionDeniedError):
            await fuul.send_batch([Event("x", evm_user, "p-2")])
        assert await fuul.event_status(evm_user, "x") is False
        assert [r.status for r in sb.requests] == [403, 403, 200]


async def test_server_side_400_carries_the_message_list(evm_user: User) -> None:
    sb = Sandbox(check_format=True)
    async with running(sb, check_identifier_format=False) as fuul:
        bad = User("not-an-evm-address", "evm_address")
        with pytest.raises(BadRequestError) as info:
            await fuul.send_event("x", bad, dedup_id="b-1")
        assert info.value.status == 400
        assert isinstance(info.value.message, list)
        (message,) = info.value.message
        assert message.startswith("user.identifier: must be an evm_address")
        assert statuses(sb) == [400]  # not retried
        assert sb.stored_ids() == []


async def test_server_side_400_on_a_batch_names_the_index_and_stores_nothing(
    evm_user: User,
) -> None:
    sb = Sandbox(check_format=True)
    async with running(sb, check_identifier_format=False) as fuul:
        events = [
            Event("x", evm_user, "b-0"),
            Event("x", User("nope", "sui_address"), "b-1"),
            Event("x", evm_user, "b-2"),
            Event("x", User("nope", "email"), "b-3"),
        ]
        with pytest.raises(BadRequestError) as info:
            await fuul.send_batch(events)
        assert isinstance(info.value.message, list)
        assert [m.split(":")[0] for m in info.value.message] == [
            "[1].user.identifier",
            "[3].user.identifier",
        ]
        assert sb.stored_ids() == []  # atomic: none stored


async def test_unknown_path_gets_404_not_found(evm_user: User) -> None:
    async with Sandbox() as sb:
        url = sb.url.replace("/api/v1/", "/api/v0/")
        async with FuulClient(API_KEY, base_url=url, config=fast_config()) as fuul:
            with pytest.raises(NotFoundError) as info:
                await fuul.send_event("x", evm_user, dedup_id="n-1")
            assert info.value.status == 404
            assert len(sb.requests) == 1


# -- 429 ------------------------------------------------------------------------------------------------

SERVER_LIMITS = Limits(single=RateLimit(2, 0.2), batch=RateLimit(1, 0.2), status=RateLimit(2, 0.2))
#: The client believes in far higher limits than the server enforces: it will draw 429s.
GREEDY_LIMITS = Limits(
    single=RateLimit(100, 0.2), batch=RateLimit(100, 0.2), status=RateLimit(100, 0.2)
)


@pytest.mark.slow
@pytest.mark.parametrize("form", ["seconds", "http-date", "none"])
async def test_429_in_every_retry_after_form_is_retried_until_every_event_is_stored(
    evm_user: User, form: RetryAfter
) -> None:
    sb = Sandbox(limits=SERVER_LIMITS, retry_after=form)
    async with running(sb, limits=GREEDY_LIMITS) as fuul:
        # A misread Retry-After (a date taken for seconds, a huge wait) hangs: the
        # deadline catches that, not slowness (this takes about a second).
        results = await asyncio.wait_for(
            asyncio.gather(*(fuul.send_event("x", evm_user, dedup_id=f"r-{i}") for i in range(5))),
            HANG,
        )
    assert results == [SendResult(f"r-{i}", False) for i in range(5)]
    assert all(sb.stored_count(f"r-{i}") == 1 for i in range(5))
    assert sb.count("events", 429) > 0
    assert sb.count("events", 201) == 5


async def test_429_on_batch_and_status_are_retried_too(evm_user: User) -> None:
    sb = Sandbox(limits=SERVER_LIMITS, retry_after="seconds")
    async with running(sb, limits=GREEDY_LIMITS) as fuul:
        batches = [[Event("x", evm_user, f"b{j}-{i}") for i in range(3)] for j in range(3)]
        results = await asyncio.gather(*(fuul.send_batch(b) for b in batches))
        assert results == [BatchResult(3, 0)] * 3
        assert sb.count("events/batch", 429) > 0
        assert (
            await asyncio.gather(*(fuul.event_status(evm_user, "x") for _ in range(4)))
            == [True] * 4
        )
        assert sb.count("events/status", 429) > 0
    assert len(sb.stored_ids()) == 9


async def test_client_within_the_servers_limits_draws_no_429(evm_user: User) -> None:
    sb = Sandbox(limits=SERVER_LIMITS)
    async with running(sb, limits=SERVER_LIMITS) as fuul:
        await asyncio.gather(*(fuul.send_event("x", evm_user, dedup_id=f"w-{i}") for i in range(5)))
    assert sb.count("events", 429) == 0
    assert sb.count("events", 201) == 5


# -- 5xx, drops, hangs ----------------------------------------------------------------------------------


async def test_5xx_errors_are_retried_until_success(evm_user: User) -> None:
    # Seed 1, rate 0.5: the first four requests fail (500, 502, 500, 502), the 5th passes.
    sb = Sandbox(faults=Faults(error_rate=0.5, seed=1))
    async with running(sb) as fuul:
        assert await fuul.send_event("x", evm_user, dedup_id="f-1") == SendResult("f-1", False)
    assert statuses(sb) == [500, 502, 500, 502, 201]
    assert sb.stored_count("f-1") == 1


async def test_errors_then_turned_off_every_event_ends_stored_once(evm_user: User) -> None:
    sb = Sandbox(faults=Faults(error_rate=0.5, seed=3))
    async with running(sb) as fuul:
        for i in range(10):
            await fuul.send_event("x", evm_user, dedup_id=f"m-{i}")
        sb.faults.error_rate = 0.0
        await fuul.send_batch([Event("x", evm_user, f"m-{i}") for i in range(10, 15)])
    assert sb.count("events") > 10  # some attempts failed and were retried
    assert {s for s in statuses(sb)} <= {201, 500, 502, 503}
    assert sorted(sb.stored_ids()) == sorted(f"m-{i}" for i in range(15))


async def test_5xx_every_time_raises_server_error_after_the_attempts(evm_user: User) -> None:
    sb = Sandbox(faults=Faults(error_rate=1.0, seed=2))
    async with running(sb, retry=FEW_RETRIES) as fuul:
        with pytest.raises(ServerError) as info:
            await fuul.send_event("x", evm_user, dedup_id="s-1")
    assert info.value.status in (500, 502, 503)
    assert len(statuses(sb)) == FEW_RETRIES.max_attempts
    assert sb.stored_ids() == []


async def test_dropped_connection_before_store_is_retried_and_stored_once(evm_user: User) -> None:
    # Seed 1, rate 0.5: the first request is dropped, the second is not.
    sb = Sandbox(faults=Faults(drop_rate=0.5, drop_after_store=0.0, seed=1))
    async with running(sb) as fuul:
        result = await fuul.send_event("x", evm_user, dedup_id="d-1")
    assert result == SendResult("d-1", duplicate=False)
    assert statuses(sb) == [0, 201]  # 0: no response was sent
    assert sb.stored_count("d-1") == 1


async def test_dropped_connection_after_store_comes_back_as_duplicate_and_stored_once(
    evm_user: User,
) -> None:
    # The first attempt is stored, then its connection dropped: the client never learns
    # it succeeded, sends again with the same dedup id, and gets 409.
    sb = Sandbox(faults=Faults(drop_rate=0.5, drop_after_store=1.0, seed=1))
    async with running(sb) as fuul:
        result = await fuul.send_event("x", evm_user, dedup_id="d-1")
    assert result == SendResult("d-1", duplicate=True)
    assert statuses(sb) == [0, 409]
    assert sb.stored_count("d-1") == 1
    assert sb.seen_count("d-1") == 2


async def test_dropped_batch_after_store_reports_every_event_skipped_on_retry(
    evm_user: User,
) -> None:
    sb = Sandbox(faults=Faults(drop_rate=0.5, drop_after_store=1.0, seed=1))
    async with running(sb) as fuul:
        events = [Event("x", evm_user, f"db-{i}") for i in range(4)]
        assert await fuul.send_batch(events) == BatchResult(ingested=0, skipped=4)
    assert sb.events == events


async def test_many_events_with_random_drops_are_each_stored_exactly_once(
    evm_user: User,
) -> None:
    sb = Sandbox(faults=Faults(drop_rate=0.3, drop_after_store=0.5, seed=7))
    async with running(sb) as fuul:
        results = await asyncio.gather(
            *(fuul.send_event("x", evm_user, dedup_id=f"r-{i}") for i in range(20))
        )
    assert sb.count("events", 0) > 0  # some attempts were dropped
    assert [r.dedup_id for r in results] == [f"r-{i}" for i in range(20)]
    assert sorted(sb.stored_ids()) == sorted(f"r-{i}" for i in range(20))
    assert all(sb.stored_count(f"r-{i}") == 1 for i in range(20))


async def test_request_that_always_hangs_raises_transport_error_after_the_attempts(
    evm_user: User,
) -> None:
    sb = Sandbox(faults=Faults(hang_rate=1.0))
    retry = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02)
    async with running(sb, timeout=0.2, retry=retry) as fuul:
        with pytest.raises(TransportError, match="timed out"):
            await asyncio.wait_for(fuul.send_event("x", evm_user, dedup_id="h-1"), HANG)
    assert statuses(sb) == [0, 0]  # two attempts, each given up on by the client
    assert sb.stored_ids() == []


async def test_garbage_2xx_bodies_are_not_proof_the_sends_are_resent(evm_user: User) -> None:
    """Every 2xx is garbage (stored, then an HTML page or cut JSON): not the API's answer,
    so the client resends with the same dedup ids and the server skips them."""
    sb = Sandbox(faults=Faults(garbage_rate=1.0), record_bodies=True)
    async with running(sb, retry=FEW_RETRIES) as fuul:
        # Stored by the first request; the resend meets the known dedup id: a 409.
        assert await fuul.send_event("x", evm_user, dedup_id="g-1") == SendResult("g-1", True)
        assert statuses(sb) == [201, 409]
        # A batch's resends are 2xx too (all skipped), garbage again: after the policy's
        # attempts, an error; the events were stored once, by the first request.
        events = [Event("x", evm_user, f"g-{i}") for i in range(2, 5)]
        with pytest.raises(TransportError, match="not the API's answer"):
            await fuul.send_batch(events)
        batches = [r.body for r in sb.requests if r.path == "/api/v1/events/batch"]
        assert len(batches) == FEW_RETRIES.max_attempts and len(set(batches)) == 1
        # The status query's answer IS its body: retried, never guessed, then an error.
        with pytest.raises(TransportError, match="not the API's answer"):
            await fuul.event_status(evm_user, "x")
        assert statuses(sb, "/api/v1/events/status") == [200] * FEW_RETRIES.max_attempts
    assert sorted(sb.stored_ids()) == ["g-1", "g-2", "g-3", "g-4"]
    assert all(sb.seen_count(f"g-{i}") == FEW_RETRIES.max_attempts for i in range(2, 5))


async def test_garbage_2xx_bodies_now_and_then_lose_nothing_and_store_nothing_twice(
    evm_user: User,
) -> None:
    """Half the 2xx are garbage after the store: tracked events and direct calls are
    resent until a readable answer; each ends stored once, counted delivered or
    duplicate."""
    sb = Sandbox(limits=FAST_LIMITS, faults=Faults(garbage_rate=0.5, seed=11))
    # Enough attempts that a run of garbage never outlasts the policy.
    patient = RetryPolicy(max_attempts=100, initial_backoff=0.005, max_backoff=0.05)
    async with running(sb, retry=patient) as fuul:
        tracked = [fuul.track("x", evm_user, args={"i": i}) for i in range(40)]
        assert await fuul.flush(timeout=10)
        single = await fuul.send_event("x", evm_user, dedup_id="g-1")
        assert single.dedup_id == "g-1"
        events = [Event("x", evm_user, f"g-{i}") for i in range(2, 12)]
        result = await fuul.send_batch(events)
        assert result.ingested + result.skipped == 10
        assert await fuul.event_status(evm_user, "x") is True
        s = fuul.stats()
    assert s.tracked == s.delivered + s.duplicates == 40 and s.failed == 0, s
    assert s.retries > 0 and s.duplicates > 0, s  # resent, and the server knew the ids
    ids = [*tracked, *(f"g-{i}" for i in range(1, 12))]
    assert sorted(sb.stored_ids()) == sorted(ids)
    assert all(sb.stored_count(i) == 1 for i in ids)
    assert any(sb.seen_count(i) > 1 for i in ids)  # resent with the same dedup ids


# -- regressions of bugs found by these tests -----------------------------------------------------------------------------------


async def test_cancelled_send_event_gives_its_rate_limit_slot_back(evm_user: User) -> None:
    sb = Sandbox(faults=Faults(hang_rate=1.0))
    one_slot = Limits(
        single=RateLimit(1, 0.05), batch=RateLimit(1, 0.05), status=RateLimit(1, 0.05)
    )
    async with running(sb, limits=one_slot) as fuul:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(fuul.send_event("x", evm_user, dedup_id="c-1"), 0.1)
        sb.faults.hang_rate = 0.0
        # The slot of the abandoned request is free again 50 ms after it ended; were it
        # held for good, this would wait forever (the deadline only catches that).
        result = await asyncio.wait_for(fuul.send_event("x", evm_user, dedup_id="c-2"), HANG)
        assert result == SendResult("c-2")


async def test_track_refuses_an_args_key_that_cannot_be_encoded(evm_user: User) -> None:
    async with running(Sandbox(), close_timeout=0.2) as fuul:
        with pytest.raises(ValidationError):
            fuul.track("x", evm_user, dedup_id="s-1", args={"bad\ud800key": 1})


async def test_a_refused_batch_says_which_events_the_server_named(evm_user: User) -> None:
    async with running(Sandbox(), check_identifier_format=False) as fuul:
        events = [Event("trade", evm_user, f"b-{i}") for i in range(5)]
        events[3] = Event("trade", User("0xbad", "evm_address"), "b-3")
        with pytest.raises(BadRequestError) as info:
            await fuul.send_batch(events)
    bad = info.value.event_errors(len(events))
    assert bad is not None
    assert list(bad) == [3]
    assert bad[3][0].startswith("[3].user.identifier")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (["[0].name: too long", "[2].user: bad", "[2].args: bad"], {0: [...], 2: [..., ...]}),
        (["3.user.identifier must be an address"], {3: [...]}),
        (["[1].name: bad", "body too large"], None),  # one names no event
        (["[7].name: bad"], None),  # outside a batch of 5
        ("not a list", None),
        (None, None),
    ],
)
def test_event_errors_parses_indexed_messages(message: object, expected: object) -> None:
    found = BadRequestError(400, message).event_errors(5)  # type: ignore[arg-type]
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert {k: len(v) for k, v in found.items()} == {
            k: len(v)
            for k, v in expected.items()  # type: ignore[attr-defined]
        }
