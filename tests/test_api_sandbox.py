"""The endpoint groups against the sandbox's small Fuul (real sockets): one coherent
state answers every endpoint, each paged in its own style, judged by the sandbox's own
table of parameters."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from decimal import Decimal

import aiohttp
import pytest

from aiofuul import FuulClient, Limits, RateLimit, SyncFuulClient, User
from aiofuul.errors import PermissionDeniedError
from aiofuul.sandbox import Sandbox
from aiofuul.wire.models import Event
from conftest import API_KEY, EVM, FAST_LIMITS, fast_config

ALICE = EVM
BOB = User("0x1111111111111111111111111111111111111111", "evm_address")
CAROL = User("carol@example.com", "email")
USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"


def seed(sb: Sandbox) -> None:
    """Bob referred Alice and Carol with his code; Alice trades 12 times for points and
    once on chain; Carol never trades."""
    sb.state.add_affiliate(BOB, name="Bob", tier="gold")
    sb.state.set_referrer(ALICE, BOB, code="BOB1")
    sb.state.set_referrer(CAROL, BOB, code="BOB1")
    sb.state.add_audience(ALICE, "Whales", badge_name="Whale")
    trades = [
        Event(name="trade", user=ALICE, dedup_id=f"t{i}", args={"amount": 10, "volume_usd": 100})
        for i in range(12)
    ]
    onchain = {"amount": 5, "currency_address": USDC, "chain_id": 8453, "volume_usd": 50}
    trades.append(Event(name="swap", user=ALICE, dedup_id="s1", args=onchain))
    sb.state.store_events(trades)


async def test_one_state_answers_every_endpoint(sandbox: Sandbox, client: FuulClient) -> None:
    seed(sandbox)
    fuul = client
    who = await fuul.users.referrer(ALICE)
    assert (who.referrer_identifier, who.referrer_name, who.referrer_codes) == (
        BOB.identifier, "Bob", ["BOB1"]
    )  # fmt: skip
    nobody = await fuul.users.referrer(BOB)
    assert nobody.referrer_identifier is None and nobody.referrer_name is None

    codes = [c async for c in fuul.referral_codes.list(BOB, page_size=1)]
    assert [(c.code, c.uses, c.total_users) for c in codes] == [("BOB1", 2, 2)]
    assert {u.identifier for u in codes[0].used_by or []} == {ALICE.identifier, CAROL.identifier}
    status = await fuul.referral_codes.status(ALICE)
    assert status.referred and status.code == "BOB1" and status.referred_at is not None
    assert (await fuul.referral_codes.status(BOB)).referred is False
    assert (await fuul.referral_codes.get("BOB1")).available is True
    assert (await fuul.referral_codes.get("NOPE")).available is False

    bob = await fuul.affiliates.get(BOB)
    assert bob is not None and bob.current_tier is not None and bob.current_tier.slug == "gold"
    assert [c.code for c in bob.codes or []] == ["BOB1"]
    assert await fuul.affiliates.get(ALICE) is None
    assert await fuul.affiliates.code_available("BOB1") is False
    assert await fuul.affiliates.code_available("FREE1") is True

    # Payouts: 12 point trades and 1 on-chain swap for Alice, a tenth of each for Bob.
    moves = [m async for m in fuul.payouts.movements(ALICE, type="point", page_size=5)]
    assert [m.dedup_id for m in moves] == [f"t{i}" for i in range(12)]
    assert all(m.total_amount == 10 and m.referrer_identifier == BOB.identifier for m in moves)
    bob_moves = [m async for m in fuul.payouts.movements(BOB, type="point")]
    assert len(bob_moves) == 12 and all(m.is_referrer for m in bob_moves)
    assert sum(m.total_amount or 0 for m in bob_moves) == Decimal(12)
    [onchain] = [m async for m in fuul.payouts.movements(ALICE)]
    assert (onchain.chain_id, onchain.currency_address) == (8453, USDC)
    by_conversion = await fuul.payouts.list(ALICE, type="point")
    assert [r.total_amount for r in by_conversion.items] == [Decimal(120)]
    assert (await fuul.payouts.totals(ALICE)).total_points == 120
    earnings = [e async for e in fuul.payouts.referral_earnings(BOB, scope="all")]
    assert [e.user_identifier for e in earnings] == [ALICE.identifier, CAROL.identifier]
    active = [e async for e in fuul.payouts.referral_earnings(BOB)]
    assert [e.user_identifier for e in active] == [ALICE.identifier]
    assert active[0].volume == 1250
    tiers = await fuul.payouts.terms_by_tier()
    some = await fuul.payouts.terms_by_tier([tiers[0].tier_id or ""])
    assert len(tiers) == 3 and [t.tier_slug for t in some] == ["bronze"]

    # Leaderboards, ranked from the same payouts.
    points = await fuul.leaderboards.points(fields=["tier", "referred_users"])
    assert [(r.rank, r.address, r.total_amount) for r in points.items] == [
        (1, ALICE.identifier, 120), (2, BOB.identifier, 12)
    ]  # fmt: skip
    assert points.items[1].referred_users == 2 and points.total == 2
    payouts = await fuul.leaderboards.payouts(currency_address=USDC, user_type="end_user")
    assert [(r.address, r.total_amount, r.chain_id) for r in payouts.items] == [
        (ALICE.identifier, 5, 8453)
    ]  # fmt: skip
    volume = await fuul.leaderboards.volume()
    assert volume.items[0].total_amount == 1250
    revenue = await fuul.leaderboards.revenue(user_type="affiliate")
    assert [r.address for r in revenue.items] == [BOB.identifier]
    mine = await fuul.leaderboards.points(user=BOB)
    assert [(r.rank, r.address) for r in mine.items] == [(2, BOB.identifier)]
    referred = [r async for r in fuul.leaderboards.referred()]
    assert [(r.address, r.total_referred_users) for r in referred] == [(BOB.identifier, 2)]
    volumes = await fuul.leaderboards.referred_volume([BOB, ALICE])
    assert [(v.user_identifier, v.referred_volume) for v in volumes] == [
        (BOB.identifier, 1250), (ALICE.identifier, 0)
    ]  # fmt: skip

    # Claim checks, from the on-chain payouts.
    [check] = [c async for c in fuul.claim_checks.list(ALICE, status="unclaimed")]
    assert check.amount == 5 * 10**18 and check.reason == "end_user_payout"
    assert len(await fuul.claim_checks.claimable(ALICE)) == 1
    totals = await fuul.claim_checks.totals(ALICE)
    assert [t.amount for t in totals.unclaimed] == [5 * 10**18] and totals.claimed == []
    assert sandbox.state.claim(ALICE) == 1
    history = [h async for h in fuul.claim_checks.history(ALICE)]
    assert len(history) == 1 and history[0].hash and history[0].claimed_at is not None
    assert await fuul.claim_checks.claimable(ALICE) == []

    [segment] = await fuul.audiences.of_user(ALICE)
    assert segment.name == "Whales" and segment.badge_name == "Whale"
    stats = await fuul.affiliate_portal.stats(BOB, date_range="30d", group_by="week")
    assert stats["referred_users"] == 1
    for call in (fuul.affiliate_portal.total_stats, fuul.affiliate_portal.stats_breakdown):
        assert (await call(BOB))["user_identifier"] == BOB.identifier
    assert (await fuul.affiliate_portal.referral_tree(BOB))["user_identifier"] == BOB.identifier
    assert sandbox.count(status=400) == 0


async def test_events_sent_through_the_api_become_payouts(
    sandbox: Sandbox, client: FuulClient
) -> None:
    sandbox.state.set_referrer(ALICE, BOB)
    seen = []
    sandbox.state.on_payout.append(seen.append)
    for i in range(3):
        await client.send_event("deposit", ALICE, dedup_id=f"dep-{i}", args={"amount": 2})
    moves = await client.payouts.movements(ALICE, type="point")
    assert moves.total == 3 and [m.dedup_id for m in moves.items] == ["dep-0", "dep-1", "dep-2"]
    assert len(seen) == 6  # three for Alice, three for Bob
    assert (await client.payouts.totals(BOB)).total_points == Decimal("0.6")


async def test_the_cursor_walks_past_empty_pages(sandbox: Sandbox, client: FuulClient) -> None:
    referred = [User(f"user{i}@example.com", "email") for i in range(9)]
    for user in referred:
        sandbox.state.set_referrer(user, BOB)
    # Only users 7 and 8 are active: the pages of 2 before them come back empty.
    sandbox.state.store_events(
        Event(name="trade", user=referred[i], dedup_id=f"a{i}") for i in (7, 8)
    )
    pages = [p async for p in client.payouts.referral_earnings(BOB, page_size=2).pages()]
    assert [len(p.items) for p in pages] == [0, 0, 0, 1, 1]
    assert [p.next for p in pages] == ["c2", "c4", "c6", "c8", None]


async def test_the_sandbox_judges_parameters_by_its_own_table(sandbox: Sandbox) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    uid = {"user_identifier": EVM.identifier}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def get(path: str, **params: str) -> tuple[int, object]:
            async with http.get(sandbox.url + path, params=params) as resp:
                return resp.status, await resp.json()

        # identifier_type where user_identifier_type is wanted: refused, both named.
        status, body = await get("user/referrer", **uid, identifier_type="evm_address")
        assert status == 400
        assert body["message"] == [  # type: ignore[index]
            "property identifier_type should not exist", "user_identifier_type should not be empty"
        ]  # fmt: skip
        status, _ = await get(
            "payouts/movements", **uid, identifier_type="evm_address", page_size="101"
        )
        assert status == 400
        status, _ = await get(
            "payouts/referral-earnings", **uid, user_identifier_type="evm_address", limit="1000"
        )
        assert status == 200
        status, _ = await get("payouts/leaderboard/payouts")
        assert status == 400  # currency_address is required
        status, _ = await get(
            "payouts/leaderboard/referred-volume", user_identifiers=",".join(["x"] * 101)
        )
        assert status == 400
        status, _ = await get("claim-checks", **uid, user_identifier_type="wallet")
        assert status == 400
        status, _ = await get(
            "payouts/movements", **uid, identifier_type="evm_address", project_id="p"
        )
        assert status == 200


async def test_a_key_without_service_role_gets_403_naming_the_key_kind() -> None:
    keys = {"reader": ["read"], "service": ["service-role"]}
    async with Sandbox(limits=FAST_LIMITS, keys=keys) as sb:
        async with FuulClient("reader", base_url=sb.url, config=fast_config()) as fuul:
            with pytest.raises(PermissionDeniedError, match="service-role"):
                await fuul.affiliate_portal.stats(EVM)
            await fuul.users.referrer(EVM)
        async with FuulClient("service", base_url=sb.url, config=fast_config()) as fuul:
            await fuul.affiliate_portal.stats(EVM)
            await fuul.users.referrer(EVM)


async def test_a_client_that_believes_in_more_than_the_server_recovers_from_429s() -> None:
    """The sandbox allows 5 leaderboard requests a second, the client believes 100: the
    429s' Retry-After carry the walk through, every row once."""
    async with Sandbox(limits=Limits(leaderboards=RateLimit(5, 1.0))) as sb:
        for i in range(40):
            sb.state.set_referrer(
                User(f"u{i}@example.com", "email"), User(f"r{i}@example.com", "email")
            )
        async with FuulClient(API_KEY, base_url=sb.url, config=fast_config()) as fuul:
            rows = [r async for r in fuul.leaderboards.referred(page_size=4)]
        assert len(rows) == 40 and len({r.address for r in rows}) == 40
        assert sb.count("leaderboard/referred", status=429) >= 1
        assert fuul._lanes["leaderboards"].rate_limited >= 1


