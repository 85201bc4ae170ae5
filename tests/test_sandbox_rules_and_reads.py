"""The sandbox's own table of the documented variants, its scopes, its records, and the
read endpoints (pipeline, conversions), driven by a plain aiohttp client over loopback."""

from __future__ import annotations

import ast
import inspect
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest
import pytest_asyncio

from aiofuul.engine.limits import Limits, RateLimit
from aiofuul.sandbox import Faults, Sandbox, documented, parsing, reads, sends, server
from aiofuul.sandbox.documented import judge_event
from aiofuul.wire.models import Event
from conftest import wait_until

EVM = "0x52908400098527886E0F7030069857D2E4169EE7"
USDC_CONTRACT = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
AUTH = {"Authorization": "Bearer k"}
JSON_HEADERS = {"Content-Type": "application/json"}


def body(dedup_id: str, name: str = "custom_conversion", **extra: Any) -> dict[str, Any]:
    """A trigger event body with the standard user; ``extra`` adds or replaces fields."""
    event: dict[str, Any] = {
        "name": name,
        "user": {"identifier": EVM, "identifier_type": "evm_address"},
        "dedup_id": dedup_id,
    }
    event.update(extra)
    return event


def value(currency: object, amount: str = "1000000") -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


# Every shape of API-NOTES "Documented variants", written out as the sources show them.
DOCUMENTED: dict[str, dict[str, Any]] = {
    "usdc-by-name": body("v-1", args={"value": value({"name": "USDC"})}),
    "usd-by-name": body("v-2", args={"value": value({"name": "USD"}, "25")}),
    "point-by-name": body("v-3", args={"value": value({"name": "POINT"}, "500")}),
    "evm-contract-chain-string": body(
        "v-4",
        args={
            "value": value(
                {
                    "identifier": USDC_CONTRACT.lower(),
                    "identifier_type": "evm_contract",
                    "chain_identifier": "evm:1",
                }
            )
        },
    ),
    "evm-address-chain-number": body(
        "v-5",
        args={
            "value": value(
                {
                    "identifier": USDC_CONTRACT,
                    "identifier_type": "evm_address",
                    "chain_identifier": 1,
                }
            ),
            "revenue": value(
                {
                    "identifier": USDC_CONTRACT,
                    "identifier_type": "evm_address",
                    "chain_identifier": 1,
                },
                "100000",
            ),
        },
    ),
    "name-with-chain-id": body(
        "v-6",
        args={
            "value": value({"name": "USDC", "chain_id": 1}),
            "revenue": value({"name": "USDC", "chain_id": 1}, "100000"),
        },
    ),
    "bare-currency-user-address-string-timestamp": {
        "args": {"value": value("USDC"), "revenue": value("USDC", "100000")},
        "name": "trigger-event-name",
        "user_address": "0x95222290DD7278Aa3Ddd389Cc1E1d165CC4BAfe5",
        "dedup_id": "v-7",
        "timestamp": "1710875677000",
    },
    "fiat-decimal": body("v-8", args={"value": value({"name": "USD"}, "12.50")}),
    "fiat-decimal-bare": body("v-9", args={"revenue": value("USD", "-3.75")}),
    "negative-integer-amount": body("v-10", args={"value": value({"name": "POINT"}, "-5")}),
    "stellar-contract-currency": body(
        "v-11",
        args={
            "value": value(
                {
                    "identifier": "CCW67TSZV3SSS2HXMBQ5JFGCKJNXKZM7UQUWUZPUTHXSTZLEO7SJMI75",
                    "identifier_type": "stellar_contract",
                    "chain_identifier": "stellar:pubnet",
                }
            )
        },
    ),
    "solana-mint-currency": body(
        "v-12",
        args={
            "value": value(
                {
                    "identifier": "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
                    "identifier_type": "solana_mint",
                    "chain_identifier": "solana:mainnet",
                }
            )
        },
    ),
    "standard-args": body(
        "v-13",
        args={
            "transaction_hash": "0x5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060",
            "chain_id": 1,
            "github_username": "octocat",
            "discord_username": "fuul_fan.42",
        },
    ),
    "token-id-string": body("v-14", args={"token_id": "4521"}),
    "token-id-number": body("v-15", args={"token_id": 4521}),
    "other-args": body("v-16", args={"page": "/trade", "size": 3, "ratio": 0.5, "vip": True}),
    "int-timestamp": body("v-17", timestamp=1710875677000),
    "pageview-no-user": {
        "name": "pageview",
        "dedup_id": "v-18",
        "args": {"page": "/", "locationOrigin": "https://app.example.xyz"},
        "metadata": {
            "tracking_id": "V1StGXR8_Z5jdHi6B-myT",
            "affiliate_id": "defi-dan",
            "referrer_url": "",
            "project_id": "550e8400-e29b-41d4-a716-446655440000",
            "source": "twitter",
            "category": "kol",
            "title": "summer",
            "tag": "a",
            "referrer": "defi-dan",
            "utm_medium": {"unknown": "keys pass"},
        },
    },
    "connect-wallet-signed": {
        "name": "connect_wallet",
        "user": {"identifier": EVM, "identifier_type": "evm_address"},
        "dedup_id": "v-19",
        "metadata": {"tracking_id": "V1StGXR8_Z5jdHi6B-myT"},
        "signature": "0x9a47",
        "signature_message": "Accept affiliate on 18-Aug 2023 00:00:00",
        "signature_public_key": "02abcdef",
        "account_chain_id": 1,
    },
    "connect-wallet-user-address": {
        "metadata": {"tracking_id": "abc123"},
        "name": "connect_wallet",
        "user_address": EVM,
        "dedup_id": "v-20",
        "signature": "0xe4e4",
        "signature_message": "Accept affiliate on 18-Aug 2023 00:00:00",
        "account_chain_id": 1,
    },
    "sdk-value-number": {
        "name": "my_event",
        "dedup_id": "v-21",
        "args": {"value": 10},
        "metadata": {"tracking_id": "V1StGXR8_Z5jdHi6B-myT"},
    },
    "solana-user": body(
        "v-22",
        user={
            "identifier": "7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV",
            "identifier_type": "solana_address",
        },
    ),
    "xrpl-user": body(
        "v-23",
        user={
            "identifier": "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh",
            "identifier_type": "xrpl_address",
        },
    ),
    "sui-user": body(
        "v-24", user={"identifier": "0x" + "ab" * 32, "identifier_type": "sui_address"}
    ),
    "stellar-user": body(
        "v-25",
        user={
            "identifier": "GA7QYNF7SOWQ3GLR2BGMZEHXAVIRZA4KVWLTJJFC7MGXUA74P7UJVSGZ",
            "identifier_type": "stellar_address",
        },
    ),
    "email-user": body("v-26", user={"identifier": "ada@example.io", "identifier_type": "email"}),
}

