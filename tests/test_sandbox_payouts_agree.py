"""The sandbox has one view of payouts, FuulState's: for the same events, the pipeline
answer (``GET events/pipeline``), the movements list (``GET payouts/movements``) and the
``reward.earned`` webhooks show the same payouts (same count, same amounts, the
referrer's share included), made lazily yet promptly when webhooks are on."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest_asyncio
from aiohttp import web

from aiofuul import Event, FuulClient, User, webhooks
from aiofuul.sandbox import Sandbox, WebhookRetry
from conftest import API_KEY, EVM, FAST_LIMITS, fast_config

ALICE = EVM
BOB = User("0x1111111111111111111111111111111111111111", "evm_address")
CAROL = User("carol@example.com", "email")
USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
RETRY = WebhookRetry(attempts=5, initial_backoff=0.01, max_backoff=0.05, timeout=5.0)
# The sandbox's status_details names the payout a webhook is for.
PAYOUT_ID = re.compile(r"sandbox payout (\S+) for event")


class Receiver:
    """A loopback receiver keeping each webhook once, by its idempotency key; the first
    ``fail`` POSTs are answered 500."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.posts = 0
        self.rewards: dict[str, webhooks.RewardEarned] = {}
        self.url = ""

    async def _post(self, request: web.Request) -> web.Response:
        self.posts += 1
        reward = webhooks.parse(await request.read())
        self.rewards.setdefault(reward.key, reward)
        if self.fail:
            self.fail -= 1
            return web.Response(status=500)
        return web.Response(status=200)

    def by_payout(self) -> dict[str, webhooks.RewardEarned]:
        found = {}
        for reward in self.rewards.values():
            match = PAYOUT_ID.match(str(reward.status_details))
            assert match is not None, reward.status_details
            found[match.group(1)] = reward
        return found


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rx = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rx._post)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    rx.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        yield rx
    finally:
        await runner.cleanup()


async def until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition``; the generous deadline only fails on a real hang."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def sandbox_to(rx: Receiver) -> Sandbox:
    return Sandbox(limits=FAST_LIMITS, webhook_url=rx.url, webhook_retry=RETRY)


def client_of(sb: Sandbox) -> FuulClient:
    return FuulClient(API_KEY, base_url=sb.url, config=fast_config())


async def test_pipeline_movements_and_webhooks_agree(receiver: Receiver) -> None:
    receiver.fail = 1  # a planted 500: retried, stored once
    sent = [
        Event("trade", ALICE, dedup_id="a-1", args={"amount": 10, "volume_usd": 100}),
        Event("trade", ALICE, dedup_id="a-2", args={"amount": "2.5"}),
        Event(
            "swap",
            ALICE,
            dedup_id="a-3",
            args={"amount": 5, "currency_address": USDC, "chain_id": 8453},
        ),
        Event("deposit", CAROL, dedup_id="c-1", args={"amount": 7}),  # no referrer
        Event("pageview", ALICE, dedup_id="a-4", args={"amount": 1}),
        Event("unpaid", ALICE, dedup_id="a-5", args={"amount": 99}),  # no trigger: no payout
    ]
    sb = sandbox_to(receiver)
    sb.state.set_referrer(ALICE, BOB, code="BOB1")
    async with sb, client_of(sb) as fuul:
        await fuul.send_event(sent[0].name, ALICE, dedup_id="a-1", args=sent[0].args)
        await fuul.send_batch(sent[1:])
        assert sb.webhooks is not None
        await asyncio.wait_for(sb.webhooks.join(), 30)

        pipeline: dict[str, list[dict[str, Any]]] = {}
        pipeline_moves: dict[str, list[dict[str, Any]]] = {}
        for event in sent:
            answer = await fuul.event_pipeline(dedup_id=event.dedup_id, event_name=event.name)
            assert answer is not None and answer.trigger_executions[0].status == "success"
            pipeline[event.dedup_id] = answer.payouts
            pipeline_moves[event.dedup_id] = answer.movements
        listed = {
            m.payout_id: m
            for user in (ALICE, BOB, CAROL)
            for kind in ("point", "onchain-currency")
            async for m in fuul.payouts.movements(user, type=kind, page_size=2)
        }
    assert (sb.webhooks.delivered, sb.webhooks.failed) == (len(receiver.rewards), 0)
    assert receiver.posts == len(receiver.rewards) + 1  # the 500 was retried, stored once

    # Alice's four paid events pay her and Bob; Carol's pays her alone; "unpaid" nothing.
    expected = {
        "a-1": [Decimal(10), Decimal(1)],
        "a-2": [Decimal("2.5"), Decimal("0.25")],
        "a-3": [Decimal(5), Decimal("0.5")],
        "c-1": [Decimal(7)],
        "a-4": [Decimal(1), Decimal("0.1")],
        "a-5": [],
    }
    for dedup_id, amounts in expected.items():
        assert [Decimal(p["amount"]) for p in pipeline[dedup_id]] == amounts, dedup_id
        assert [p["is_referrer"] for p in pipeline[dedup_id]] == [False, True][: len(amounts)]
    every = [p for payouts in pipeline.values() for p in payouts]
    hooks = receiver.by_payout()
    assert len(every) == len(listed) == len(hooks) == 9
    assert {p["id"] for p in every} == set(listed) == set(hooks)
    assert len(sb.state.payouts) == 9  # no second maker of payouts anywhere
    for p in every:
        move, hook = listed[p["id"]], hooks[p["id"]]
        amount = Decimal(p["amount"])
        assert move.total_amount == hook.amount == amount
        assert move.user_identifier == hook.user_identifier == p["user_identifier"]
        assert move.is_referrer is p["is_referrer"]
        assert hook.reason == ("affiliate_payout" if p["is_referrer"] else "end_user_payout")
        assert hook.type == p["type"] and hook.status == p["status"] == move.payout_status
        assert hook.created_at is not None and move.date == hook.created_at
        if p["is_referrer"]:
            assert p["user_identifier"] == BOB.identifier
            assert move.referrer_identifier == BOB.identifier
    swap = hooks[pipeline["a-3"][0]["id"]]
    assert swap.currency is not None and swap.currency.raw["address"] == USDC
    # The pipeline's movements are the movements list's rows for that event.
    for dedup_id, moves in pipeline_moves.items():
        assert [m["payout_id"] for m in moves] == [p["id"] for p in pipeline[dedup_id]]
        assert all(m["dedup_id"] == dedup_id for m in moves)


