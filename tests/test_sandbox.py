"""The sandbox server, driven by a plain aiohttp client over loopback."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import pytest_asyncio

from aiofuul import testing as fuul_testing
from aiofuul.engine.limits import Limits, RateLimit
from aiofuul.sandbox import Faults, RecordedRequest, Sandbox
from aiofuul.sandbox.cli import add_sandbox_arguments, sandbox_from_args
from conftest import HANG

EVM = "0x52908400098527886E0F7030069857D2E4169EE7"
KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}

# The fixture users get from ``pytest_plugins = ["aiofuul.testing"]``.
fuul_sandbox = fuul_testing.fuul_sandbox


def ev(dedup_id: str, name: str = "signup", identifier: str = EVM, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "user": {"identifier": identifier, "identifier_type": "evm_address"},
        "dedup_id": dedup_id,
    }
    body.update(extra)
    return body


@pytest_asyncio.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sandbox:
        yield sandbox


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    body: object = None,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """Status, body (decoded when JSON) and the response."""
    raw = msgspec.json.encode(body) if body is not None else data
    async with http.request(method, url, data=raw, headers=headers, params=params) as resp:
        content = await resp.read()
        if content and resp.content_type == "application/json":
            return resp.status, msgspec.json.decode(content), resp
        return resp.status, content or None, resp


async def post(
    http: aiohttp.ClientSession, sb: Sandbox, path: str, body: object = None, **kw: Any
) -> tuple[int, Any]:
    status, decoded, _ = await call(http, "POST", sb.url + path, body, **kw)
    return status, decoded


async def created(http: aiohttp.ClientSession, sb: Sandbox, name: str, ident: str = EVM) -> Any:
    params = {"user_identifier": ident, "user_identifier_type": "evm_address", "event_name": name}
    status, body, _ = await call(http, "GET", sb.url + "events/status", params=params)
    assert status == 200
    return body["created"]


# -- single events ------------------------------------------------------------------
async def test_single_created_then_conflict(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    assert sb.url.startswith("http://127.0.0.1:")
    assert sb.url.endswith("/api/v1/")
    assert await post(http, sb, "events", ev("d-1")) == (201, {})
    assert await post(http, sb, "events", ev("d-1", name="other")) == (
        409,
        {"message": "Event with this dedup_id already exists", "statusCode": 409},
    )
    assert [e.name for e in sb.events] == ["signup"]
    assert sb.stored_ids() == ["d-1"]
    assert sb.stored_count("d-1") == 1
    assert sb.seen_count("d-1") == 2
    assert sb.stored_count("nope") == 0
    assert sb.seen_count("nope") == 0
    assert sb.count("events", 201) == 1
    assert sb.count("/api/v1/events", 409) == 1
    assert sb.count() == 2


async def test_single_validation_messages(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    status, body = await post(http, sb, "events", ev("d-1", identifier="0x12"))
    assert status == 400
    assert body["error"] == "Bad Request"
    assert body["statusCode"] == 400
    assert body["message"] == [
        "user.identifier: must be an evm_address: 0x followed by 40 hex digits (got '0x12')"
    ]
    status, body = await post(http, sb, "events", {**ev("d-1"), "name": 5})
    assert (status, body["message"]) == (400, ["name: Expected `str`, got `int`"])
    status, body = await post(http, sb, "events", {"name": "x", "user": ev("a")["user"]})
    assert status == 400
    assert body["message"] == ["dedup_id: must be 1 to 200 characters, not 0 (got '')"]
    status, body = await post(http, sb, "events", {"user": ev("a")["user"], "dedup_id": "d"})
    assert status == 400
    assert body["message"] == ["event: Object missing required field `name`"]
    status, body = await post(http, sb, "events", data=b"not json")
    assert status == 400
    assert body["message"][0].startswith("body: ")
    assert sb.events == []
    assert sb.seen_count("d-1") == 0


async def test_format_check_can_be_switched_off(http: aiohttp.ClientSession) -> None:
    async with Sandbox(check_format=False) as sb:
        assert (await post(http, sb, "events", ev("d-1", identifier="0x12")))[0] == 201
        body = {**ev("d-2"), "user": {"identifier": "x", "identifier_type": "phone"}}
        status, decoded = await post(http, sb, "events", body)
        assert status == 400
        assert decoded["message"][0].startswith("user.identifier_type: ")


# -- auth -----------------------------------------------------------------------------
async def test_auth(http: aiohttp.ClientSession) -> None:
    unauthorized = {"message": "Unauthorized", "statusCode": 401}
    keys = {"k1": {"send:trigger_event"}, "readonly": set[str]()}
    async with Sandbox(keys=keys) as sb, aiohttp.ClientSession() as bare:
        assert await post(bare, sb, "events", ev("d")) == (401, unauthorized)
        for header in ("Basic k1", "Bearer ", "Bearer nope", "k1"):
            got = await post(bare, sb, "events", ev("d"), headers={"Authorization": header})
            assert got == (401, unauthorized), header
        readonly = {"Authorization": "Bearer readonly"}
        # A key with no send scope at all is refused before its body is read.
        forbidden = {
            "message": "Forbidden: this API key lacks the send:trigger_event or "
            "send:tracking_event scope",
            "statusCode": 403,
        }
        assert await post(bare, sb, "events", ev("d"), headers=readonly) == (403, forbidden)
        assert await post(bare, sb, "events/batch", [ev("d")], headers=readonly) == (403, forbidden)
        params = {"user_identifier": EVM, "user_identifier_type": "evm_address", "event_name": "x"}
        status, _, _ = await call(
            bare, "GET", sb.url + "events/status", headers=readonly, params=params
        )
        assert status == 200
        assert await post(bare, sb, "events", ev("d"), headers={"Authorization": "Bearer k1"}) == (
            201,
            {},
        )
        assert sb.stored_ids() == ["d"]
        key_ids = {r.key_id for r in sb.requests}
        assert None in key_ids
        assert "k1" not in key_ids
        assert "readonly" not in key_ids
        assert all(isinstance(r, RecordedRequest) for r in sb.requests)
    async with Sandbox() as sb, aiohttp.ClientSession() as bare:
        # keys=None: any non-empty key, with every scope.
        assert (await post(bare, sb, "events", ev("d"), headers={"Authorization": "Bearer x"}))[
            0
        ] == 201


# -- batches ------------------------------------------------------------------------
async def test_batch_messages_carry_the_index(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    batch: list[Any] = [ev(f"b-{i}") for i in range(6)]
    batch[1] = ev("b-1", identifier="0x12")
    batch[3] = {**ev("b-3"), "name": 7}
    batch[4] = 42
    status, body = await post(http, sb, "events/batch", batch)
    assert status == 400
    assert body["error"] == "Bad Request"
    assert body["message"] == [
        "[1].user.identifier: must be an evm_address: 0x followed by 40 hex digits (got '0x12')",
        "[3].name: Expected `str`, got `int`",
        "[4].event: Expected `object`, got `int`",
    ]
    # Only validation rules, no type errors: the typed decode succeeds.
    batch = [ev("c-0"), ev("c-1", identifier="nope"), ev("c-2", name="")]
    status, body = await post(http, sb, "events/batch", batch)
    assert status == 400
    assert [m.split(":")[0] for m in body["message"]] == ["[1].user.identifier", "[2].name"]
    assert sb.events == []
    assert sb.count("events/batch", 400) == 2
    assert [r.events for r in sb.requests] == [6, 3]


@pytest.mark.parametrize(
    ("data", "start"),
    [
        (
            msgspec.json.encode([ev(f"x-{i}") for i in range(101)]),
            "events: must hold 1 to 100 events, not 101",
        ),
        (b"[]", "events: must hold 1 to 100 events, not 0"),
        (b"[1, 2", "body: must be a JSON array"),
        (b"not json", "body: must be a JSON array"),
        (
            msgspec.json.encode(ev("x")),
            "body: must be a JSON array of event objects, not an object",
        ),
    ],
)
async def test_batch_shape_errors_have_no_index(
    sb: Sandbox, http: aiohttp.ClientSession, data: bytes, start: str
) -> None:
    status, body = await post(http, sb, "events/batch", data=data)
    assert status == 400
    assert len(body["message"]) == 1
    assert body["message"][0].startswith(start)
    assert sb.events == []


async def test_batch_skips_known_ids(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    for i in range(0, 50, 10):
        assert (await post(http, sb, "events", ev(f"e-{i}")))[0] == 201
    assert await post(http, sb, "events/batch", [ev(f"e-{i}") for i in range(100)]) == (
        201,
        {"ingested_events": 95},
    )
    assert len(sb.events) == 100
    assert len(set(sb.stored_ids())) == 100
    assert sb.stored_count("e-10") == 1
    assert sb.seen_count("e-10") == 2
    assert sb.requests[-1].events == 100


async def test_batch_duplicates_first_wins(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    batch = [ev("dup", name="first"), ev("other"), ev("dup", name="second")]
    assert await post(http, sb, "events/batch", batch) == (201, {"ingested_events": 2})
    assert [e.name for e in sb.events] == ["first", "signup"]
    assert sb.seen_count("dup") == 1


# -- status -----------------------------------------------------------------------------
async def test_status_query(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    assert await created(http, sb, "deposit") is False
    await post(http, sb, "events", ev("d-1", name="deposit"))
    assert await created(http, sb, "deposit") is True
    assert await created(http, sb, "Deposit") is False
    assert await created(http, sb, "deposit", ident=EVM.lower()) is False
    url = sb.url + "events/status"
    status, body, _ = await call(http, "GET", url, params={"user_identifier": EVM})
    assert status == 400
    assert body["message"] == [
        "user_identifier_type should not be empty",
        "event_name should not be empty",
    ]
    params = {"user_identifier": EVM, "user_identifier_type": "phone", "event_name": "deposit"}
    status, body, _ = await call(http, "GET", url, params=params)
    assert status == 400
    assert body["message"][0].startswith("user_identifier_type: must be one of")


async def test_unknown_route_is_404(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    status, body, _ = await call(http, "GET", sb.url + "events")
    assert status == 404
    assert body["message"] == "Cannot GET /api/v1/events"
    assert sb.count(status=404) == 1


# -- rate limits --------------------------------------------------------------------------
@pytest.mark.slow
async def test_limits_per_endpoint_and_key(http: aiohttp.ClientSession) -> None:
    # A period of a second: six requests on loopback fit in it even on a loaded machine.
    limits = Limits(single=RateLimit(5, 1.0), batch=RateLimit(2, 1.0), status=RateLimit(5, 1.0))
    async with Sandbox(limits=limits) as sb:
        for i in range(5):
            assert (await post(http, sb, "events", ev(f"s-{i}")))[0] == 201
        status, body, resp = await call(http, "POST", sb.url + "events", ev("s-5"))
        assert (status, body) == (
            429,
            {"message": "ThrottlerException: Too Many Requests", "statusCode": 429},
        )
        retry_after = resp.headers["Retry-After"]
        assert len(retry_after.split(".")[1]) == 3
        assert 0 < float(retry_after) <= 1.0
        # The other endpoints and other keys have their own budgets.
        assert (await post(http, sb, "events/batch", [ev("b-0")]))[0] == 201
        other = {"Authorization": "Bearer other-key"}
        assert (await post(http, sb, "events", ev("o-0"), headers=other))[0] == 201
        await asyncio.sleep(float(retry_after))
        assert (await post(http, sb, "events", ev("s-5")))[0] == 201
        assert sb.stored_count("s-5") == 1


@pytest.mark.slow
async def test_refused_requests_do_not_count(http: aiohttp.ClientSession) -> None:
    # A period of a second: five requests on loopback fit in it even on a loaded machine.
    async with Sandbox(limits=Limits(single=RateLimit(2, 1.0))) as sb:
        assert (await post(http, sb, "events", ev("a")))[0] == 201
        assert (await post(http, sb, "events", ev("b")))[0] == 201
        waits = []
        for _ in range(3):
            status, _, resp = await call(http, "POST", sb.url + "events", ev("c"))
            assert status == 429
            waits.append(float(resp.headers["Retry-After"]))
        await asyncio.sleep(waits[-1])  # the window of "a" and "b" passes
        # Had the 429s counted, the window would still be full.
        assert (await post(http, sb, "events", ev("c")))[0] == 201
        assert sb.count(status=429) == len(waits) >= 3


async def test_retry_after_forms(http: aiohttp.ClientSession) -> None:
    async with Sandbox(limits=Limits(single=RateLimit(1, 5.0))) as sb:
        await post(http, sb, "events", ev("a"))
        _, _, resp = await call(http, "POST", sb.url + "events", ev("b"))
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "5"
        sb.retry_after = "http-date"
        asked = time.time()
        _, _, resp = await call(http, "POST", sb.url + "events", ev("b"))
        answered = time.time()
        when = parsedate_to_datetime(resp.headers["Retry-After"]).timestamp()
        assert resp.headers["Retry-After"].endswith(" GMT")
        # Five seconds after the first request, to the second (a date has no fractions).
        assert asked + 4 - 1 <= when <= answered + 5 + 1
        sb.retry_after = "none"
        _, _, resp = await call(http, "POST", sb.url + "events", ev("b"))
        assert resp.status == 429
        assert "Retry-After" not in resp.headers


async def test_shared_limit_and_replacing_limits(http: aiohttp.ClientSession) -> None:
    limits = Limits(shared=RateLimit(2, 5.0))
    async with Sandbox(limits=limits) as sb:
        assert (await post(http, sb, "events", ev("a")))[0] == 201
        assert await created(http, sb, "signup") is True
        assert (await post(http, sb, "events/batch", [ev("b")]))[0] == 429
        sb.limits = Limits()  # forgets the counts
        assert sb.limits == Limits()
        assert (await post(http, sb, "events/batch", [ev("b")]))[0] == 201
        sb.limits = Limits(single=RateLimit(1, 5.0))
        assert (await post(http, sb, "events", ev("c")))[0] == 201
        assert (await post(http, sb, "events", ev("d")))[0] == 429
        sb.reset()
        assert sb.events == []
        assert sb.requests == []
        assert sb.stored_count("a") == 0
        assert (await post(http, sb, "events", ev("d")))[0] == 201


# -- faults ----------------------------------------------------------------------------
async def test_error_rate(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    sb.faults = Faults(error_rate=1.0, seed=3)
    content_types = set()
    for i in range(12):
        async with http.post(sb.url + "events", json=ev(f"e-{i}")) as resp:
            assert resp.status in (500, 502, 503)
            content_types.add(resp.content_type)
            await resp.read()
    assert content_types == {"text/html", "application/json"}
    status, _ = await post(http, sb, "events/batch", [ev("b")])
    assert status >= 500
    assert sb.events == []
    assert sb.seen_count("e-0") == 0
    sb.faults.error_rate = 0.0
    assert (await post(http, sb, "events", ev("e-0")))[0] == 201


@pytest.mark.parametrize("after_store", [0.0, 1.0])
async def test_drop_rate(
    sb: Sandbox, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture, after_store: float
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    sb.faults = Faults(drop_rate=1.0, drop_after_store=after_store)
    for path, body in (("events", ev("d-1")), ("events/batch", [ev("d-2"), ev("d-3")])):
        with pytest.raises(aiohttp.ClientError) as info:
            await post(http, sb, path, body)
        assert isinstance(info.value, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError))
    expected = ["d-1", "d-2", "d-3"] if after_store else []
    assert sb.stored_ids() == expected
    assert sb.count(status=0) == 2
    assert [r.events for r in sb.requests] == ([1, 2] if after_store else [0, 0])
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_garbage_rate(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    sb.faults.garbage_rate = 1.0
    bodies: list[bytes] = []
    for batch in ([ev("g-1")], [ev("g-2")]):
        async with http.post(sb.url + "events/batch", json=batch) as resp:
            assert resp.status == 201
            bodies.append(await resp.read())
    full = b'{"ingested_events":1}'
    assert bodies[0] == b"<html>oops</html>"
    assert full.startswith(bodies[1])
    assert 0 < len(bodies[1]) < len(full)
    for raw in bodies:
        with pytest.raises(msgspec.DecodeError):
            msgspec.json.decode(raw)
    assert sb.stored_ids() == ["g-1", "g-2"]


async def test_hang_rate_and_prompt_stop(http: aiohttp.ClientSession) -> None:
    sb = Sandbox(faults=Faults(hang_rate=1.0))
    await sb.start()
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(
            sb.url + "events", json=ev("h-1"), timeout=aiohttp.ClientTimeout(total=0.2)
        ):
            pass
    waiting = asyncio.ensure_future(call(http, "POST", sb.url + "events", ev("h-2")))
    await asyncio.sleep(0.3)  # the request reaches the server (nothing shows it before)
    # A hung request is let go at once and recorded (status 0) by its own handler; one
    # cut off after the shutdown timeout would not be: the count below tells them apart.
    await asyncio.wait_for(sb.stop(), HANG)
    with pytest.raises(aiohttp.ClientError):
        await asyncio.wait_for(waiting, HANG)
    assert sb.events == []
    assert sb.count(status=0) == 2


async def test_latency(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    # Answers come after the latency: a client that waits less gives up first (a slow
    # machine only makes that surer), and one that waits longer gets its answer.
    sb.faults.latency = 5.0
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(
            sb.url + "events", json=ev("l-1"), timeout=aiohttp.ClientTimeout(total=0.2)
        ):
            pass
    sb.faults.latency = 0.05
    assert (await post(http, sb, "events", ev("l-2")))[0] == 201


async def test_testing_fixture(fuul_sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    assert await post(http, fuul_sandbox, "events", ev("f-1")) == (201, {})
    assert fuul_sandbox.stored_count("f-1") == 1


async def test_seeded_faults_repeat(http: aiohttp.ClientSession) -> None:
    runs = []
    for _ in range(2):
        async with Sandbox(faults=Faults(error_rate=0.5, seed=7)) as sb:
            statuses = [(await post(http, sb, "events", ev(f"r-{i}")))[0] for i in range(12)]
            runs.append(statuses)
            assert sb.stored_ids() == [f"r-{i}" for i, s in enumerate(statuses) if s == 201]
    assert runs[0] == runs[1]
    assert 201 in runs[0]
    assert any(s >= 500 for s in runs[0])


# -- command line ---------------------------------------------------------------------
def test_sandbox_from_args() -> None:
    parser = argparse.ArgumentParser()
    add_sandbox_arguments(parser)
    argv = (
        "--key k1 --key ro: --key k2:send:trigger_event,service_role"
        " --batch-limit 4/2 --shared-limit 20/10 --time-scale 0.5"
        " --retry-after none --drop-rate 0.25 --seed 3 --no-format-check"
    )
    ns = parser.parse_args(argv.split())
    sb = sandbox_from_args(ns)
    assert sb.port == 8080
    assert sb.limits.batch == RateLimit(4, 1.0)
    assert sb.limits.single == RateLimit(100, 30.0)
    assert sb.limits.shared == RateLimit(20, 5.0)
    assert sb.retry_after == "none"
    assert sb.check_format is False
    assert sb.faults == Faults(drop_rate=0.25, seed=3)
    with pytest.raises(SystemExit):
        parser.parse_args(["--error-rate", "2"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--single-limit", "lots"])


async def test_command_line_keys_and_scopes(http: aiohttp.ClientSession) -> None:
    parser = argparse.ArgumentParser()
    add_sandbox_arguments(parser)
    sb = sandbox_from_args(parser.parse_args(["--port", "0", "--key", "ro:", "--key", KEY]))
    async with sb:
        readonly = {"Authorization": "Bearer ro"}
        assert (await post(http, sb, "events", ev("a"), headers=readonly))[0] == 403
        assert (await post(http, sb, "events", ev("a")))[0] == 201


@pytest.mark.slow
def test_command_line_serves_until_sigint() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = [sys.executable, "-m", "aiofuul.sandbox", "--port", str(port), "--key", "k1"]
    args += ["--single-limit", "5/1", "--time-scale", "0.5", "--seed", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = f"http://127.0.0.1:{port}/api/v1/"
        assert url in line
        assert "k1" not in line
        query = "events/status?user_identifier=a%40b.io&user_identifier_type=email&event_name=x"
        request = urllib.request.Request(url + query, headers={"Authorization": "Bearer k1"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200
            assert msgspec.json.decode(resp.read()) == {"created": False}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