# (what to change in a valid body, the field the message must name)
REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "unknown-identifier-type": (
        {"user": {"identifier": "+15551234567", "identifier_type": "phone"}},
        "user.identifier_type: must be one of",
    ),
    "stellar-contract-user": (
        {
            "user": {
                "identifier": "CCW67TSZV3SSS2HXMBQ5JFGCKJNXKZM7UQUWUZPUTHXSTZLEO7SJMI75",
                "identifier_type": "stellar_contract",
            }
        },
        "user.identifier_type: stellar_contract identifies currencies",
    ),
    "name-too-long": ({"name": "n" * 201}, "name: must be 1 to 200 characters, not 201"),
    "nul-in-name": ({"name": "dep\x00osit"}, "name: must not contain a NUL character"),
    "timestamp-in-seconds": ({"timestamp": 1710875677}, "timestamp: looks like seconds"),
    "nested-object-arg": ({"args": {"extra": {"a": 1}}}, "args.extra: must be a string"),
    "list-arg": ({"args": {"extra": [1, 2]}}, "args.extra: must be a string"),
    "null-arg": ({"args": {"extra": None}}, "args.extra: must be a string"),
    "currency-eur": (
        {"args": {"value": value({"name": "EUR"})}},
        "args.value.currency.name: must be one of POINT|USD|USDC",
    ),
    "decimal-usdc": (
        {"args": {"value": value({"name": "USDC"}, "1.50")}},
        "args.value.amount: must be an integer string",
    ),
    "unknown-currency-shape": (
        {"args": {"revenue": value({"symbol": "USDC"})}},
        "args.revenue.currency: must be",
    ),
    "amount-extra-key": (
        {"args": {"value": {**value("USDC"), "decimals": 6}}},
        "args.value: must be",
    ),
    "chain-id-string": ({"args": {"chain_id": "1"}}, "args.chain_id: must be an integer"),
    "no-one-to-attribute": ({"user": None}, "user: is required"),
    "empty-dedup-id": ({"dedup_id": ""}, "dedup_id: must be 1 to 200 characters"),
    "bad-evm-format": (
        {"user": {"identifier": "0x12", "identifier_type": "evm_address"}},
        "user.identifier: must be an evm_address",
    ),
    "metadata-number": ({"metadata": {"tracking_id": 7}}, "metadata.tracking_id: must be"),
}


