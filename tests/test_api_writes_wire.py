"""The writes of aiofuul.api on the wire, with MockTransport: each write's method, path,
query and body exactly; retries by meaning (a PUT or DELETE retried like a read, a
``generate`` or ``use`` sent again only when it surely did not arrive); 422 and 403;
and bad input refused before any request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from aiofuul import (
    DEFAULT_LIMITS,
    AmbiguousWriteError,
    ConnectError,
    FuulClient,
    PermissionDeniedError,
    RetryPolicy,
    TransportError,
    UnprocessableEntityError,
    User,
    ValidationError,
)
from aiofuul.api import Written
from aiofuul.testing import MockRequest, MockTransport, respond
from aiofuul.wire.transport import Response
from conftest import EVM, fast_config, free_port

U = EVM.identifier
BOB = User("bob@example.com", "email")
UID = {"user_identifier": U, "user_identifier_type": "evm_address"}


def client(handler: Callable[[MockRequest], Response]) -> tuple[FuulClient, MockTransport]:
    transport = MockTransport(handler)
    # Limits of a tenth of a second: a 429 costs the lane a period.
    config = fast_config(limits=DEFAULT_LIMITS.scaled(1 / 600))
    return FuulClient("k", transport=transport, config=config), transport


#: (call, method, path, query, body, answer): every write, and exactly what goes on the wire.
CASES: list[tuple[Callable[[FuulClient], Any], str, str, dict[str, str], Any, Any]] = [
    (lambda f: f.users.set_referrer(EVM, BOB), "PUT", "user-referrers", {},
     {**UID, "referrer_identifier": "bob@example.com", "referrer_identifier_type": "email"}, {}),
    (lambda f: f.users.set_referrer(EVM, BOB, referral_code="B1"), "PUT", "user-referrers", {},
     {**UID, "referrer_identifier": "bob@example.com", "referrer_identifier_type": "email",
      "referral_code": "B1"}, None),
    (lambda f: f.users.remove_referrer(EVM), "DELETE", "user-referrers", UID, None, None),
    (lambda f: f.referral_codes.generate(EVM), "POST", "referral_codes",
     {**UID, "quantity": "5"}, None, [{"code": "A"}]),
    (lambda f: f.referral_codes.generate(EVM, quantity=2, max_uses=0), "POST", "referral_codes",
     {**UID, "quantity": "2", "max_uses": "0"}, None, [{"code": "A"}, {"code": "B"}]),
    (lambda f: f.referral_codes.use("AB/1", EVM), "PATCH", "referral_codes/AB%2F1/use", UID, {},
     None),
    (lambda f: f.referral_codes.use("AB", EVM, signature="0xs", signature_message="m",
                                    chain_id=8453),
     "PATCH", "referral_codes/AB/use", UID,
     {"signature": "0xs", "signature_message": "m", "chain_id": 8453}, None),
    (lambda f: f.referral_codes.set_max_uses("AB", None), "PATCH", "referral_codes/AB", {},
     {"max_uses": None}, None),
    (lambda f: f.referral_codes.set_max_uses("AB", 0), "PATCH", "referral_codes/AB", {},
     {"max_uses": 0}, None),
    (lambda f: f.referral_codes.remove_referral("AB", EVM, BOB), "DELETE",
     "referral_codes/AB/referrals",
     {**UID, "referrer_identifier": "bob@example.com", "referrer_identifier_type": "email"},
     None, None),
    (lambda f: f.audiences.add(7, [EVM, BOB]), "POST", "audiences/audience-segments/7/entries/batch",
     {}, {"entries": [UID, {"user_identifier": "bob@example.com",
                            "user_identifier_type": "email"}]}, {"added": 2}),
    (lambda f: f.audiences.remove("seg 1", BOB), "DELETE",
     "audiences/audience-segments/seg%201/entries/bob%40example.com",
     {"user_identifier_type": "email"}, None, None),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1]} {c[2]}")
async def test_each_write_puts_exactly_this_on_the_wire(case: Any) -> None:
    call, method, path, query, body, answer = case
    fuul, transport = client(lambda r: respond(200, answer) if answer is not None else respond(204))
    result = await call(fuul)
    [request] = transport.requests
    assert (request.method, request.path, request.params) == (method, path, query)
    assert request.json() == body
    if isinstance(result, Written):
        assert result.body == answer
    elif path == "referral_codes":
        assert result == [c["code"] for c in answer]
    else:
        assert [r.body for r in result] == [answer]


async def test_audiences_add_splits_any_number_into_requests_of_100() -> None:
    fuul, transport = client(lambda r: respond(201, {"added": len(r.json()["entries"])}))
    users = [User(f"u{i}@example.com", "email") for i in range(250)]
    answers = await fuul.audiences.add("vip", users)
    assert [a.body["added"] for a in answers] == [100, 100, 50]
    sent = [e["user_identifier"] for r in transport.requests for e in r.json()["entries"]]
    assert sent == [u.identifier for u in users]
    assert await fuul.audiences.add("vip", []) == []


async def test_a_422_is_its_own_error_with_the_servers_message() -> None:
    message = "Referral code has reached its max uses"
    fuul, transport = client(lambda r: respond(422, {"message": message, "statusCode": 422}))
    with pytest.raises(UnprocessableEntityError, match="max uses") as caught:
        await fuul.referral_codes.use("AB", EVM)
    assert caught.value.status == 422 and caught.value.message == message
    with pytest.raises(UnprocessableEntityError):
        await fuul.users.remove_referrer(EVM)
    assert len(transport.requests) == 2  # never retried


async def test_a_403_says_a_write_needs_a_service_role_key() -> None:
    fuul, transport = client(lambda r: respond(403, {"message": "Forbidden resource"}))
    with pytest.raises(PermissionDeniedError, match="service-role"):
        await fuul.users.set_referrer(EVM, BOB)
    assert len(transport.requests) == 1


def failing_first(
    failure: Callable[[], Response], answer: Any = None
) -> Callable[[MockRequest], Response]:
    """Fails the first request as ``failure`` says (a Response, or it raises), then answers."""
    seen = [0]

    def handler(request: MockRequest) -> Response:
        seen[0] += 1
        return failure() if seen[0] == 1 else respond(200, answer)

    return handler


def timeout() -> Response:
    raise TransportError("POST referral_codes: timed out after 2.0 s")


def refused() -> Response:
    raise ConnectError("POST referral_codes: ClientConnectorError: connection refused")


async def test_a_timeout_after_sending_a_generate_is_ambiguous_and_not_sent_again() -> None:
    fuul, transport = client(failing_first(timeout, [{"code": "A"}]))
    with pytest.raises(AmbiguousWriteError) as caught:
        await fuul.referral_codes.generate(EVM)
    assert len(transport.requests) == 1
    error = caught.value
    assert "may have taken effect" in str(error) and "referral_codes.list" in str(error)
    assert isinstance(error, TransportError) and isinstance(error.cause, TransportError)
    assert (error.method, error.path) == ("POST", "referral_codes")


@pytest.mark.parametrize(
    "failure",
    [timeout, lambda: respond(500), lambda: respond(502), lambda: respond(200, body=b"<html>")],
    ids=["timeout", "500", "502", "unreadable-2xx"],
)
async def test_use_after_an_ambiguous_failure_raises_and_points_at_status(failure: Any) -> None:
    fuul, transport = client(failing_first(failure))
    with pytest.raises(AmbiguousWriteError, match=r"referral_codes\.status"):
        await fuul.referral_codes.use("AB", EVM)
    assert len(transport.requests) == 1


@pytest.mark.parametrize(
    "failure",
    [refused, lambda: respond(503), lambda: respond(429, retry_after=0.01)],
    ids=["connection-refused", "503", "429"],
)
async def test_a_generate_that_surely_did_not_arrive_is_sent_again(failure: Any) -> None:
    fuul, transport = client(failing_first(failure, [{"code": "A"}]))
    assert await fuul.referral_codes.generate(EVM, quantity=1) == ["A"]
    assert len(transport.requests) == 2


@pytest.mark.parametrize(
    "call",
    [lambda f: f.users.set_referrer(EVM, BOB), lambda f: f.users.remove_referrer(EVM),
     lambda f: f.referral_codes.set_max_uses("AB", 3),
     lambda f: f.referral_codes.remove_referral("AB", EVM, BOB),
     lambda f: f.audiences.add(1, [EVM]), lambda f: f.audiences.remove(1, EVM)],
    ids=["set_referrer", "remove_referrer", "set_max_uses", "remove_referral", "add", "remove"],
)  # fmt: skip
@pytest.mark.parametrize("failure", [timeout, lambda: respond(500), lambda: respond(429)])
async def test_idempotent_writes_are_retried_like_reads(call: Any, failure: Any) -> None:
    fuul, transport = client(failing_first(failure, {}))
    await call(fuul)
    assert len(transport.requests) == 2


BAD: list[tuple[Callable[[FuulClient], Any], str]] = [
    (lambda f: f.users.set_referrer(EVM, EVM), "referrer: must not be the user itself"),
    (lambda f: f.users.set_referrer(EVM, "bob"), "referrer"),
    (lambda f: f.users.set_referrer(EVM, BOB, referral_code=""), "referral_code: must not be empty"),
    (lambda f: f.users.remove_referrer(User("x", "evm_address")), "user.identifier"),
    (lambda f: f.referral_codes.generate(EVM, quantity=51), "quantity: must be an integer from 1 to 50"),
    (lambda f: f.referral_codes.generate(EVM, quantity=0), "quantity"),
    (lambda f: f.referral_codes.generate(EVM, max_uses=-1), "max_uses"),
    (lambda f: f.referral_codes.use("", EVM), "code: must not be empty"),
    (lambda f: f.referral_codes.use("AB", EVM, signature="s"), "signature_message: must be given"),
    (lambda f: f.referral_codes.use("AB", EVM, signature_message="m"), "signature: must be given"),
    (lambda f: f.referral_codes.use("AB", EVM, chain_id=0), "chain_id"),
    (lambda f: f.referral_codes.set_max_uses("AB", -1), "max_uses: must be an integer from 0"),
    (lambda f: f.referral_codes.set_max_uses("AB", True), "max_uses"),
    (lambda f: f.referral_codes.remove_referral("AB", EVM, None), "referrer"),
    (lambda f: f.audiences.add("", [EVM]), "segment_id: must not be empty"),
    (lambda f: f.audiences.add(1, EVM), "users: must be a list of users"),
    (lambda f: f.audiences.add(1, [EVM, "bob"]), "users[1]"),
    (lambda f: f.audiences.remove(1, None), "user"),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD, ids=[b[1] for b in BAD])
async def test_bad_input_is_refused_before_any_request_naming_field_and_rule(case: Any) -> None:
    call, expected = case
    fuul, transport = client(lambda r: respond(200, {}))
    with pytest.raises(ValidationError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        await call(fuul)
    assert transport.requests == []


async def test_the_aiohttp_transport_says_a_refused_connection_was_not_sent() -> None:
    """Nothing listens on the port: every try is a ConnectError, so even a generate is
    tried again, and the last ConnectError (not an ambiguous error) is raised."""
    retry = RetryPolicy(max_attempts=3, initial_backoff=0.01)
    config = fast_config(retry=retry)
    async with FuulClient("k", base_url=f"http://127.0.0.1:{free_port()}/", config=config) as fuul:
        with pytest.raises(ConnectError):
            await fuul.referral_codes.generate(EVM)
        assert fuul._lanes["referral_codes"].requests == 3
