"""The transport seam: the Transport protocol, aiofuul.testing.MockTransport and respond(),
and the base URL's refusal of plain http, told apart by type."""

from __future__ import annotations

import argparse
import asyncio
from email.utils import formatdate

import pytest

from aiofuul import TransportError
from aiofuul.cli._common import CLIError, add_client_arguments, open_client
from aiofuul.engine.delivery import RateLimited, Rejected, Stopped, judge
from aiofuul.testing import MockRequest, MockTransport, respond
from aiofuul.wire.transport import (
    AiohttpTransport,
    InsecureURLError,
    Response,
    Transport,
    resolve_base_url,
)


def created(request: MockRequest) -> Response:
    return respond(201)


# -- MockTransport --------------------------------------------------------------------
async def test_records_every_request_in_order() -> None:
    transport = MockTransport(created)
    await transport.request("POST", "events", body=b'{"name":"signup"}')
    await transport.request("GET", "events/status", params={"name": "signup", "n": "1"})
    assert transport.requests == [
        MockRequest("POST", "events", b'{"name":"signup"}', {}),
        MockRequest("GET", "events/status", None, {"name": "signup", "n": "1"}),
    ]
    assert transport.requests[0].json() == {"name": "signup"}
    assert transport.requests[1].json() is None


async def test_params_are_copied_into_a_plain_dict() -> None:
    transport = MockTransport(created)
    params = {"project_id": "p-1"}
    await transport.request("GET", "conversions", params=params)
    params["project_id"] = "changed"
    assert transport.requests[0].params == {"project_id": "p-1"}


async def test_handler_decides_by_request() -> None:
    def handler(request: MockRequest) -> Response:
        return respond(201) if request.path == "events" else respond(404)

    transport = MockTransport(handler)
    assert (await transport.request("POST", "events", body=b"{}")).status == 201
    answer = await transport.request("POST", "elsewhere", body=b"{}")
    assert answer.status == 404
    assert type(judge(answer, lambda body: 1, 1)) is Stopped


async def test_async_handler_is_awaited() -> None:
    async def handler(request: MockRequest) -> Response:
        await asyncio.sleep(0)
        return respond(200, json={"ok": True})

    answer = await MockTransport(handler).request("GET", "events/pipeline")
    assert answer == Response(200, b'{"ok":true}', None)


async def test_transport_error_from_handler_propagates_and_is_recorded() -> None:
    def handler(request: MockRequest) -> Response:
        raise TransportError("POST events: connection reset")

    transport = MockTransport(handler)
    with pytest.raises(TransportError, match="connection reset"):
        await transport.request("POST", "events", body=b"{}")
    assert len(transport.requests) == 1


async def test_handler_returning_something_else_is_named() -> None:
    def handler(request: MockRequest) -> object:
        return 201

    transport = MockTransport(handler)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"returned int, not a Response"):
        await transport.request("POST", "events")


async def test_close_is_recorded_and_harmless() -> None:
    transport = MockTransport(created)
    assert not transport.closed
    await transport.close()
    await transport.close()
    assert transport.closed
    assert (await transport.request("POST", "events")).status == 201


# -- respond() ------------------------------------------------------------------------
def test_respond_defaults_to_an_empty_body() -> None:
    assert respond(201) == Response(201, b"", None)


def test_respond_encodes_json_and_carries_the_server_message() -> None:
    answer = respond(400, json={"message": ["name must be a string"]})
    assert answer.body == b'{"message":["name must be a string"]}'
    assert type(judge(answer, lambda body: 1, 1)) is Rejected
    assert answer.error().message == ["name must be a string"]


def test_respond_takes_a_raw_body() -> None:
    assert respond(502, body=b"<html>bad gateway</html>").body == b"<html>bad gateway</html>"


def test_respond_refuses_json_and_body_together() -> None:
    with pytest.raises(ValueError, match="not both"):
        respond(200, json={"a": 1}, body=b"{}")


@pytest.mark.parametrize(("value", "seconds"), [(2, 2.0), (0.5, 0.5), ("120", 120.0)])
def test_respond_retry_after_in_seconds_or_as_the_header(
    value: float | str, seconds: float
) -> None:
    answer = respond(429, retry_after=value)
    assert answer.retry_after == seconds
    assert type(judge(answer, lambda body: 1, 1)) is RateLimited


def test_respond_retry_after_as_an_http_date() -> None:
    import time

    answer = respond(503, retry_after=formatdate(time.time() + 60, usegmt=True))
    assert answer.retry_after is not None
    assert 55 <= answer.retry_after <= 61


def test_respond_unreadable_retry_after_is_none() -> None:
    assert respond(429, retry_after="soon").retry_after is None


# -- the Transport protocol -----------------------------------------------------------
async def test_mock_and_aiohttp_transports_are_transports() -> None:
    aio = AiohttpTransport("k", "https://api.fuul.xyz/api/v1/", timeout=1.0, max_response_bytes=1)
    try:
        assert isinstance(aio, Transport)
        assert isinstance(MockTransport(created), Transport)
    finally:
        await aio.close()


def test_an_object_without_the_methods_is_not_a_transport() -> None:
    class OnlyRequest:
        async def request(self, method: str, path: str) -> Response:
            return respond(200)

    assert not isinstance(OnlyRequest(), Transport)
    assert not isinstance(object(), Transport)


# -- plain http, decided by type ------------------------------------------------------
def test_plain_http_refusal_is_an_insecure_url_error_and_a_value_error() -> None:
    with pytest.raises(InsecureURLError) as info:
        resolve_base_url("http://api.example.com/api/v1/")
    assert isinstance(info.value, ValueError)
    # The other refusals stay plain ValueErrors.
    with pytest.raises(ValueError, match="http") as other:
        resolve_base_url("ftp://api.example.com/")
    assert not isinstance(other.value, InsecureURLError)


def _cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_client_arguments(parser)
    return parser.parse_args(argv)


def test_cli_explains_a_plain_http_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUUL_API_KEY", "sk_test_key")
    with pytest.raises(CLIError, match="not loopback: the API key would travel in clear"):
        open_client(_cli_args("--base-url", "http://api.example.com/"))
    with pytest.raises(CLIError, match="must be an http") as info:
        open_client(_cli_args("--base-url", "ftp://api.example.com/"))
    assert "travel in clear" not in str(info.value)
