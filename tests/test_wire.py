"""The wire format and the status mapping of the three endpoints, pinned with aioresponses.

No server runs here: aioresponses intercepts ``ClientSession._request``, records what
the client passed to aiohttp (method, URL, body bytes, headers, query parameters) and
answers with canned responses. Every test also checks that the API key never leaks into
a log record (see the autouse ``no_key_in_logs`` fixture).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aioresponses import aioresponses
from aioresponses.core import RequestCall
from yarl import URL

import aiofuul.wire.shapes
from aiofuul import (
    Amount,
    APIError,
    AuthenticationError,
    BadRequestError,
    BatchResult,
    ClientConfig,
    ClientStateError,
    Currency,
    Event,
    FuulClient,
    FuulError,
    Limits,
    NotFoundError,
    PermissionDeniedError,
    RateLimit,
    RateLimitError,
    RetryPolicy,
    SendResult,
    ServerError,
    TransportError,
    User,
    ValidationError,
)
from aiofuul.engine.delivery import (
    Delivered,
    Duplicate,
    RateLimited,
    Rejected,
    Retry,
    Stopped,
    judge,
)
from aiofuul.wire.transport import DEFAULT_BASE_URL, Response, parse_retry_after
from aiofuul.wire.transport import resolve_base_url as resolve
from conftest import API_KEY, EVM, fast_config

BASE = "http://127.0.0.1:9/api/v1/"
EVENTS_URL = BASE + "events"
BATCH_URL = BASE + "events/batch"
STATUS_RE = re.compile(r"^http://127\.0\.0\.1:9/api/v1/events/status(\?.*)?$")

#: Windows of 10 ms: a 429 that drops the limiter's capacity to 1 costs ~10 ms, not 1 s.
TINY_LIMITS = Limits(
    single=RateLimit(1000, 0.01), batch=RateLimit(1000, 0.01), status=RateLimit(1000, 0.01)
)
#: Three attempts with millisecond backoff: "after retries run out" stays fast.
ATTEMPTS = 3
WIRE_RETRY = RetryPolicy(
    max_attempts=ATTEMPTS, initial_backoff=0.001, max_backoff=0.005, max_elapsed=10.0
)

EVM_ID = EVM.identifier
USER_JSON = b'{"identifier":"' + EVM_ID.encode() + b'","identifier_type":"evm_address"}'


def wire_config(**changes: object) -> ClientConfig:
    return fast_config(**{"limits": TINY_LIMITS, "retry": WIRE_RETRY, **changes})


# -- aioresponses on aiohttp >= 3.12 ------------------------------------------------------


class _NoStreamWriter:
    """What a sent request's ``ClientResponse`` reads from its stream writer."""

    output_size = 0


class _CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds responses without the ``stream_writer`` argument that
    newer aiohttp requires; supply a stand-in so canned responses can be built."""

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _NoStreamWriter())
        super().__init__(method, url, **kwargs)


class _Mock(aioresponses):
    def add(self, url: Any, method: str = "GET", **kwargs: Any) -> None:  # type: ignore[override]
        if kwargs.get("response_class") is None:
            kwargs["response_class"] = _CompatResponse
        super().add(url, method=method, **kwargs)


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_key_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every test in this file runs with DEBUG logging captured; none may log the key."""
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        assert API_KEY not in record.getMessage()
        assert API_KEY not in repr(record.args)
    assert API_KEY not in caplog.text


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with _Mock() as m:
        yield m


@pytest_asyncio.fixture
async def fuul(mocked: aioresponses) -> AsyncIterator[FuulClient]:
    async with FuulClient(API_KEY, base_url=BASE, config=wire_config()) as client:
        yield client


def calls(m: aioresponses, method: str, url: str) -> list[RequestCall]:
    """What the client passed to aiohttp for ``method url`` (query ignored)."""
    path = URL(url).path
    found: list[RequestCall] = []
    for (meth, u), recorded in m.requests.items():
        if meth == method and u.path == path:
            found.extend(recorded)
    return found


def only_call(m: aioresponses, method: str, url: str) -> RequestCall:
    sent = calls(m, method, url)
    assert len(sent) == 1, sent
    return sent[0]


def assert_key_not_shown(exc: BaseException) -> None:
    assert API_KEY not in str(exc)
    assert API_KEY not in repr(exc)


# -- the bytes on the wire ----------------------------------------------------------------