def refused_body(change: dict[str, Any], dedup_id: str = "r-1") -> dict[str, Any]:
    event = body(dedup_id)
    for key, val in change.items():
        if val is None:
            del event[key]
        else:
            event[key] = val
    return event


@pytest_asyncio.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sandbox:
        yield sandbox


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield session


async def send(
    http: aiohttp.ClientSession,
    url: str,
    payload: object = None,
    *,
    raw: bytes | None = None,
    key: str | None = None,
    params: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """POST raw JSON bytes; the status and the decoded body (or the raw bytes)."""
    data = raw if raw is not None else msgspec.json.encode(payload)
    headers = dict(JSON_HEADERS)
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with http.post(url, data=data, headers=headers, params=params) as resp:
        content = await resp.read()
    try:
        return resp.status, msgspec.json.decode(content) if content else None
    except msgspec.DecodeError:
        return resp.status, content


async def get(
    http: aiohttp.ClientSession, url: str, params: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with http.get(url, params=params) as resp:
        return resp.status, msgspec.json.decode(await resp.read())


# -- (a) every documented variant is accepted ---------------------------------------------
def test_the_sandbox_does_not_import_the_client_validation() -> None:
    for module in (documented, parsing, reads, sends, server):
        tree = ast.parse(inspect.getsource(module))
        imported = [
            node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        ] + [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [name for name in imported if "validation" in name], module.__name__


@pytest.mark.parametrize("variant", DOCUMENTED.values(), ids=DOCUMENTED.keys())
def test_judge_accepts_every_documented_variant(variant: dict[str, Any]) -> None:
    event = msgspec.convert(variant, Event)
    assert judge_event(event, check_format=True) == []
    assert judge_event(event, check_format=False) == []


async def test_documented_variants_are_stored_single_and_batch(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    for variant in DOCUMENTED.values():
        status, answer = await send(http, sb.url + "events", variant)
        assert (status, answer) == (201, {}), (variant["dedup_id"], answer)
    batch = [{**variant, "dedup_id": "b-" + variant["dedup_id"]} for variant in DOCUMENTED.values()]
    assert await send(http, sb.url + "events/batch", batch) == (
        201,
        {"ingested_events": len(batch)},
    )
    assert len(sb.events) == 2 * len(DOCUMENTED)
    assert sb.count(status=400) == 0


# -- (b) what a strict server refuses -----------------------------------------------------------
@pytest.mark.parametrize(("change", "start"), REFUSED.values(), ids=REFUSED.keys())
def test_judge_refuses_naming_the_field(change: dict[str, Any], start: str) -> None:
    messages = judge_event(msgspec.convert(refused_body(change), Event), check_format=True)
    assert len(messages) == 1
    assert messages[0].startswith(start), messages


@pytest.mark.parametrize(("change", "start"), REFUSED.values(), ids=REFUSED.keys())
async def test_refusals_over_http_single_and_batch(
    sb: Sandbox, http: aiohttp.ClientSession, change: dict[str, Any], start: str
) -> None:
    status, answer = await send(http, sb.url + "events", refused_body(change))
    assert status == 400
    assert answer["error"] == "Bad Request"
    assert [m[: len(start)] for m in answer["message"]] == [start]
    batch = [body("ok-0"), refused_body(change, "r-2")]
    status, answer = await send(http, sb.url + "events/batch", batch)
    assert status == 400
    assert [m[: len(start) + 4] for m in answer["message"]] == ["[1]." + start]
    assert sb.events == []


async def test_format_check_off_still_checks_the_type(http: aiohttp.ClientSession) -> None:
    async with Sandbox(check_format=False) as sb:
        bad_format = refused_body(REFUSED["bad-evm-format"][0])
        assert (await send(http, sb.url + "events", bad_format))[0] == 201
        status, answer = await send(
            http, sb.url + "events", refused_body(REFUSED["unknown-identifier-type"][0], "r-3")
        )
        assert status == 400
        assert answer["message"][0].startswith("user.identifier_type:")


async def test_status_query_refuses_address_naming_evm_address(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    params = {"user_identifier": EVM, "user_identifier_type": "address", "event_name": "x"}
    status, answer = await get(http, sb.url + "events/status", params)
    assert status == 400
    assert answer["message"][0].startswith("user_identifier_type: ")
    assert "evm_address" in answer["message"][0]
    params["user_identifier_type"] = "stellar_contract"
    status, answer = await get(http, sb.url + "events/status", params)
    assert status == 400
    assert "currencies" in answer["message"][0]


# -- (c) scopes ---------------------------------------------------------------------------------------
async def test_trigger_and_tracking_scopes(http: aiohttp.ClientSession) -> None:
    keys = {
        "trig": {"send:trigger_event"},
        "track": {"send:tracking_event"},
        "svc": {"service_role"},
        "ro": set[str](),
    }
    pageview = DOCUMENTED["pageview-no-user"]
    lacks = "Forbidden: this API key lacks the {} scope"
    async with Sandbox(keys=keys) as sb:
        url = sb.url + "events"
        status, answer = await send(http, url, pageview, key="trig")
        assert (status, answer) == (
            403,
            {"message": lacks.format("send:tracking_event"), "statusCode": 403},
        )
        status, answer = await send(http, url, body("t-1", name="deposit"), key="track")
        assert (status, answer["message"]) == (403, lacks.format("send:trigger_event"))
        # A batch needs every event's scope.
        mixed = [body("t-2", name="deposit"), {**pageview, "dedup_id": "t-3"}]
        status, answer = await send(http, sb.url + "events/batch", mixed, key="trig")
        assert (status, answer["message"]) == (403, lacks.format("send:tracking_event"))
        assert sb.events == []
        assert sb.seen_count("t-2") == 0
        # Each key sends its own kind; service_role sends both.
        assert (await send(http, url, body("t-4", name="deposit"), key="trig"))[0] == 201
        assert (await send(http, url, pageview, key="track"))[0] == 201
        assert (await send(http, sb.url + "events/batch", mixed, key="svc"))[0] == 201
        # No send scope at all: refused before the body is even read.
        status, answer = await send(http, url, raw=b"not json", key="ro")
        assert status == 403
        assert "send:trigger_event" in answer["message"]
        assert "send:tracking_event" in answer["message"]
        assert sb.stored_ids() == ["t-4", pageview["dedup_id"], "t-2", "t-3"]


# -- (d) what is recorded -------------------------------------------------------------------------------
async def test_project_id_is_recorded_on_every_endpoint(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    project = {"project_id": "550e8400-e29b-41d4-a716-446655440000"}
    assert (await send(http, sb.url + "events", body("p-1"), params=project))[0] == 201
    assert (await send(http, sb.url + "events/batch", [body("p-2")], params=project))[0] == 201
    status_params = {"user_identifier": EVM, "user_identifier_type": "evm_address"}
    assert (
        await get(http, sb.url + "events/status", {**status_params, "event_name": "x", **project})
    )[0] == 200
    pipeline = {"dedup_id": "p-1", "event_name": "custom_conversion", **project}
    assert (await get(http, sb.url + "events/pipeline", pipeline))[0] == 200
    assert (await get(http, sb.url + "conversions", project))[0] == 200
    assert (await get(http, sb.url + "nowhere", project))[0] == 404
    assert (await send(http, sb.url + "events", body("p-3")))[0] == 201
    assert [r.project_id for r in sb.requests] == [project["project_id"]] * 6 + [None]
    assert all(r.body is None for r in sb.requests)


async def test_record_bodies(http: aiohttp.ClientSession) -> None:
    async with Sandbox(record_bodies=True, keys={"k": {"send:trigger_event"}}) as sb:
        raw = msgspec.json.encode(body("rb-1"))
        assert (await send(http, sb.url + "events", raw=raw))[0] == 201
        assert (await send(http, sb.url + "events", raw=b"{oops"))[0] == 400
        assert (await send(http, sb.url + "events", raw=raw, key="nope"))[0] == 401
        assert (await get(http, sb.url + "conversions"))[0] == 200
        assert [(r.status, r.body) for r in sb.requests] == [
            (201, raw),
            (400, b"{oops"),
            (401, raw),
            (200, b""),
        ]


@pytest.mark.parametrize("record_bodies", [False, True])
async def test_body_over_the_cap_is_answered_413_and_recorded(
    http: aiohttp.ClientSession, record_bodies: bool
) -> None:
    async with Sandbox(record_bodies=record_bodies) as sb:
        huge = b'["' + b"x" * (8 * 1024 * 1024) + b'"]'
        try:
            status, answer = await send(http, sb.url + "events/batch", raw=huge)
        except aiohttp.ClientError:
            pass  # the server may close before the client has written it all
        else:
            assert status == 413
            assert answer["statusCode"] == 413
        assert [(r.status, r.events, r.body) for r in sb.requests] == [(413, 0, None)]
        assert (await send(http, sb.url + "events", body("after")))[0] == 201


# -- (e) the pipeline ---------------------------------------------------------------------------------------
async def test_pipeline_404_then_found_by_dedup_id_and_event_id(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    url = sb.url + "events/pipeline"
    by_dedup = {"dedup_id": "pl-1", "event_name": "deposit"}
    not_found = {"message": "Event not found", "statusCode": 404}
    assert await get(http, url, by_dedup) == (404, not_found)
    assert sb.event_id("pl-1") is None
    sent = body("pl-1", name="deposit", args={"value": value({"name": "USDC"})})
    assert (await send(http, sb.url + "events", sent))[0] == 201
    status, answer = await get(http, url, by_dedup)
    assert status == 200
    event_id = sb.event_id("pl-1")
    assert event_id is not None and event_id == sb.event_id("pl-1")
    assert answer["event"] == {**sent, "id": event_id}
    assert await get(http, url, {"event_id": event_id}) == (200, answer)
    assert await get(http, url, {"dedup_id": "pl-1", "event_name": "Deposit"}) == (404, not_found)
    assert await get(http, url, {"event_id": "no-such-id"}) == (404, not_found)
    for params in ({}, {"dedup_id": "pl-1"}, {"event_name": "deposit"}):
        status, bad = await get(http, url, params)
        assert status == 400
        assert "event_id" in bad["message"][0]
    (execution,) = answer["trigger_executions"]
    assert execution["status"] == "success"
    assert execution["status_details"] is None
    assert execution["trigger_name"] == "deposit"
    assert execution["sandbox"] is True  # a field no client knows
    assert "project_id" in answer  # another one
    (attribution,) = answer["attributions"]
    assert attribution["conversion_name"] == "Sandbox conversion"
    assert attribution["conversion_id"] == sb.conversions[0]["id"]
    assert attribution["user_identifier"] == EVM
    assert attribution["attributor"] is None
    (payout,) = answer["payouts"]
    # The payout sb.state made of the event (args carry no amount: 1 point).
    assert (payout["amount"], payout["currency"], payout["status"]) == ("1", "POINT", "accepted")
    (movement,) = answer["movements"]
    assert (movement["payout_id"], movement["dedup_id"]) == (payout["id"], "pl-1")


async def test_pipeline_pending_then_success_then_other_status(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    sb.pipeline_delay = 0.2
    assert (await send(http, sb.url + "events/batch", [body("pd-1", name="trade")]))[0] == 201
    params = {"dedup_id": "pd-1", "event_name": "trade"}
    status, answer = await get(http, sb.url + "events/pipeline", params)
    assert status == 200
    assert answer["trigger_executions"][0]["status"] == "pending"
    assert (answer["attributions"], answer["payouts"]) == ([], [])

    async def processed() -> bool:
        nonlocal answer
        _, answer = await get(http, sb.url + "events/pipeline", params)
        return bool(answer["trigger_executions"][0]["status"] != "pending")

    await wait_until(processed, what="the pipeline's end")
    assert answer["trigger_executions"][0]["status"] == "success"
    assert len(answer["attributions"]) == len(answer["payouts"]) == 1
    sb.pipeline_status = "failed"
    _, answer = await get(http, sb.url + "events/pipeline", params)
    (execution,) = answer["trigger_executions"]
    assert execution["status"] == "failed"
    assert isinstance(execution["status_details"], str) and execution["status_details"]
    assert (answer["attributions"], answer["payouts"]) == ([], [])


async def test_pipeline_and_conversions_have_their_own_limits(
    http: aiohttp.ClientSession,
) -> None:
    limits = Limits(pipeline=RateLimit(2, 1.0), conversions=RateLimit(1, 1.0))
    async with Sandbox(limits=limits, keys={"k": []}) as sb:
        params = {"event_id": "x"}
        assert [(await get(http, sb.url + "events/pipeline", params))[0] for _ in range(3)] == [
            404,
            404,
            429,
        ]
        assert [(await get(http, sb.url + "conversions"))[0] for _ in range(2)] == [200, 429]
        # A read-only key may read; the other endpoints have their own budgets.
        status_params = {"user_identifier": EVM, "user_identifier_type": "evm_address"}
        status, _ = await get(http, sb.url + "events/status", {**status_params, "event_name": "x"})
        assert status == 200


# -- (f) conversions ------------------------------------------------------------------------------------------
async def test_default_conversions(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    status, answer = await get(http, sb.url + "conversions")
    assert status == 200
    (conversion,) = answer
    assert conversion["name"] == "Sandbox conversion"
    assert isinstance(conversion["external_id"], int)
    assert conversion["payout_terms"] == []
    assert {"id", "slug", "created_at", "updated_at"} <= set(conversion)
    names = [trigger["name"] for trigger in conversion["triggers"]]
    assert names == ["trade", "deposit", "swap", "custom_conversion", "pageview", "connect_wallet"]
    assert {trigger["type"] for trigger in conversion["triggers"]} == {"off-chain-event"}
    assert answer == sb.conversions


async def test_custom_conversions(http: aiohttp.ClientSession) -> None:
    custom = [{"id": "c-1", "name": "Deposits", "triggers": [{"name": "deposit"}], "extra": 1}]
    async with Sandbox(conversions=custom) as sb:
        assert await get(http, sb.url + "conversions") == (200, custom)
        assert (await send(http, sb.url + "events", body("cc-1", name="deposit")))[0] == 201
        params = {"dedup_id": "cc-1", "event_name": "deposit"}
        _, answer = await get(http, sb.url + "events/pipeline", params)
        assert answer["attributions"][0]["conversion_id"] == "c-1"
        sb.conversions = []
        assert await get(http, sb.url + "conversions") == (200, [])


# -- (g) 2xx garbage, nothing stored ------------------------------------------------------------------------------
async def test_garbage_without_storing(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    sb.faults = Faults(garbage_rate=1.0, garbage_stores=False)
    for path, payload in (("events", body("gs-1")), ("events/batch", [body("gs-2")])):
        async with http.post(sb.url + path, data=msgspec.json.encode(payload)) as resp:
            assert resp.status == 201
            raw = await resp.read()
        with pytest.raises(msgspec.DecodeError):
            msgspec.json.decode(raw)
    assert sb.events == []
    assert sb.seen_count("gs-1") == sb.seen_count("gs-2") == 0
    # Invalid bodies are still judged.
    assert (await send(http, sb.url + "events", refused_body({"name": "n" * 201})))[0] == 400
    sb.faults.garbage_rate = 0.0
    assert await send(http, sb.url + "events", body("gs-1")) == (201, {})
    assert sb.stored_ids() == ["gs-1"]