def test_the_sync_client_offers_every_group(sandbox_thread: str) -> None:
    fuul = SyncFuulClient(API_KEY, base_url=sandbox_thread, config=fast_config())
    try:
        assert fuul.users.referrer(ALICE, timeout=10).referrer_identifier == BOB.identifier
        moves = list(fuul.payouts.movements(ALICE, type="point", page_size=5))
        assert [m.dedup_id for m in moves] == [f"t{i}" for i in range(12)]
        pages = fuul.payouts.movements(ALICE, type="point", page_size=5).pages()
        assert len(next(pages).items) == 5
        pages.close()  # stopping early closes the walk on the client's loop
        assert fuul.payouts.movements(ALICE, type="point", page_size=5).first_page().total == 12
        assert fuul.affiliates.get(ALICE) is None
        assert fuul.leaderboards.referred_volume([BOB])[0].referred_volume == 1250
    finally:
        fuul.close()


@pytest.fixture
def sandbox_thread() -> Iterator[str]:
    """A seeded sandbox on a loop of its own thread, for the sync client."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sb = Sandbox(limits=FAST_LIMITS)
    asyncio.run_coroutine_threadsafe(sb.start(), loop).result(10)
    seed(sb)
    yield sb.url
    asyncio.run_coroutine_threadsafe(sb.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


async def test_a_code_with_a_slash_a_space_or_accents_stays_one_path_segment(
    sandbox: Sandbox, client: FuulClient
) -> None:
    for code in ("A/B 1", "ÉTÉ", "50%?#"):
        sandbox.state.add_code(BOB, code)
        details = await client.referral_codes.get(code)
        assert details.code == code and details.available
        assert await client.affiliates.code_available(code) is False
    assert sandbox.count(status=404) == 0