async def test_send_event_body_is_exact_json_object_without_null_fields(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    mocked.post(EVENTS_URL, status=201, body=b"")
    result = await fuul.send_event("signup", EVM, dedup_id="u-1")
    assert result == SendResult("u-1", duplicate=False)
    call = only_call(mocked, "POST", EVENTS_URL)
    # No "args": null, no "timestamp": null, and send_event does not stamp the time.
    assert call.kwargs["data"] == b'{"name":"signup","user":' + USER_JSON + b',"dedup_id":"u-1"}'


async def test_send_event_body_key_order_is_name_user_dedup_id_args_timestamp(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    mocked.post(EVENTS_URL, status=201)
    await fuul.send_event(
        "deposit",
        EVM,
        dedup_id="dep-1",
        args={
            "value": {"amount": "1500000", "currency": {"name": "USDC"}},
            "chain_id": 1,
            "size": 2.5,
            "vip": True,
            "note": "café",
        },
        timestamp=1_700_000_000_123,
    )
    expected = (
        b'{"name":"deposit","user":' + USER_JSON + b',"dedup_id":"dep-1",'
        b'"args":{"value":{"amount":"1500000","currency":{"name":"USDC"}},'
        b'"chain_id":1,"size":2.5,"vip":true,"note":"caf\xc3\xa9"},'
        b'"timestamp":1700000000123}'
    )
    assert only_call(mocked, "POST", EVENTS_URL).kwargs["data"] == expected


async def test_send_event_token_currency_omits_unset_currency_fields(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    mocked.post(EVENTS_URL, status=201)
    token = Currency(identifier="0xA0b8", identifier_type="evm_contract")
    await fuul.send_event("trade", EVM, dedup_id="t-1", args={"revenue": Amount("7", token)})
    assert only_call(mocked, "POST", EVENTS_URL).kwargs["data"] == (
        b'{"name":"trade","user":' + USER_JSON + b',"dedup_id":"t-1","args":{"revenue":'
        b'{"amount":"7","currency":{"identifier":"0xA0b8","identifier_type":"evm_contract"}}}}'
    )


async def test_send_event_sends_dict_args_as_written_in_their_key_order(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    mocked.post(EVENTS_URL, status=201)
    args = {
        "zeta": 1,
        "value": {"currency": {"chain_id": 8453, "name": "USDC"}, "amount": "5"},
        "alpha": "x",
    }
    await fuul.send_event("trade", EVM, dedup_id="o-1", args=args)
    assert only_call(mocked, "POST", EVENTS_URL).kwargs["data"] == (
        b'{"name":"trade","user":' + USER_JSON + b',"dedup_id":"o-1","args":{"zeta":1,'
        b'"value":{"currency":{"chain_id":8453,"name":"USDC"},"amount":"5"},"alpha":"x"}}'
    )


async def test_send_event_timestamp_of_digits_is_sent_as_a_json_string(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    mocked.post(EVENTS_URL, status=201)
    await fuul.send_event("trade", EVM, dedup_id="s-1", timestamp="1700000000123")
    assert only_call(mocked, "POST", EVENTS_URL).kwargs["data"] == (
        b'{"name":"trade","user":' + USER_JSON + b',"dedup_id":"s-1","timestamp":"1700000000123"}'
    )


async def test_send_event_tracking_event_without_user_sends_its_metadata(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    mocked.post(EVENTS_URL, status=201)
    await fuul.send_event("pageview", dedup_id="p-1", metadata={"tracking_id": "V1StGXR8"})
    assert only_call(mocked, "POST", EVENTS_URL).kwargs["data"] == (
        b'{"name":"pageview","dedup_id":"p-1","metadata":{"tracking_id":"V1StGXR8"}}'
    )


async def test_send_event_undocumented_shape_is_sent_as_written_with_one_warning(
    fuul: FuulClient, mocked: aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    aiofuul.wire.shapes._warned.clear()
    mocked.post(EVENTS_URL, status=201, repeat=True)
    args = {"value": {"amount": "9.99", "currency": {"name": "EUR"}}}
    await fuul.send_event("trade", EVM, dedup_id="e-1", args=args)
    await fuul.send_event("trade", EVM, dedup_id="e-2", args=args)
    bodies = [call.kwargs["data"] for call in calls(mocked, "POST", EVENTS_URL)]
    assert bodies[0] == (
        b'{"name":"trade","user":' + USER_JSON + b',"dedup_id":"e-1","args":'
        b'{"value":{"amount":"9.99","currency":{"name":"EUR"}}}}'
    )
    assert len(bodies) == 2
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.name == "aiofuul" and r.levelno == logging.WARNING and "sent anyway" in r.getMessage()
    ]
    assert len(warned) == 1, warned
    assert warned[0].startswith("args.value.currency.name: ")


async def test_strict_client_sends_nothing_for_an_undocumented_shape(
    mocked: aioresponses,
) -> None:
    mocked.post(EVENTS_URL, status=201, repeat=True)
    args = {"value": {"amount": "9.99", "currency": {"name": "EUR"}}}
    async with FuulClient(API_KEY, base_url=BASE, config=wire_config(strict=True)) as strict:
        with pytest.raises(ValidationError) as info:
            await strict.send_event("trade", EVM, dedup_id="e-1", args=args)
        with pytest.raises(ValidationError):
            strict.track("trade", EVM, args=args)
        assert await strict.flush(timeout=1)
    assert (info.value.field, info.value.tier) == ("args.value.currency.name", 2)
    assert calls(mocked, "POST", EVENTS_URL) == []
    assert calls(mocked, "POST", BATCH_URL) == []


async def test_send_event_without_dedup_id_sends_a_generated_one_and_returns_it(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    mocked.post(EVENTS_URL, status=201, repeat=True)
    first = await fuul.send_event("signup", EVM)
    second = await fuul.send_event("signup", EVM)
    assert first.dedup_id != second.dedup_id
    bodies = [c.kwargs["data"] for c in calls(mocked, "POST", EVENTS_URL)]
    assert bodies == [
        b'{"name":"signup","user":' + USER_JSON + b',"dedup_id":"' + d.encode() + b'"}'
        for d in (first.dedup_id, second.dedup_id)
    ]


async def test_send_batch_body_is_a_bare_json_array_of_event_objects(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    mocked.post(BATCH_URL, status=201, payload={"ingested_events": 2})
    events = [
        Event("a", EVM, "b-1"),
        Event("b", EVM, "b-2", args={"n": 1}, timestamp=1_700_000_000_000),
    ]
    assert await fuul.send_batch(events) == BatchResult(2, 0)
    assert only_call(mocked, "POST", BATCH_URL).kwargs["data"] == (
        b'[{"name":"a","user":' + USER_JSON + b',"dedup_id":"b-1"},'
        b'{"name":"b","user":' + USER_JSON + b',"dedup_id":"b-2","args":{"n":1},'
        b'"timestamp":1700000000000}]'
    )


async def test_event_status_is_a_get_with_the_three_query_parameters_and_no_body(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    mocked.get(STATUS_RE, payload={"created": True})
    assert await fuul.event_status(EVM, "Deposit") is True
    (key_url,) = [u for (meth, u) in mocked.requests if meth == "GET"]
    assert key_url.path == "/api/v1/events/status"
    assert dict(key_url.query) == {
        "user_identifier": EVM_ID,
        "user_identifier_type": "evm_address",
        "event_name": "Deposit",
    }
    call = only_call(mocked, "GET", BASE + "events/status")
    assert list(call.kwargs["params"].items()) == [
        ("user_identifier", EVM_ID),
        ("user_identifier_type", "evm_address"),
        ("event_name", "Deposit"),
    ]
    assert call.kwargs.get("data") is None
    assert "Content-Type" not in call.kwargs["headers"]


async def test_event_status_query_encodes_plus_and_at_of_an_email(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    mocked.get(STATUS_RE, payload={"created": False})
    await fuul.event_status(User("a+b@example.com", "email"), "sign up")
    (key_url,) = [u for (meth, u) in mocked.requests if meth == "GET"]
    # Decoded back, the values are intact ('+' did not become a space).
    assert key_url.query["user_identifier"] == "a+b@example.com"
    assert key_url.query["event_name"] == "sign up"


@pytest.mark.parametrize("endpoint", ["single", "batch", "status"])
async def test_every_request_carries_bearer_key_user_agent_and_json_content_type_on_posts(
    fuul: FuulClient, mocked: aioresponses, endpoint: str
) -> None:
    if endpoint == "single":
        mocked.post(EVENTS_URL, status=201)
        await fuul.send_event("x", EVM, dedup_id="h-1")
        call = only_call(mocked, "POST", EVENTS_URL)
    elif endpoint == "batch":
        mocked.post(BATCH_URL, status=201, payload={"ingested_events": 1})
        await fuul.send_batch([Event("x", EVM, "h-2")])
        call = only_call(mocked, "POST", BATCH_URL)
    else:
        mocked.get(STATUS_RE, payload={"created": False})
        await fuul.event_status(EVM, "x")
        call = only_call(mocked, "GET", BASE + "events/status")
    headers = call.kwargs["headers"]
    assert headers["Authorization"] == f"Bearer {API_KEY}"
    assert headers["User-Agent"].startswith("aiofuul/")
    assert headers["Accept"] == "application/json"
    if endpoint == "status":
        assert "Content-Type" not in headers
    else:
        assert headers["Content-Type"] == "application/json"
    assert call.kwargs["allow_redirects"] is False


# -- send_event: every status --------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"  ", b"{}", b'{"id": "e-1", "anything": [1]}'])
async def test_send_event_201_with_an_empty_body_or_any_json_object_is_delivered(
    fuul: FuulClient, mocked: aioresponses, body: bytes
) -> None:
    mocked.post(EVENTS_URL, status=201, body=body)
    assert await fuul.send_event("x", EVM, dedup_id="s-1") == SendResult("s-1", False)
    assert len(calls(mocked, "POST", EVENTS_URL)) == 1


#: 2xx bodies that are not the API's answer to a single event (a proxy's page, a cut
#: stream, JSON that is not an object).
NOT_AN_EVENT_ANSWER = [b"<html>whatever</html>", b'{"i', b"[]", b'"ok"', b"null"]


@pytest.mark.parametrize("body", NOT_AN_EVENT_ANSWER)
async def test_send_event_2xx_that_is_not_the_apis_answer_is_resent_with_the_same_body(
    fuul: FuulClient, mocked: aioresponses, body: bytes
) -> None:
    mocked.post(EVENTS_URL, status=201, body=body)
    mocked.post(EVENTS_URL, status=201, body=b"{}")
    assert await fuul.send_event("x", EVM, dedup_id="s-1") == SendResult("s-1", False)
    sent = [c.kwargs["data"] for c in calls(mocked, "POST", EVENTS_URL)]
    assert len(sent) == 2 and sent[0] == sent[1]  # the same dedup id: harmless if stored


async def test_send_event_garbage_2xx_then_409_is_a_duplicate(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    # Stored, but the answer was lost on the way: the resend finds the dedup id known.
    mocked.post(EVENTS_URL, status=201, body=b"<html>captive portal</html>")
    mocked.post(EVENTS_URL, status=409, payload={"message": "exists", "statusCode": 409})
    assert await fuul.send_event("x", EVM, dedup_id="s-1") == SendResult("s-1", duplicate=True)
    assert len(calls(mocked, "POST", EVENTS_URL)) == 2


@pytest.mark.parametrize("body", NOT_AN_EVENT_ANSWER)
async def test_send_event_2xx_that_is_never_the_apis_answer_raises_after_every_attempt(
    fuul: FuulClient, mocked: aioresponses, body: bytes
) -> None:
    mocked.post(EVENTS_URL, status=201, body=body, repeat=True)
    with pytest.raises(TransportError, match="not the API's answer") as info:
        await fuul.send_event("x", EVM, dedup_id="s-1")
    sent = [c.kwargs["data"] for c in calls(mocked, "POST", EVENTS_URL)]
    assert len(sent) == ATTEMPTS and len(set(sent)) == 1
    assert_key_not_shown(info.value)


async def test_send_event_409_is_a_duplicate_result_not_an_error_and_not_retried(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    mocked.post(EVENTS_URL, status=409, payload={"message": "exists", "statusCode": 409})
    assert await fuul.send_event("x", EVM, dedup_id="s-1") == SendResult("s-1", duplicate=True)
    assert len(calls(mocked, "POST", EVENTS_URL)) == 1


async def test_send_event_400_raises_bad_request_with_message_list_preserved_no_retry(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    messages = ["name: must be 1 to 200 characters", "user.identifier: bad"]
    mocked.post(
        EVENTS_URL,
        status=400,
        payload={"message": messages, "error": "Bad Request", "statusCode": 400},
    )
    with pytest.raises(BadRequestError) as info:
        await fuul.send_event("x", EVM, dedup_id="s-1")
    assert info.value.status == 400
    assert info.value.message == messages
    assert str(info.value) == "HTTP 400: " + "; ".join(messages)
    assert len(calls(mocked, "POST", EVENTS_URL)) == 1
    assert_key_not_shown(info.value)


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (401, AuthenticationError, "Unauthorized"),
        (403, PermissionDeniedError, "Forbidden: missing SendTrackingEvent scope"),
        (404, NotFoundError, "Project not found"),
    ],
)
async def test_send_event_401_403_404_raise_their_error_at_once_without_retry(
    fuul: FuulClient,
    mocked: aioresponses,
    status: int,
    error: type[APIError],
    message: str,
) -> None:
    mocked.post(EVENTS_URL, status=status, payload={"message": message}, repeat=True)
    with pytest.raises(error) as info:
        await fuul.send_event("x", EVM, dedup_id="s-1")
    assert type(info.value) is error
    assert (info.value.status, info.value.message) == (status, message)
    assert len(calls(mocked, "POST", EVENTS_URL)) == 1
    assert_key_not_shown(info.value)


async def test_send_event_other_4xx_raises_plain_api_error_without_retry(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    # 410: a 4xx with no class of its own (422 is UnprocessableEntityError now).
    mocked.post(EVENTS_URL, status=410, payload={"message": "nope"}, repeat=True)
    with pytest.raises(APIError) as info:
        await fuul.send_event("x", EVM, dedup_id="s-1")
    assert type(info.value) is APIError
    assert info.value.status == 410
    assert len(calls(mocked, "POST", EVENTS_URL)) == 1


async def test_send_event_429_raises_rate_limit_error_with_retry_after_when_retries_run_out(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    mocked.post(
        EVENTS_URL,
        status=429,
        payload={"message": "ThrottlerException: Too Many Requests"},
        headers={"Retry-After": "0.02"},
        repeat=True,
    )
    with pytest.raises(RateLimitError) as info:
        await fuul.send_event("x", EVM, dedup_id="s-1")
    assert info.value.status == 429
    assert info.value.retry_after == pytest.approx(0.02)
    assert info.value.message == "ThrottlerException: Too Many Requests"
    assert len(calls(mocked, "POST", EVENTS_URL)) == ATTEMPTS
    assert_key_not_shown(info.value)


async def test_send_event_429_without_retry_after_has_none_and_is_still_retried(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    mocked.post(EVENTS_URL, status=429, repeat=True)
    with pytest.raises(RateLimitError) as info:
        await fuul.send_event("x", EVM, dedup_id="s-1")
    assert info.value.retry_after is None
    assert len(calls(mocked, "POST", EVENTS_URL)) == ATTEMPTS


async def test_send_event_429_then_201_succeeds(fuul: FuulClient, mocked: aioresponses) -> None:
    mocked.post(EVENTS_URL, status=429, headers={"Retry-After": "0.01"})
    mocked.post(EVENTS_URL, status=201)
    assert await fuul.send_event("x", EVM, dedup_id="s-1") == SendResult("s-1", False)
    assert len(calls(mocked, "POST", EVENTS_URL)) == 2


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_send_event_5xx_raises_server_error_after_all_attempts(
    fuul: FuulClient, mocked: aioresponses, status: int
) -> None:
    mocked.post(EVENTS_URL, status=status, body=b"<html>Bad Gateway</html>", repeat=True)
    with pytest.raises(ServerError) as info:
        await fuul.send_event("x", EVM, dedup_id="s-1")
    assert info.value.status == status
    assert info.value.message is None  # an HTML body has no message
    assert len(calls(mocked, "POST", EVENTS_URL)) == ATTEMPTS
    assert_key_not_shown(info.value)


async def test_send_event_408_is_retried_then_raised_as_api_error(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    mocked.post(EVENTS_URL, status=408, repeat=True)
    with pytest.raises(APIError) as info:
        await fuul.send_event("x", EVM, dedup_id="s-1")
    assert info.value.status == 408
    assert len(calls(mocked, "POST", EVENTS_URL)) == ATTEMPTS


async def test_send_event_500_then_201_retries_the_same_bytes_and_succeeds(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    mocked.post(EVENTS_URL, status=500)
    mocked.post(EVENTS_URL, status=503)
    mocked.post(EVENTS_URL, status=201)
    assert await fuul.send_event("x", EVM, dedup_id="s-1") == SendResult("s-1", False)
    bodies = [c.kwargs["data"] for c in calls(mocked, "POST", EVENTS_URL)]
    assert len(bodies) == 3
    assert bodies[0] == bodies[1] == bodies[2]  # same dedup id on every attempt


async def test_send_event_connection_error_raises_transport_error_after_all_attempts(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    mocked.post(EVENTS_URL, exception=aiohttp.ClientConnectionError("reset by peer"), repeat=True)
    with pytest.raises(TransportError) as info:
        await fuul.send_event("x", EVM, dedup_id="s-1")
    assert "reset by peer" in str(info.value)
    assert not isinstance(info.value, APIError)
    assert len(calls(mocked, "POST", EVENTS_URL)) == ATTEMPTS
    assert_key_not_shown(info.value)


async def test_send_event_timeout_raises_transport_error_after_all_attempts(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    mocked.post(EVENTS_URL, exception=asyncio.TimeoutError(), repeat=True)
    with pytest.raises(TransportError, match="timed out"):
        await fuul.send_event("x", EVM, dedup_id="s-1")
    assert len(calls(mocked, "POST", EVENTS_URL)) == ATTEMPTS


async def test_send_event_connection_error_then_201_succeeds(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    mocked.post(EVENTS_URL, exception=aiohttp.ServerDisconnectedError())
    mocked.post(EVENTS_URL, status=201)
    assert await fuul.send_event("x", EVM, dedup_id="s-1") == SendResult("s-1", False)


async def test_response_larger_than_max_response_bytes_is_a_transport_error(
    mocked: aioresponses,
) -> None:
    mocked.post(EVENTS_URL, status=201, body=b"x" * 5000, repeat=True)
    config = wire_config(max_response_bytes=1000)
    async with FuulClient(API_KEY, base_url=BASE, config=config) as fuul:
        with pytest.raises(TransportError, match="max_response_bytes"):
            await fuul.send_event("x", EVM, dedup_id="s-1")


# -- send_batch -------------------------------------------------------------------------------


def hundred() -> list[Event]:
    return [Event("e", EVM, f"b-{i}") for i in range(100)]


async def test_send_batch_ingested_95_of_100_reports_5_skipped(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    mocked.post(BATCH_URL, status=201, payload={"ingested_events": 95})
    assert await fuul.send_batch(hundred()) == BatchResult(ingested=95, skipped=5)


@pytest.mark.parametrize("body", [b"", b"  "])
async def test_send_batch_2xx_with_empty_body_counts_all_ingested(
    fuul: FuulClient, mocked: aioresponses, body: bytes
) -> None:
    mocked.post(BATCH_URL, status=201, body=body)
    assert await fuul.send_batch(hundred()) == BatchResult(ingested=100, skipped=0)
    assert len(calls(mocked, "POST", BATCH_URL)) == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"ingested_events": 100}', BatchResult(100, 0)),
        (b'{"ingested_events": 0, "more": "fields"}', BatchResult(0, 100)),
    ],
)
async def test_send_batch_ingested_count_at_the_bounds_is_an_answer(
    fuul: FuulClient, mocked: aioresponses, body: bytes, expected: BatchResult
) -> None:
    mocked.post(BATCH_URL, status=201, body=body)
    assert await fuul.send_batch(hundred()) == expected
    assert len(calls(mocked, "POST", BATCH_URL)) == 1


#: 2xx bodies that are not the API's answer to a batch of 100.
NOT_A_BATCH_ANSWER = [
    b"{}",
    b"<html>oops</html>",
    b'{"ingested_eve',
    b'{"ingested_events": "95"}',
    b'{"ingested_events": true}',
    b'{"ingested_events": -1}',
    b'{"ingested_events": 101}',
    b"[]",
    b'"ok"',
]


@pytest.mark.parametrize("body", NOT_A_BATCH_ANSWER)
async def test_send_batch_2xx_with_unusable_body_is_resent_and_the_next_answer_counts(
    fuul: FuulClient, mocked: aioresponses, body: bytes
) -> None:
    mocked.post(BATCH_URL, status=201, body=body)
    mocked.post(BATCH_URL, status=201, payload={"ingested_events": 95})
    assert await fuul.send_batch(hundred()) == BatchResult(ingested=95, skipped=5)
    sent = [c.kwargs["data"] for c in calls(mocked, "POST", BATCH_URL)]
    assert len(sent) == 2 and sent[0] == sent[1]  # the same dedup ids: the server skips known ones


@pytest.mark.parametrize("body", NOT_A_BATCH_ANSWER)
async def test_send_batch_2xx_with_unusable_body_every_time_raises_transport_error(
    fuul: FuulClient, mocked: aioresponses, body: bytes
) -> None:
    mocked.post(BATCH_URL, status=201, body=body, repeat=True)
    with pytest.raises(TransportError, match="not the API's answer") as info:
        await fuul.send_batch(hundred())
    sent = [c.kwargs["data"] for c in calls(mocked, "POST", BATCH_URL)]
    assert len(sent) == ATTEMPTS and len(set(sent)) == 1
    assert_key_not_shown(info.value)


async def test_send_batch_200_is_accepted_like_201(fuul: FuulClient, mocked: aioresponses) -> None:
    mocked.post(BATCH_URL, status=200, payload={"ingested_events": 0})
    assert await fuul.send_batch(hundred()[:3]) == BatchResult(ingested=0, skipped=3)


async def test_send_batch_400_raises_bad_request_with_indexed_messages(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    messages = ["[3].user.identifier: bad", "[7].name: bad"]
    mocked.post(BATCH_URL, status=400, payload={"message": messages})
    with pytest.raises(BadRequestError) as info:
        await fuul.send_batch(hundred()[:10])
    assert info.value.message == messages


async def test_send_batch_5xx_then_201_succeeds(fuul: FuulClient, mocked: aioresponses) -> None:
    mocked.post(BATCH_URL, status=502)
    mocked.post(BATCH_URL, status=201, payload={"ingested_events": 2})
    assert await fuul.send_batch(hundred()[:2]) == BatchResult(2, 0)


# -- event_status ------------------------------------------------------------------------------


@pytest.mark.parametrize("created", [True, False])
async def test_event_status_returns_the_created_bool(
    fuul: FuulClient, mocked: aioresponses, created: bool
) -> None:
    mocked.get(STATUS_RE, payload={"created": created})
    assert await fuul.event_status(EVM, "x") is created


#: 2xx bodies that are not a status answer: the answer IS the body, so none is guessed.
NOT_A_STATUS_ANSWER = [b"", b"<html>oops</html>", b'{"created": "yes"}', b"{}", b'{"creat']


@pytest.mark.parametrize("body", NOT_A_STATUS_ANSWER)
async def test_event_status_garbage_body_raises_transport_error_after_the_retries(
    fuul: FuulClient, mocked: aioresponses, body: bytes
) -> None:
    mocked.get(STATUS_RE, status=200, body=body, repeat=True)
    with pytest.raises(TransportError, match="not the API's answer"):
        await fuul.event_status(EVM, "x")
    assert len(calls(mocked, "GET", BASE + "events/status")) == ATTEMPTS


@pytest.mark.parametrize("body", NOT_A_STATUS_ANSWER)
async def test_event_status_garbage_body_then_an_answer_returns_the_answer(
    fuul: FuulClient, mocked: aioresponses, body: bytes
) -> None:
    mocked.get(STATUS_RE, status=200, body=body)
    mocked.get(STATUS_RE, payload={"created": True})
    assert await fuul.event_status(EVM, "x") is True
    assert len(calls(mocked, "GET", BASE + "events/status")) == 2


async def test_event_status_404_raises_not_found(fuul: FuulClient, mocked: aioresponses) -> None:
    mocked.get(STATUS_RE, status=404, payload={"message": "Project not found"})
    with pytest.raises(NotFoundError):
        await fuul.event_status(EVM, "x")


# -- parse_retry_after ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        (" 3 ", 3.0),
        ("0.25", 0.25),
        ("0", 0.0),
        ("-5", 0.0),  # never negative
        ("inf", None),
        ("-inf", None),
        ("nan", None),
        ("1e400", None),
        ("soon", None),
        ("", None),
        ("   ", None),
        (None, None),
        ("Wed, 21 Oct 2015 07:28:00", None),  # a date without a zone is unreadable
    ],
)
def test_parse_retry_after_seconds_and_unreadable_values(
    header: str | None, expected: float | None
) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date_in_the_future_is_seconds_from_now() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30.0)
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now=now) == pytest.approx(30.0)


def test_parse_retry_after_http_date_in_the_past_is_zero() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now - 3600, usegmt=True), now=now) == 0.0


def test_parse_retry_after_http_date_uses_the_wall_clock_by_default() -> None:
    wait = parse_retry_after(formatdate(time.time() + 60, usegmt=True))
    assert wait is not None
    assert 58.0 <= wait <= 60.0


# -- what each status means (delivery.judge, the one table) ---------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        *[(s, Delivered) for s in (200, 201, 202, 204, 299)],
        (409, Duplicate),
        (429, RateLimited),
        *[(s, Retry) for s in (408, 500, 501, 502, 503, 504, 599)],
        *[(s, Stopped) for s in (401, 403, 404)],
        *[(s, Rejected) for s in (400, 402, 405, 410, 413, 415, 422, 301, 302, 304)],
    ],
)
def test_judge_maps_each_class_of_status(status: int, outcome: type) -> None:
    assert type(judge(Response(status, b"", None), lambda body: 1, 1)) is outcome


# -- base URL ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://api.example.com/api/v1/",
        "http://10.0.0.5:8080/api/v1/",
        "http://localhost.example.com/",
        "http://[2001:db8::1]/",
    ],
)
def test_resolve_base_url_refuses_non_loopback_plain_http(url: str) -> None:
    with pytest.raises(ValueError, match="plain-http"):
        resolve(url)
    assert resolve(url, allow_insecure_http=True).startswith(url.rstrip("/"))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:9/api/v1/", "http://127.0.0.1:9/api/v1/"),
        ("http://127.0.0.1:9/api/v1", "http://127.0.0.1:9/api/v1/"),
        ("http://localhost:8080/api/v1", "http://localhost:8080/api/v1/"),
        ("http://sandbox.localhost/api/v1/", "http://sandbox.localhost/api/v1/"),
        ("http://[::1]:8080/api/v1/", "http://[::1]:8080/api/v1/"),
        ("https://api.fuul.xyz/api/v1", "https://api.fuul.xyz/api/v1/"),
        ("https://api.stg.fuul.xyz/api/v1/", "https://api.stg.fuul.xyz/api/v1/"),
    ],
)
def test_resolve_base_url_accepts_https_and_loopback_and_appends_slash(
    url: str, expected: str
) -> None:
    assert resolve(url) == expected


@pytest.mark.parametrize("url", ["ftp://api.fuul.xyz/", "api.fuul.xyz/api/v1", "https:///x"])
def test_resolve_base_url_refuses_non_http_urls_and_urls_without_host(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        resolve(url)


def test_resolve_base_url_reads_fuul_base_url_when_none_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FUUL_BASE_URL", "https://api.stg.fuul.xyz/api/v1")
    assert resolve(None) == "https://api.stg.fuul.xyz/api/v1/"
    assert resolve("https://other.example/v1/") == "https://other.example/v1/"  # explicit wins
    monkeypatch.setenv("FUUL_BASE_URL", "http://evil.example/")
    with pytest.raises(ValueError, match="plain-http"):
        resolve(None)


def test_resolve_base_url_defaults_to_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FUUL_BASE_URL", raising=False)
    assert resolve(None) == DEFAULT_BASE_URL == "https://api.fuul.xyz/api/v1/"


def test_client_refuses_plain_http_unless_allowed() -> None:
    with pytest.raises(ValueError, match="plain-http"):
        FuulClient(API_KEY, base_url="http://api.example.com/")
    fuul = FuulClient(
        API_KEY,
        base_url="http://api.example.com/",
        config=ClientConfig(allow_insecure_http=True),
    )
    assert fuul.base_url == "http://api.example.com/"


# -- the key ------------------------------------------------------------------------------------------


async def test_client_reads_key_and_base_url_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, mocked: aioresponses
) -> None:
    monkeypatch.setenv("FUUL_API_KEY", API_KEY)
    monkeypatch.setenv("FUUL_BASE_URL", BASE)
    mocked.post(EVENTS_URL, status=201)
    async with FuulClient(config=wire_config()) as fuul:
        assert fuul.base_url == BASE
        await fuul.send_event("x", EVM, dedup_id="env-1")
    call = only_call(mocked, "POST", EVENTS_URL)
    assert call.kwargs["headers"]["Authorization"] == f"Bearer {API_KEY}"


@pytest.mark.parametrize("env_key", [None, "", "   "])
def test_client_without_a_key_refuses_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, env_key: str | None
) -> None:
    if env_key is None:
        monkeypatch.delenv("FUUL_API_KEY", raising=False)
    else:
        monkeypatch.setenv("FUUL_API_KEY", env_key)
    with pytest.raises(ClientStateError, match=r"no API key.*FUUL_API_KEY"):
        FuulClient(base_url=BASE)


def test_client_refuses_an_empty_explicit_key_even_if_the_environment_has_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FUUL_API_KEY", API_KEY)
    with pytest.raises(ClientStateError, match="no API key"):
        FuulClient("", base_url=BASE)


async def test_key_never_appears_in_repr_of_client_or_its_transport(
    fuul: FuulClient,
) -> None:
    assert API_KEY not in repr(fuul)
    assert "redacted" in repr(fuul)
    assert API_KEY not in str(fuul)
    assert API_KEY not in repr(fuul._transport)
    await fuul.aclose()
    assert API_KEY not in repr(fuul)


async def test_key_never_appears_in_any_error_raised_by_any_endpoint(
    fuul: FuulClient, mocked: aioresponses
) -> None:
    errors: list[FuulError] = []
    outcomes: list[dict[str, Any]] = [
        {"status": 400, "payload": {"message": ["name: bad"]}},
        {"status": 401},
        {"status": 403},
        {"status": 404},
        {"status": 429, "repeat": True},
        {"status": 500, "repeat": True},
        {"exception": aiohttp.ClientConnectionError("refused"), "repeat": True},
        {"exception": asyncio.TimeoutError(), "repeat": True},
    ]
    for outcome in outcomes:
        mocked.clear()
        mocked.post(EVENTS_URL, **outcome)
        mocked.post(BATCH_URL, **outcome)
        mocked.get(STATUS_RE, **outcome)
        for call in (
            fuul.send_event("x", EVM, dedup_id="k-1"),
            fuul.send_batch([Event("x", EVM, "k-2")]),
            fuul.event_status(EVM, "x"),
        ):
            with pytest.raises(FuulError) as info:
                await call
            errors.append(info.value)
    assert len(errors) == 3 * len(outcomes)
    for error in errors:
        assert_key_not_shown(error)
        assert API_KEY not in str(error.__cause__ or "")
        assert API_KEY not in str(error.__context__ or "")


# -- regressions of bugs found by these tests -----------------------------------------------------------------------------


async def test_send_event_gives_up_within_max_elapsed_even_if_retry_after_is_longer(
    mocked: aioresponses,
) -> None:
    mocked.post(EVENTS_URL, status=429, headers={"Retry-After": "30"}, repeat=True)
    retry = RetryPolicy(max_attempts=5, initial_backoff=0.001, max_elapsed=0.2)
    async with FuulClient(API_KEY, base_url=BASE, config=wire_config(retry=retry)) as fuul:
        # RetryPolicy: "given up after max_attempts tries or max_elapsed seconds,
        # whichever first". The call must raise RateLimitError(retry_after=30) at
        # once rather than sleep 30 s; a deadline of 10 s tells the two apart on any
        # machine.
        with pytest.raises(RateLimitError):
            await asyncio.wait_for(fuul.send_event("x", EVM, dedup_id="e-1"), 10)
