"""Every example body Fuul publishes (tests/data/documented_bodies.json) is accepted by
the client's three ways in, sent as the user wrote it, and stored by the sandbox.

The client's validation runs in strict mode here: a rule stricter than the documents
makes it refuse a documented body, and the test fails. The sandbox judges by its own
table of the documented variants, not by the client's rules.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio

from aiofuul import Event, FuulClient, User
from aiofuul.sandbox import Sandbox
from aiofuul.sandbox.documented import judge_event
from aiofuul.wire.validation import validate_event
from conftest import API_KEY, FAST_LIMITS, fast_config

CORPUS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "documented_bodies.json").read_text()
)
IDS = [entry["id"] for entry in CORPUS]
_FIELDS = (
    "dedup_id",
    "args",
    "timestamp",
    "metadata",
    "user_address",
    "signature",
    "signature_message",
    "signature_public_key",
    "account_chain_id",
    "project_id",
)


def same_json(a: object, b: object) -> bool:
    """Equal as JSON, types included (1 is not 1.0 nor True, "1" is not 1), and objects
    in the same key order (what reaches the server byte for byte)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def with_id(entry: dict[str, Any], suffix: str) -> dict[str, Any]:
    """The entry's body with a dedup id unique to one way in (the same id sent three ways
    would be stored once); bodies published without one get the entry's id."""
    out = dict(entry["body"])
    out["dedup_id"] = f"{out.get('dedup_id', entry['id'])}-{suffix}"
    return out


def call_args(body: dict[str, Any]) -> tuple[str, User | None, dict[str, Any]]:
    user = body.get("user")
    kwargs = {name: body[name] for name in _FIELDS if name in body}
    return body["name"], User(**user) if user else None, kwargs


def sent(sb: Sandbox, dedup_id: str) -> dict[str, Any]:
    """The event object carrying ``dedup_id`` as it arrived in a request body."""
    for request in sb.requests:
        if request.body is None or request.status == 0:
            continue
        data = json.loads(request.body)
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item, dict) and item.get("dedup_id") == dedup_id:
                return item
    raise AssertionError(f"{dedup_id} never reached the sandbox")


def assert_sent_as_written(received: dict[str, Any], body: dict[str, Any]) -> None:
    # The top-level order is the wire schema's; every value, nested order included, is
    # the user's. A timestamp the body left out is the client's stamp (track only).
    assert set(received) - {"timestamp"} == set(body) - {"timestamp"}
    for key, value in body.items():
        assert same_json(received[key], value), (key, received[key], value)


@pytest.fixture
def no_shape_warnings(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.WARNING, logger="aiofuul")
    yield
    shapes = [r.getMessage() for r in caplog.records if "no Fuul document" in r.getMessage()]
    assert not shapes, shapes


@pytest_asyncio.fixture
async def recording() -> AsyncIterator[Sandbox]:
    async with Sandbox(limits=FAST_LIMITS, record_bodies=True) as sb:
        yield sb


def test_the_corpus_covers_every_source() -> None:
    assert {entry["source"] for entry in CORPUS} == {"DG", "OLD", "MCP", "SDK"}
    assert len(CORPUS) >= 20


@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
def test_client_strict_validation_accepts_every_documented_body(entry: dict[str, Any]) -> None:
    event = msgspec.convert(with_id(entry, "v"), Event)
    checked = validate_event(event, strict=True)
    assert same_json(msgspec.to_builtins(checked.args), entry["body"].get("args"))


@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
def test_sandbox_table_accepts_every_documented_body(entry: dict[str, Any]) -> None:
    event = msgspec.convert(with_id(entry, "v"), Event)
    assert judge_event(event, check_format=True) == []


@pytest.mark.usefixtures("no_shape_warnings")
async def test_track_sends_every_documented_body_as_written(recording: Sandbox) -> None:
    bodies = [with_id(entry, "track") for entry in CORPUS]
    async with FuulClient(API_KEY, base_url=recording.url, config=fast_config()) as fuul:
        for body in bodies:
            name, user, kwargs = call_args(body)
            assert fuul.track(name, user, **kwargs) == body["dedup_id"]
        assert await fuul.flush(5)
        assert fuul.stats().delivered == len(bodies)
    for body in bodies:
        assert recording.stored_count(body["dedup_id"]) == 1
        received = sent(recording, body["dedup_id"])
        assert_sent_as_written(received, body)
        if "timestamp" not in body:
            assert type(received["timestamp"]) is int


@pytest.mark.usefixtures("no_shape_warnings")
async def test_send_event_sends_every_documented_body_as_written(recording: Sandbox) -> None:
    async with FuulClient(API_KEY, base_url=recording.url, config=fast_config()) as fuul:
        for entry in CORPUS:
            body = with_id(entry, "send")
            name, user, kwargs = call_args(body)
            result = await fuul.send_event(name, user, **kwargs)
            assert not result.duplicate
            assert recording.stored_count(body["dedup_id"]) == 1
            received = sent(recording, body["dedup_id"])
            assert_sent_as_written(received, body)
            assert set(received) == set(body)  # send_event stamps no time


@pytest.mark.usefixtures("no_shape_warnings")
async def test_send_batch_sends_every_documented_body_as_written(recording: Sandbox) -> None:
    bodies = [with_id(entry, "batch") for entry in CORPUS]
    events = [msgspec.convert(body, Event) for body in bodies]
    async with FuulClient(API_KEY, base_url=recording.url, config=fast_config()) as fuul:
        result = await fuul.send_batch(events)
    assert (result.ingested, result.skipped) == (len(bodies), 0)
    for body in bodies:
        assert recording.stored_count(body["dedup_id"]) == 1
        received = sent(recording, body["dedup_id"])
        assert_sent_as_written(received, body)
        assert set(received) == set(body)
