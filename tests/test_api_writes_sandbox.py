"""The writes against the sandbox (real sockets): each one applied to its state, so the
reads show it (a referrer set is what users.referrer answers and what attribution
follows; a code used counts in uses and remaining_uses), its rules (422 at max_uses,
422 removing the referrer of a user with redemptions, 403 without a service-role key),
and its retries by meaning through real failures (a dropped answer, 429s)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import aiohttp
import pytest

from aiofuul import (
    DEFAULT_LIMITS,
    AmbiguousWriteError,
    FuulClient,
    Limits,
    PermissionDeniedError,
    RateLimit,
    SyncFuulClient,
    UnprocessableEntityError,
    User,
)
from aiofuul.sandbox import Faults, Sandbox
from aiofuul.wire.models import Event
from conftest import API_KEY, EVM, FAST_LIMITS, fast_config

ALICE = EVM
BOB = User("0x1111111111111111111111111111111111111111", "evm_address")
CAROL = User("carol@example.com", "email")


async def test_a_referrer_set_is_what_the_reads_answer_and_what_attribution_follows(
    sandbox: Sandbox, client: FuulClient
) -> None:
    answer = await client.users.set_referrer(ALICE, BOB)
    assert answer.changed is True and answer.body["referrer_identifier"] == BOB.identifier
    assert (await client.users.set_referrer(ALICE, BOB)).changed is False
    assert (await client.users.referrer(ALICE)).referrer_identifier == BOB.identifier
    status = await client.referral_codes.status(ALICE)
    assert status.referred and status.referrer_identifier == BOB.identifier
    sandbox.state.store_events(
        [Event(name="trade", user=ALICE, dedup_id="t1", args={"amount": 10})]
    )
    mine = [m async for m in client.payouts.movements(BOB, type="point")]
    assert [(m.is_referrer, m.total_amount) for m in mine] == [(True, 1)]

    await client.users.set_referrer(ALICE, CAROL)  # an upsert: overwritten
    assert (await client.users.referrer(ALICE)).referrer_identifier == CAROL.identifier
    assert (await client.users.remove_referrer(ALICE)).changed is True
    assert (await client.users.referrer(ALICE)).referrer_identifier is None
    assert (await client.users.remove_referrer(ALICE)).changed is False


async def test_codes_generated_used_counted_and_refused_at_max_uses(
    sandbox: Sandbox, client: FuulClient
) -> None:
    codes = await client.referral_codes.generate(BOB, quantity=2, max_uses=1)
    assert len(codes) == 2 and len(set(codes)) == 2
    listed = {c.code: c async for c in client.referral_codes.list(BOB)}
    assert set(listed) == set(codes) and listed[codes[0]].remaining_uses == 1

    await client.referral_codes.use(codes[0], ALICE)
    [used] = [c async for c in client.referral_codes.list(BOB) if c.code == codes[0]]
    assert (used.uses, used.remaining_uses) == (1, 0)
    assert used.used_by is not None and used.used_by[0].identifier == ALICE.identifier
    assert (await client.users.referrer(ALICE)).referrer_identifier == BOB.identifier
    assert (await client.referral_codes.status(ALICE)).code == codes[0]

    with pytest.raises(UnprocessableEntityError, match="max uses"):
        await client.referral_codes.use(codes[0], CAROL)
    await client.referral_codes.set_max_uses(codes[0], None)  # unlimited
    await client.referral_codes.use(codes[0], CAROL)
    assert (await client.referral_codes.get(codes[0])).uses == 2
    await client.referral_codes.set_max_uses(codes[1], 0)  # disabled
    assert (await client.referral_codes.get(codes[1])).available is False


async def test_a_user_with_redemptions_keeps_its_referrer_until_they_are_undone(
    sandbox: Sandbox, client: FuulClient
) -> None:
    [code] = await client.referral_codes.generate(BOB, quantity=1)
    await client.referral_codes.use(code, ALICE)
    with pytest.raises(UnprocessableEntityError, match="redemptions") as caught:
        await client.users.remove_referrer(ALICE)
    assert caught.value.status == 422
    assert (await client.referral_codes.remove_referral(code, ALICE, BOB)).changed is True
    assert (await client.referral_codes.get(code)).uses == 0
    assert (await client.users.referrer(ALICE)).referrer_identifier is None
    assert (await client.referral_codes.remove_referral(code, ALICE, BOB)).changed is False
    await client.users.remove_referrer(ALICE)  # nothing left to refuse it


async def test_audience_entries_show_in_the_users_segments(
    sandbox: Sandbox, client: FuulClient
) -> None:
    users = [User(f"u{i}@example.com", "email") for i in range(130)]
    answers = await client.audiences.add("vip", users)
    assert [a.body["added"] for a in answers] == [100, 30]
    assert [s.id for s in await client.audiences.of_user(users[129])] == ["vip"]
    assert (await client.audiences.add("vip", users[:1]))[0].changed is False
    assert (await client.audiences.remove("vip", users[129])).changed is True
    assert await client.audiences.of_user(users[129]) == []


async def test_the_sandbox_judges_write_bodies_by_its_own_table(sandbox: Sandbox) -> None:
    headers = {"Authorization": "Bearer k"}
    async with aiohttp.ClientSession(headers=headers) as http:
        url = sandbox.url + "user-referrers"
        async with http.put(url, json={"user_identifier": 1, "referer": "x"}) as resp:
            body = await resp.json()
        assert resp.status == 400
        assert "property referer should not exist" in body["message"]
        assert "user_identifier must be a string" in body["message"]
        assert "user_identifier_type should not be empty" in body["message"]
        async with http.patch(sandbox.url + "referral_codes/NOPE", json={"max_uses": None}) as resp:
            assert resp.status == 404


async def test_every_write_needs_a_service_role_key() -> None:
    keys = {"reader": ["read"], "service": ["service-role"]}
    async with Sandbox(limits=FAST_LIMITS, keys=keys) as sb:
        sb.state.add_code(BOB, "BOB1")
        writes = [
            lambda f: f.users.set_referrer(ALICE, BOB), lambda f: f.users.remove_referrer(ALICE),
            lambda f: f.referral_codes.generate(BOB), lambda f: f.referral_codes.use("BOB1", ALICE),
            lambda f: f.referral_codes.set_max_uses("BOB1", 3),
            lambda f: f.referral_codes.remove_referral("BOB1", ALICE, BOB),
            lambda f: f.audiences.add(1, [ALICE]), lambda f: f.audiences.remove(1, ALICE),
        ]  # fmt: skip
        async with FuulClient("reader", base_url=sb.url, config=fast_config()) as fuul:
            for write in writes:
                with pytest.raises(PermissionDeniedError, match="service-role"):
                    await write(fuul)
        assert sb.state.referrals == {} and list(sb.state.codes) == ["BOB1"]
        async with FuulClient("service", base_url=sb.url, config=fast_config()) as fuul:
            for write in writes:
                await write(fuul)


async def test_a_generate_whose_answer_is_lost_raises_ambiguous_and_is_sent_once(
    sandbox: Sandbox, client: FuulClient
) -> None:
    """The sandbox makes the codes, then drops the connection: the client cannot know,
    says so, and does not make more codes by trying again."""
    sandbox.faults = Faults(drop_rate=1.0, drop_after_store=1.0)
    with pytest.raises(AmbiguousWriteError, match=r"referral_codes\.list") as caught:
        await client.referral_codes.generate(BOB, quantity=3)
    assert caught.value.method == "POST"
    sandbox.faults = Faults()
    assert sandbox.count("referral_codes") == 1
    assert len([c async for c in client.referral_codes.list(BOB)]) == 3  # it did take effect


async def test_a_set_referrer_whose_answer_is_lost_is_sent_again_and_holds(
    sandbox: Sandbox, client: FuulClient
) -> None:
    # Seeded: the first request is applied then dropped, the second answered.
    sandbox.faults = Faults(drop_rate=0.5, drop_after_store=1.0, seed=1)
    assert (await client.users.set_referrer(ALICE, BOB)).changed is False  # already so
    assert sandbox.count("user-referrers") == 2
    sandbox.faults = Faults()
    assert (await client.users.referrer(ALICE)).referrer_identifier == BOB.identifier


async def test_429s_are_waited_out_and_no_generate_makes_codes_twice() -> None:
    """The server allows 3 requests in 0.2 s on each lane, the client believes 100 in
    0.1 s: 429s come back, every write still happens exactly once."""
    tight = Limits(users=RateLimit(3, 0.2), referral_codes=RateLimit(3, 0.2))
    config = fast_config(limits=DEFAULT_LIMITS.scaled(1 / 600))
    async with Sandbox(limits=tight) as sb:
        async with FuulClient(API_KEY, base_url=sb.url, config=config) as fuul:
            await asyncio.gather(*(fuul.referral_codes.generate(BOB, quantity=2) for _ in range(8)))
            users = [User(f"u{i}@example.com", "email") for i in range(12)]
            await asyncio.gather(*(fuul.users.set_referrer(u, BOB) for u in users))
        assert sb.count("referral_codes", status=429) + sb.count("user-referrers", status=429) >= 1
        assert len(sb.state.codes) == 16
        assert {u.identifier for u in sb.state.referred_by(BOB)} == {u.identifier for u in users}


@pytest.fixture
def sandbox_thread() -> Iterator[Sandbox]:
    """A sandbox on a loop of its own thread, for the sync client."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sb = Sandbox(limits=FAST_LIMITS)
    asyncio.run_coroutine_threadsafe(sb.start(), loop).result(10)
    yield sb
    asyncio.run_coroutine_threadsafe(sb.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_the_sync_client_offers_every_write(sandbox_thread: Sandbox) -> None:
    fuul = SyncFuulClient(API_KEY, base_url=sandbox_thread.url, config=fast_config())
    try:
        assert fuul.users.set_referrer(CAROL, BOB, timeout=10).changed is True
        assert fuul.users.referrer(CAROL).referrer_identifier == BOB.identifier
        assert fuul.users.remove_referrer(CAROL).changed is True
        [code] = fuul.referral_codes.generate(BOB, quantity=1, max_uses=1)
        fuul.referral_codes.use(code, ALICE)
        with pytest.raises(UnprocessableEntityError):
            fuul.referral_codes.use(code, CAROL)
        fuul.referral_codes.set_max_uses(code, None)
        assert fuul.referral_codes.remove_referral(code, ALICE, BOB).changed is True
        assert [a.body["added"] for a in fuul.audiences.add("vip", [ALICE, CAROL])] == [2]
        assert fuul.audiences.remove("vip", ALICE).changed is True
    finally:
        fuul.close()


async def test_a_use_that_times_out_after_sending_is_ambiguous_and_sent_once(
    sandbox: Sandbox,
) -> None:
    sandbox.state.add_code(BOB, "BOB1")
    sandbox.faults = Faults(hang_rate=1.0)
    config = fast_config(timeout=0.3)
    async with FuulClient(API_KEY, base_url=sandbox.url, config=config) as fuul:
        with pytest.raises(AmbiguousWriteError, match=r"timed out.*referral_codes\.status"):
            await fuul.referral_codes.use("BOB1", ALICE)
        assert sandbox.count("referral_codes/BOB1/use") == 1
        sandbox.faults = Faults()
        assert (await fuul.referral_codes.status(ALICE)).referred is False  # how to check
