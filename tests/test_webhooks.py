"""aiofuul.webhooks.parse (good, bad, unknown-field and drifted bodies; the idempotency
key), and the sandbox's webhook sender against a receiver of the test's own: what it
POSTs, retries after a 500 or a timeout, gives up when bounded, never blocks a request."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pickle
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from aiohttp import web

from aiofuul import Event, FuulClient, FuulError, User, WebhookError, webhooks
from aiofuul.sandbox import Sandbox
from aiofuul.sandbox.cli import add_sandbox_arguments, sandbox_from_args
from aiofuul.sandbox.webhooks import WebhookRetry, WebhookSender
from conftest import API_KEY, EVM, FAST_LIMITS, fast_config

MOVEMENT: dict[str, Any] = {
    "type": "onchain-currency",
    "reason": "affiliate_payout",
    "status": "accepted",
    "status_details": None,
    "user_identifier": "0x52908400098527886E0F7030069857D2E4169EE7",
    "user_identifier_type": "evm_address",
    "amount": "1500000",
    "currency": {"name": "USDC", "address": "0xA0b8", "chain_id": 1},
    "conversion_name": "Trade",
    "created_at": "2026-03-04T05:06:07.890Z",
}
FAST_RETRY = WebhookRetry(attempts=5, initial_backoff=0.01, max_backoff=0.05, timeout=2.0)


def body(movement: dict[str, Any] | None = None, **envelope: Any) -> bytes:
    return msgspec.json.encode(
        {"event_type": "reward.earned", "movement": MOVEMENT if movement is None else movement}
        | envelope
    )


def changed(**fields: Any) -> dict[str, Any]:
    return MOVEMENT | fields


# -- parse ---------------------------------------------------------------------------


def test_parse_types_every_documented_field() -> None:
    reward = webhooks.parse(body())
    assert reward.event_type == "reward.earned"
    assert (reward.type, reward.reason, reward.status) == (
        "onchain-currency",
        "affiliate_payout",
        "accepted",
    )
    assert reward.status_details is None
    assert reward.user_identifier == MOVEMENT["user_identifier"]
    assert reward.user_identifier_type == "evm_address"
    assert reward.amount == Decimal(1500000)
    assert reward.currency is not None and reward.currency.name == "USDC"
    assert reward.currency.raw["chain_id"] == 1
    assert reward.conversion_name == "Trade"
    assert reward.created_at == datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=timezone.utc)
    assert reward.extra == {}
    assert reward.to_movement() == MOVEMENT
    assert webhooks.parse(body().decode()) == reward  # str bodies too


def test_unknown_fields_are_kept_never_refused() -> None:
    reward = webhooks.parse(body(changed(id="mv-1", tier={"rank": 2}), delivery_id="d-9"))
    assert reward.extra == {"id": "mv-1", "tier": {"rank": 2}}
    assert reward.raw["delivery_id"] == "d-9"
    assert reward.to_movement()["tier"] == {"rank": 2}


def test_undocumented_values_are_kept_as_sent() -> None:
    # A type Fuul adds later must reach the receiver's else branch, not a 400 and a retry loop.
    reward = webhooks.parse(body(changed(type="nft", reason="agency_payout", status="clawed")))
    assert (reward.type, reward.reason, reward.status) == ("nft", "agency_payout", "clawed")
    assert reward.type not in webhooks.MOVEMENT_TYPES
    assert "airdrop" in webhooks.MOVEMENT_TYPES


@pytest.mark.parametrize(
    ("fields", "check"),
    [
        ({"amount": 12.5}, lambda r: r.amount == Decimal("12.5")),
        ({"amount": 7}, lambda r: r.amount == 7),
        ({"amount": " 3.25 "}, lambda r: r.amount == Decimal("3.25")),
        ({"user_identifier": 12345}, lambda r: r.user_identifier == "12345"),
        ({"conversion_name": 3}, lambda r: r.conversion_name == "3"),
        ({"currency": "POINT"}, lambda r: r.currency.name == "POINT"),
        ({"currency": {"name": None}}, lambda r: r.currency.name is None),
        ({"currency": None}, lambda r: r.currency is None),
        ({"created_at": "2026-03-04T06:06:07+01:00"}, lambda r: r.created_at.hour == 5),
        ({"created_at": "2026-03-04T05:06:07"}, lambda r: r.created_at.tzinfo is not None),
        ({"created_at": 1772600767}, lambda r: r.created_at.year == 2026),
        ({"created_at": 1772600767890}, lambda r: r.created_at.microsecond == 890000),
        ({"created_at": "1772600767"}, lambda r: r.created_at.year == 2026),
        ({"created_at": None}, lambda r: r.created_at is None),
        ({"status_details": {"why": "fraud"}}, lambda r: r.status_details == {"why": "fraud"}),
        ({"user_identifier_type": None}, lambda r: r.user_identifier_type is None),
    ],
)
def test_drifted_bodies_decode(fields: dict[str, Any], check: Callable[[Any], bool]) -> None:
    assert check(webhooks.parse(body(changed(**fields))))


def test_missing_optional_fields_are_none() -> None:
    required = {k: MOVEMENT[k] for k in ("type", "reason", "status", "user_identifier", "amount")}
    reward = webhooks.parse(body(required))
    assert reward.currency is None and reward.created_at is None
    assert reward.conversion_name is None and reward.user_identifier_type is None


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        (b"", "body", "must be JSON"),
        (b"<html>502</html>", "body", "must be JSON"),
        (b"[1, 2]", "body", "JSON object"),
        (b'{"movement": {}}', "event_type", "is required"),
        (b'{"event_type": 3, "movement": {}}', "event_type", "is required"),
        (b'{"event_type": "reward.earned"}', "movement", "is required"),
        (b'{"event_type": "reward.earned", "movement": [1]}', "movement", "JSON object"),
        (body(changed(amount=None)), "movement.amount", "is required"),
        (
            body({k: v for k, v in MOVEMENT.items() if k != "status"}),
            "movement.status",
            "is required",
        ),
        (body(changed(type="")), "movement.type", "must not be empty"),
        (body(changed(reason=["x"])), "movement.reason", "must be a string"),
        (body(changed(user_identifier=True)), "movement.user_identifier", "must be a string"),
        (body(changed(amount="ten")), "movement.amount", "numeric string"),
        (body(changed(amount="NaN")), "movement.amount", "finite"),
        (body(changed(amount=False)), "movement.amount", "numeric string"),
        (body(changed(created_at="yesterday")), "movement.created_at", "ISO 8601"),
        (body(changed(currency=5)), "movement.currency", "an object"),
    ],
)
def test_bad_bodies_name_what_is_wrong(raw: bytes, field: str, words: str) -> None:
    with pytest.raises(WebhookError) as caught:
        webhooks.parse(raw)
    assert caught.value.field == field
    assert words in str(caught.value) and str(caught.value).startswith(field)
    assert caught.value.event_type is None


def test_another_event_type_says_which() -> None:
    with pytest.raises(WebhookError, match=r"reward\.earned") as caught:
        webhooks.parse(b'{"event_type": "reward.claimed", "claim": {}}')
    assert caught.value.event_type == "reward.claimed"
    assert isinstance(caught.value, FuulError) and isinstance(caught.value, ValueError)
    again = pickle.loads(pickle.dumps(caught.value))
    assert (again.field, again.event_type, str(again)) == (
        "event_type",
        "reward.claimed",
        str(caught.value),
    )


# -- the idempotency key -----------------------------------------------------------


def test_key_is_the_same_for_every_delivery_of_a_movement() -> None:
    key = webhooks.parse(body()).key
    assert key.startswith("rwd_") and key == webhooks.parse(body()).key
    same = [
        changed(amount=1500000),
        changed(amount="1500000.0"),
        changed(created_at="2026-03-04T06:06:07.890+01:00"),
        changed(currency={"chain_id": "1", "address": "0xA0b8", "name": "USDC"}),
        changed(attempt=2, sent_at="2026-03-04T05:07:00Z"),  # undocumented: left out
    ]
    for movement in same:
        assert webhooks.parse(body(movement)).key == key, movement


def test_key_differs_for_anything_documented() -> None:
    key = webhooks.parse(body()).key
    others = [
        changed(status="pending"),  # a status change is news, not a duplicate
        changed(amount="1500001"),
        changed(user_identifier="0x0000000000000000000000000000000000000001"),
        changed(reason="end_user_payout"),
        changed(created_at="2026-03-04T05:06:07.891Z"),
        changed(currency={"name": "USDT"}),
        changed(status_details="payout p-2"),
    ]
    keys = {webhooks.parse(body(movement)).key for movement in others}
    assert len(keys) == len(others) and key not in keys


# -- the sandbox's sender, against a receiver of the test's own ------------------------


@contextlib.asynccontextmanager
async def posting_to(
    rx: Receiver, retry: WebhookRetry = FAST_RETRY
) -> AsyncIterator[tuple[Sandbox, WebhookSender, FuulClient]]:
    """A sandbox POSTing webhooks to ``rx``, and a client sending to it."""
    sb = Sandbox(limits=FAST_LIMITS, webhook_url=rx.url, webhook_retry=retry)
    assert sb.webhooks is not None
    async with sb, FuulClient(API_KEY, base_url=sb.url, config=fast_config()) as fuul:
        yield sb, sb.webhooks, fuul


class Receiver:
    """An aiohttp server on loopback answering each POST with the next of ``plan``
    (a status, or "hang": no answer until the test ends), then 200."""

    def __init__(self, plan: list[int | str] | None = None):
        self.plan = list(plan or [])
        self.bodies: list[bytes] = []
        self.released = asyncio.Event()
        self.arrived = asyncio.Event()
        self.url = ""

    async def _post(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        self.arrived.set()
        answer = self.plan.pop(0) if self.plan else 200
        if answer == "hang":
            await self.released.wait()
            answer = 200
        assert isinstance(answer, int)
        return web.json_response({}, status=answer)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._post)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.released.set()
        await self._runner.cleanup()


async def test_sandbox_posts_one_reward_per_payout_matching_the_pipeline() -> None:
    other = User("0x0000000000000000000000000000000000000001", "evm_address")
    async with Receiver() as rx, posting_to(rx) as (_, sender, fuul):
        await fuul.send_event("trade", EVM, dedup_id="t-1")
        await fuul.send_batch(
            [Event("swap", EVM, dedup_id="s-1"), Event("swap", other, dedup_id="s-2")]
        )
        await fuul.send_event("trade", EVM, dedup_id="t-1")  # a 409: no second payout
        await asyncio.wait_for(sender.join(), 30)
        pipeline = await fuul.event_pipeline(dedup_id="t-1", event_name="trade")
    assert sender.delivered == 3 and sender.failed == 0
    rewards = [webhooks.parse(b) for b in rx.bodies]
    assert len({r.key for r in rewards}) == 3  # two payouts to EVM in one instant differ
    first = next(r for r in rewards if "'t-1'" in r.status_details)
    assert pipeline is not None
    payout = pipeline.payouts[0]
    assert first.amount == Decimal(payout["amount"]) and first.status == payout["status"]
    at = webhooks.parse(body(changed(created_at=payout["created_at"]))).created_at
    assert first.created_at == at
    assert first.user_identifier == EVM.identifier and first.type == "point"
    assert first.conversion_name == "Sandbox conversion" and first.extra == {"sandbox": True}


async def test_a_500_and_a_timeout_are_retried_until_a_2xx() -> None:
    retry = WebhookRetry(attempts=5, initial_backoff=0.01, max_backoff=0.05, timeout=0.3)
    async with Receiver([500, "hang", 503]) as rx, posting_to(rx, retry) as (_, sender, fuul):
        await fuul.send_event("trade", EVM, dedup_id="t-1")
        await asyncio.wait_for(sender.join(), 30)
    assert [a.status for a in sender.attempts] == [500, None, 503, 200]
    assert "no answer within" in (sender.attempts[1].error or "")
    assert len(set(rx.bodies)) == 1 and len(rx.bodies) == 4  # the same body each time
    assert (sender.delivered, sender.failed) == (1, 0)


async def test_retries_are_bounded_and_the_give_up_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    retry = WebhookRetry(attempts=3, initial_backoff=0.01, max_backoff=0.02)
    async with Receiver([500] * 10) as rx, posting_to(rx, retry) as (_, sender, fuul):
        await fuul.send_event("trade", EVM, dedup_id="t-1")
        await asyncio.wait_for(sender.join(), 30)
    assert len(rx.bodies) == 3 and (sender.delivered, sender.failed) == (0, 1)
    assert "given up after 3 attempts (HTTP 500)" in caplog.text


async def test_a_refused_connection_is_retried() -> None:
    async with Receiver() as gone:
        pass  # its port is closed now
    retry = WebhookRetry(attempts=2, initial_backoff=0.01)
    async with posting_to(gone, retry) as (_, sender, fuul):
        await fuul.send_event("trade", EVM, dedup_id="t-1")
        await asyncio.wait_for(sender.join(), 30)
    assert [a.status for a in sender.attempts] == [None, None]
    assert all(a.error for a in sender.attempts) and sender.failed == 1


async def test_a_hung_receiver_never_holds_up_the_sandbox() -> None:
    async with Receiver(["hang"]) as rx, posting_to(rx) as (_, sender, fuul):
        await fuul.send_event("trade", EVM, dedup_id="t-1")
        await asyncio.wait_for(rx.arrived.wait(), 30)
        # The first webhook hangs; the sandbox still answers at once.
        result = await fuul.send_event("trade", EVM, dedup_id="t-2")
        assert not result.duplicate and not rx.released.is_set()
        assert await fuul.event_status(EVM, "trade")
        rx.released.set()
        await asyncio.wait_for(sender.join(), 30)
    assert sender.delivered == 2


async def test_no_payout_no_webhook() -> None:
    async with Receiver() as rx, posting_to(rx) as (sb, sender, fuul):
        sb.pipeline_status = "failed"
        await fuul.send_event("trade", EVM, dedup_id="t-1")
        await asyncio.wait_for(sender.join(), 30)
    assert rx.bodies == [] and sender.attempts == []


async def test_stop_drops_what_is_pending_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    async with Receiver() as rx, posting_to(rx) as (sb, _, fuul):
        sb.pipeline_delay = 3600.0  # due in an hour: no payout made yet at stop
        await fuul.send_event("trade", EVM, dedup_id="t-1")
    assert rx.bodies == [] and "1 stored event(s) not processed yet" in caplog.text
    async with Receiver(["hang"]) as rx, posting_to(rx) as (_, _, fuul):
        await fuul.send_event("trade", EVM, dedup_id="t-1")
        await asyncio.wait_for(rx.arrived.wait(), 30)  # paid, its webhook hangs at stop
    assert "1 webhook(s) not delivered and 0 stored event(s)" in caplog.text


def test_the_webhook_url_option() -> None:
    parser = argparse.ArgumentParser()
    add_sandbox_arguments(parser)
    sb = sandbox_from_args(parser.parse_args(["--webhook-url", "http://127.0.0.1:9/hook"]))
    assert sb.webhooks is not None and sb.webhooks.url == "http://127.0.0.1:9/hook"
    assert sandbox_from_args(parser.parse_args([])).webhooks is None
    with pytest.raises(ValueError, match="webhook_url must be an http"):
        sandbox_from_args(parser.parse_args(["--webhook-url", "ftp://x"]))
    with pytest.raises(ValueError, match="attempts"):
        WebhookRetry(attempts=0)
