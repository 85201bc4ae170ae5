"""Tracking events, ``?project_id=``, scopes, and the read endpoints (event pipeline,
conversions): against the sandbox, and with the wire pinned by aioresponses."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from aioresponses import aioresponses

from aiofuul import (
    ClientConfig,
    Event,
    FuulClient,
    Limits,
    PermissionDeniedError,
    RateLimit,
    TransportError,
    ValidationError,
)
from aiofuul.sandbox import Sandbox
from conftest import API_KEY, EVM, FAST_LIMITS, FAST_RETRY, fast_config
from test_wire import (
    ATTEMPTS,
    BASE,
    EVENTS_URL,
    TINY_LIMITS,
    _Mock,
    calls,
    only_call,
    wire_config,
)

PIPELINE_URL = BASE + "events/pipeline"
CONVERSIONS_URL = BASE + "conversions"
TID = "V1StGXR8_Z5jdHi6B-myT"
PID = "550e8400-e29b-41d4-a716-446655440000"


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with _Mock() as m:
        yield m


#: The wire tests' 10 ms windows, for the read lanes too: a 429 costs milliseconds.
READ_LIMITS = dataclasses.replace(
    TINY_LIMITS, pipeline=RateLimit(1000, 0.01), conversions=RateLimit(1000, 0.01)
)


@pytest_asyncio.fixture
async def wired(mocked: aioresponses) -> AsyncIterator[FuulClient]:
    config = wire_config(limits=READ_LIMITS)
    async with FuulClient(API_KEY, base_url=BASE, config=config) as client:
        yield client


# -- tracking events and project scope ----------------------------------------------------


async def test_connect_wallet_from_a_backend_is_sent_with_its_metadata(
    sandbox: Sandbox, client: FuulClient
) -> None:
    dedup = client.track(
        "connect_wallet",
        EVM,
        metadata={"tracking_id": TID, "project_id": PID},
        signature="0xabc",
        signature_message="Accept referral from Fuul",
        account_chain_id=8453,
    )
    pageview = client.track("pageview", metadata={"tracking_id": TID}, args={"page": "/"})
    assert await client.flush(5)
    assert sandbox.stored_count(dedup) == sandbox.stored_count(pageview) == 1
    stored = {e.dedup_id: e for e in sandbox.events}
    assert stored[dedup].metadata == {"tracking_id": TID, "project_id": PID}
    assert stored[dedup].account_chain_id == 8453
    assert stored[pageview].user is None


async def test_an_event_nobody_can_be_credited_with_is_refused_before_queueing(
    client: FuulClient,
) -> None:
    with pytest.raises(ValidationError, match=r"user: is required.*tier 1"):
        client.track("pageview", args={"page": "/"})
    assert client.stats().tracked == 0


async def test_project_id_of_the_client_and_of_a_call_become_the_query(
    mocked: aioresponses,
) -> None:
    mocked.post(EVENTS_URL + f"?project_id={PID}", status=201)
    mocked.post(EVENTS_URL + "?project_id=other", status=201)
    config = wire_config()
    async with FuulClient(API_KEY, base_url=BASE, config=config, project_id=PID) as fuul:
        await fuul.send_event("trade", EVM, dedup_id="t-1")
        await fuul.send_event("trade", EVM, dedup_id="t-2", project_id="other")
    first, second = calls(mocked, "POST", EVENTS_URL)
    assert first.kwargs["params"] == {"project_id": PID}
    assert second.kwargs["params"] == {"project_id": "other"}
    assert json.loads(second.kwargs["data"])["project_id"] == "other"
    assert "project_id" not in json.loads(first.kwargs["data"])


async def test_sandbox_records_the_project_of_tracked_events(sandbox: Sandbox) -> None:
    async with FuulClient(
        API_KEY, base_url=sandbox.url, config=fast_config(), project_id=PID
    ) as fuul:
        fuul.track("trade", EVM)
        assert await fuul.flush(5)
    assert {r.project_id for r in sandbox.requests} == {PID}


BRIEF = dataclasses.replace(FAST_RETRY, max_elapsed=0.5)


@pytest.mark.parametrize(
    ("name", "scope"),
    [("trade", "send:trigger_event"), ("connect_wallet", "send:tracking_event")],
)
async def test_a_403_names_the_scope_the_event_needs(name: str, scope: str) -> None:
    keys = {API_KEY: ["read-only"]}
    async with (
        Sandbox(limits=FAST_LIMITS, keys=keys) as sb,
        # A refused key's tracked events wait up to max_elapsed: keep it short.
        FuulClient(API_KEY, base_url=sb.url, config=fast_config(retry=BRIEF)) as fuul,
    ):
        with pytest.raises(PermissionDeniedError, match=scope) as info:
            await fuul.send_event(name, EVM, metadata={"tracking_id": TID})
        assert info.value.needed_scope == scope
        errors: list[BaseException] = []
        fuul.track(name, EVM)
        fuul._sender.ledger.on_error = lambda events, error: errors.append(error)
        assert await fuul.flush(5)
    assert scope in str(errors[0])


async def test_a_tracking_key_cannot_send_trigger_events_in_the_sandbox() -> None:
    keys = {API_KEY: ["send:tracking_event"]}
    async with (
        Sandbox(limits=FAST_LIMITS, keys=keys) as sb,
        FuulClient(API_KEY, base_url=sb.url, config=fast_config()) as fuul,
    ):
        await fuul.send_event("pageview", metadata={"tracking_id": TID})
        with pytest.raises(PermissionDeniedError, match="send:trigger_event"):
            await fuul.send_event("trade", EVM)


# -- the event pipeline -------------------------------------------------------------------


async def test_event_pipeline_is_none_until_the_event_exists(
    sandbox: Sandbox, client: FuulClient
) -> None:
    assert await client.event_pipeline(dedup_id="swap-1", event_name="swap") is None
    await client.send_event("swap", EVM, dedup_id="swap-1")
    found = await client.event_pipeline(dedup_id="swap-1", event_name="swap")
    assert found is not None
    assert found.trigger_executions[0].status == "success"
    assert found.attributions and found.payouts
    assert found.event is not None and found.event["dedup_id"] == "swap-1"
    by_id = await client.event_pipeline(sandbox.event_id("swap-1"))
    assert by_id is not None and by_id.event == found.event
    # Names are case-sensitive, as on the server.
    assert await client.event_pipeline(dedup_id="swap-1", event_name="Swap") is None


async def test_event_pipeline_keeps_fields_nobody_published(
    sandbox: Sandbox, client: FuulClient
) -> None:
    await client.send_event("swap", EVM, dedup_id="swap-2")
    found = await client.event_pipeline(dedup_id="swap-2", event_name="swap")
    assert found is not None
    assert "project_id" in found.raw
    assert found.trigger_executions[0].raw.get("sandbox") is True


async def test_wait_for_pipeline_polls_until_attribution(
    sandbox: Sandbox, client: FuulClient
) -> None:
    sandbox.pipeline_delay = 0.3
    await client.send_event("swap", EVM, dedup_id="swap-3")
    first = await client.event_pipeline(dedup_id="swap-3", event_name="swap")
    assert first is not None and first.trigger_executions[0].status == "pending"
    done = await client.wait_for_pipeline(
        dedup_id="swap-3", event_name="swap", timeout=5, interval=0.05
    )
    assert done is not None and done.attributions
    polls = sandbox.count("events/pipeline", 200)
    assert 3 <= polls <= 12


async def test_wait_for_pipeline_gives_the_last_answer_at_the_timeout(
    sandbox: Sandbox, client: FuulClient
) -> None:
    sandbox.pipeline_status = "failed"
    await client.send_event("swap", EVM, dedup_id="swap-4")
    last = await client.wait_for_pipeline(
        dedup_id="swap-4", event_name="swap", timeout=0.2, interval=0.05
    )
    assert last is not None
    assert last.trigger_executions[0].status == "failed"
    assert last.trigger_executions[0].status_details
    assert not last.attributions
    assert await client.wait_for_pipeline(event_id="nope", timeout=0.1, interval=0.05) is None


async def test_event_pipeline_waits_out_its_own_rate_limit() -> None:
    limits = Limits(pipeline=RateLimit(2, 0.3)).scaled(1)
    async with (
        Sandbox(limits=limits) as sb,
        FuulClient(API_KEY, base_url=sb.url, config=fast_config(limits=limits)) as fuul,
    ):
        for _ in range(5):
            assert await fuul.event_pipeline(event_id="missing") is None
    assert sb.count("events/pipeline", 429) == 0
    assert sb.count("events/pipeline", 404) == 5


def test_event_pipeline_needs_one_way_to_name_the_event() -> None:
    from aiofuul.api.events_reads import pipeline_query

    with pytest.raises(ValueError, match="event_id"):
        pipeline_query(None, "d", None)
    with pytest.raises(ValueError, match="not both"):
        pipeline_query("e", "d", "n")
    assert pipeline_query(None, "d", "n") == {"dedup_id": "d", "event_name": "n"}


async def test_event_pipeline_wire(wired: FuulClient, mocked: aioresponses) -> None:
    body = {
        "event": {"id": "e1", "name": "swap", "extra": 1},
        "trigger_executions": [{"status": "success", "status_details": None, "new": "x"}],
        "attributions": [{"id": "a1"}],
        "payouts": "not a list",
        "movements": [],
        "unheard_of": {"a": 1},
    }
    mocked.get(PIPELINE_URL + "?dedup_id=d-1&event_name=swap", status=200, payload=body)
    found = await wired.event_pipeline(dedup_id="d-1", event_name="swap")
    call = only_call(mocked, "GET", PIPELINE_URL)
    assert call.kwargs["params"] == {"dedup_id": "d-1", "event_name": "swap"}
    assert found is not None
    assert found.trigger_executions[0].raw["new"] == "x"
    assert found.payouts == []  # a field of the wrong type is empty, not fatal
    assert found.raw["unheard_of"] == {"a": 1}


async def test_event_pipeline_wire_404_429_and_garbage(
    wired: FuulClient, mocked: aioresponses
) -> None:
    url = PIPELINE_URL + "?event_id=e1"
    mocked.get(url, status=404, payload={"message": "Event not found"})
    assert await wired.event_pipeline("e1") is None
    mocked.get(url, status=429, headers={"Retry-After": "0"})
    mocked.get(url, status=200, payload={"trigger_executions": []})
    found = await wired.event_pipeline("e1")
    assert found is not None and found.trigger_executions == []
    # A 2xx that is not the API's answer is retried like a transport error: the next
    # answer counts, and one that never comes raises after every attempt.
    mocked.get(url, status=200, body=b"<html>proxy</html>")
    mocked.get(url, status=200, payload={"trigger_executions": [{"status": "pending"}]})
    found = await wired.event_pipeline("e1")
    assert found is not None and found.trigger_executions[0].status == "pending"
    before = len(calls(mocked, "GET", PIPELINE_URL))
    mocked.get(url, status=200, body=b"<html>proxy</html>", repeat=True)
    with pytest.raises(TransportError, match="not the API's answer"):
        await wired.event_pipeline("e1")
    assert len(calls(mocked, "GET", PIPELINE_URL)) - before == ATTEMPTS


# -- conversions and event names -------------------------------------------------------


async def test_conversions_list_triggers(sandbox: Sandbox, client: FuulClient) -> None:
    found = await client.conversions()
    names = {t.name for c in found for t in c.triggers}
    assert {"trade", "swap", "pageview"} <= names
    assert found[0].raw["payout_terms"] == []


async def test_conversions_wire(wired: FuulClient, mocked: aioresponses) -> None:
    payload = [{"id": "c1", "name": "Swaps", "triggers": [{"name": "swap", "odd": 1}, {}]}]
    mocked.get(CONVERSIONS_URL, status=200, payload=payload)
    found = await wired.conversions()
    assert [t.name for t in found[0].triggers] == ["swap"]
    assert found[0].triggers[0].raw["odd"] == 1


async def test_check_event_names_warns_once_per_unknown_name(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aiofuul")
    config = fast_config(check_event_names=True)
    async with FuulClient(API_KEY, base_url=sandbox.url, config=config) as fuul:
        fuul.track("trade", EVM)
        fuul.track("Trade", EVM)
        fuul.track("Trade", EVM)
        assert await fuul.flush(5)
    warned = [r.getMessage() for r in caplog.records if "no trigger" in r.getMessage()]
    assert len(warned) == 1 and "'Trade'" in warned[0] and "case-sensitive" in warned[0]
    assert len(sandbox.events) == 3  # warned, not refused: the server decides


async def test_check_event_names_refuses_when_strict(sandbox: Sandbox) -> None:
    config = fast_config(check_event_names=True, strict=True)
    async with FuulClient(API_KEY, base_url=sandbox.url, config=config) as fuul:
        with pytest.raises(ValidationError, match="case-sensitive") as info:
            fuul.track("Trade", EVM)
        assert info.value.tier == 2
        with pytest.raises(ValidationError):
            await fuul.send_batch([Event("Trade", EVM, dedup_id="b-1")])
        fuul.track("trade", EVM)
        assert fuul.stats().tracked == 1


async def test_check_event_names_goes_on_when_conversions_cannot_be_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiofuul")
    async with Sandbox(limits=FAST_LIMITS, keys={"other": ["service_role"]}) as sb:
        config = fast_config(check_event_names=True)
        async with FuulClient(API_KEY, base_url=sb.url, config=config) as fuul:
            assert fuul._events.trigger_names is None
    assert "could not fetch the conversions" in caplog.text


def test_strict_is_off_by_default() -> None:
    assert ClientConfig().strict is False
    assert ClientConfig().check_event_names is False