async def test_webhooks_go_out_without_any_read_or_join(receiver: Receiver) -> None:
    sb = sandbox_to(receiver)
    sb.state.set_referrer(ALICE, BOB)
    async with sb, client_of(sb) as fuul:
        for n in range(3):
            await fuul.send_event("trade", ALICE, dedup_id=f"t-{n}", args={"amount": 4})
        # Nothing reads: the sender's own catch-up, after the sends, made the payouts.
        await until(lambda: len(receiver.rewards) == 6, "six webhooks")
        assert sb.state.unprocessed() == 0
    amounts = sorted(r.amount for r in receiver.rewards.values())
    assert amounts == [Decimal("0.4")] * 3 + [Decimal(4)] * 3


async def test_without_webhooks_payouts_wait_for_a_read(sandbox: Sandbox) -> None:
    """A load test that reads nothing makes no payouts: the state is lazy."""
    async with client_of(sandbox) as fuul:
        await fuul.send_batch([Event("trade", ALICE, dedup_id=f"l-{n}") for n in range(50)])
        assert sandbox.state.unprocessed() == 50 and sandbox.state.payouts == []
        page = await fuul.payouts.movements(ALICE, type="point")
    assert page.total == 50 and sandbox.state.unprocessed() == 0


async def test_the_pipeline_delay_holds_every_view_back(receiver: Receiver) -> None:
    sb = sandbox_to(receiver)
    sb.pipeline_delay = 1.0  # long enough to read "pending" on a loaded machine
    async with sb, client_of(sb) as fuul:
        await fuul.send_event("trade", ALICE, dedup_id="d-1", args={"amount": 3})
        pending = await fuul.event_pipeline(dedup_id="d-1", event_name="trade")
        assert pending is not None and pending.trigger_executions[0].status == "pending"
        assert (
            pending.payouts == [] and (await fuul.payouts.movements(ALICE, type="point")).total == 0
        )
        # Due after the delay: the sender wakes for it, with no read and no join.
        await until(lambda: len(receiver.rewards) == 1, "the webhook once due")
        done = await fuul.event_pipeline(dedup_id="d-1", event_name="trade")
        moves = await fuul.payouts.movements(ALICE, type="point")
    (reward,) = receiver.rewards.values()
    assert done is not None and [Decimal(p["amount"]) for p in done.payouts] == [reward.amount]
    assert moves.total == 1 and moves.items[0].total_amount == reward.amount == 3
    assert moves.items[0].date == reward.created_at


async def test_a_failed_pipeline_pays_in_no_view(receiver: Receiver) -> None:
    sb = sandbox_to(receiver)
    sb.pipeline_status = "failed"
    async with sb, client_of(sb) as fuul:
        await fuul.send_event("trade", ALICE, dedup_id="f-1")
        assert sb.webhooks is not None
        await asyncio.wait_for(sb.webhooks.join(), 30)
        answer = await fuul.event_pipeline(dedup_id="f-1", event_name="trade")
        assert answer is not None and answer.payouts == [] and answer.movements == []
        assert (await fuul.payouts.movements(ALICE, type="point")).total == 0
    assert receiver.rewards == {} and sb.webhooks.attempts == []


async def test_events_stored_by_a_test_are_posted_too(receiver: Receiver) -> None:
    sb = sandbox_to(receiver)
    # Stored before the sandbox serves, and a payout made outside its loop: both POSTed.
    sb.state.store_events([Event("trade", ALICE, dedup_id="s-1", args={"amount": 2})])
    sb.state.catch_up()
    async with sb:
        # Stored while it serves, with no send to nudge it: the sender still looks.
        sb.state.store_events([Event("trade", CAROL, dedup_id="s-2", args={"amount": 3})])
        await until(lambda: len(receiver.rewards) == 2, "both webhooks, with no join")
        assert sb.webhooks is not None
        await asyncio.wait_for(sb.webhooks.join(), 30)
    assert sorted(r.amount for r in receiver.rewards.values()) == [2, 3]
