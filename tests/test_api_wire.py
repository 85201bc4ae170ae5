"""The endpoint groups of aiofuul.api on the wire, with MockTransport: each endpoint's
path and every query parameter's name, the answers decoded leniently (extra fields kept,
numbers and strings drifting), and the failures: 404, 429 with Retry-After, 403."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from aiofuul import DEFAULT_LIMITS, ClientConfig, FuulClient, RetryPolicy, User
from aiofuul.api import as_dict
from aiofuul.errors import NotFoundError, PermissionDeniedError, RateLimitError, TransportError
from aiofuul.testing import MockRequest, MockTransport, respond
from aiofuul.wire.transport import Response
from conftest import EVM, fast_config

U = EVM.identifier
EMAIL = User("alice@example.com", "email")


def client(
    handler: Callable[[MockRequest], Response], config: ClientConfig | None = None
) -> tuple[FuulClient, MockTransport]:
    transport = MockTransport(handler)
    return FuulClient("k", transport=transport, config=config or fast_config()), transport


#: Limits of a tenth of a second: a 429 costs the lane a period.
TENTH = fast_config(
    limits=DEFAULT_LIMITS.scaled(1 / 600), retry=RetryPolicy(max_attempts=3, initial_backoff=0.01)
)


def answering(body: Any) -> Callable[[MockRequest], Response]:
    return lambda request: respond(200, body)


PAGE = {"total_results": 0, "page": 1, "page_size": 10, "results": []}
UID = {"user_identifier": U, "user_identifier_type": "evm_address"}
UID_T = {"user_identifier": U, "identifier_type": "evm_address"}

#: (call, path, params, answer): every endpoint, and exactly what goes on the wire.
CASES: list[tuple[Callable[[FuulClient], Any], str, dict[str, str], Any]] = [
    (lambda f: f.users.referrer(EVM), "user/referrer", UID, {"user_identifier": U}),
    (lambda f: f.referral_codes.list(EVM, page_size=5), "referral_codes",
     {**UID, "page": "1", "page_size": "5"}, {"results": [], "count": 0, "next_page": None}),
    (lambda f: f.referral_codes.status(EVM), "referral_codes/status", UID, {"referred": False}),
    (lambda f: f.referral_codes.get("AB/C 1"), "referral_codes/AB%2FC%201", {}, {"available": True}),
    (lambda f: f.affiliates.get(EVM), f"affiliates/{U}", {"identifier_type": "evm_address"}, {"id": 1}),
    (lambda f: f.affiliates.code_available("ABC"), "affiliates/codes/ABC/availability", {},
     {"available": True}),
    (lambda f: f.leaderboards.payouts(currency_address="0xc", user=EVM, user_type="affiliate",
                                       fields=["tier", "referred_users"], since=datetime(2026, 1, 1),
                                       until="2026-02-01", conversion_external_ids=[1, 2], page_size=3),
     "payouts/leaderboard/payouts",
     {"currency_address": "0xc", **UID_T, "from": "2026-01-01T00:00:00Z", "to": "2026-02-01",
      "user_type": "affiliate", "fields": "tier,referred_users", "conversion_external_ids": "1,2",
      "page": "1", "page_size": "3"}, PAGE),
    (lambda f: f.leaderboards.points(user=EVM, fields=["tier"]), "payouts/leaderboard/points",
     {**UID_T, "fields": "tier", "page": "1"}, PAGE),
    (lambda f: f.leaderboards.volume(currency_address="0xc", user_type="end_user"),
     "payouts/leaderboard/volume", {"currency_address": "0xc", "user_type": "end_user", "page": "1"},
     PAGE),
    (lambda f: f.leaderboards.revenue(fields=["tier"]), "payouts/leaderboard/revenue",
     {"fields": "tier", "page": "1"}, PAGE),
    (lambda f: f.leaderboards.referred_volume([EVM], no_cache=True),
     "payouts/leaderboard/referred-volume",
     {"user_identifiers": U, "identifier_type": "evm_address", "no_cache": "true"},
     {"referred_volumes": [], "total_count": 0}),
    (lambda f: f.leaderboards.referred(page_size=2), "leaderboard/referred",
     {"page": "1", "page_size": "2"}, PAGE),
    (lambda f: f.payouts.list(EVM, type="point", since="2026-01-01", until="2026-01-31",
                              group_by="conversion"), "payouts",
     {**UID_T, "type": "point", "from": "2026-01-01", "to": "2026-01-31",
      "group_by": "conversion", "page": "1"}, PAGE),
    (lambda f: f.payouts.movements(EVM, since="2026-01-01", until="2026-01-31"),
     "payouts/movements",
     {**UID_T, "type": "onchain-currency", "from_date": "2026-01-01", "to_date": "2026-01-31",
      "page": "1"}, PAGE),
    (lambda f: f.payouts.referral_earnings(EVM, scope="all", page_size=50),
     "payouts/referral-earnings", {**UID, "referrer_scope": "all", "limit": "50"},
     {"results": [], "next_cursor": None, "count": 0}),
    (lambda f: f.payouts.totals(EVM), f"payouts/totals/{U}", {}, {"total_points": "12.5"}),
    (lambda f: f.payouts.terms_by_tier(["t1", "null"]), "payouts/terms-by-tier",
     {"tier_ids": "t1,null"}, {"tiers": []}),
    (lambda f: f.claim_checks.list(EVM, status="open"), "claim-checks", {**UID, "status": "open"},
     {"claim_checks": []}),
    (lambda f: f.claim_checks.totals(EVM, status="claimed", reason="affiliate_payout"),
     "claim-checks/totals", {**UID, "status": "claimed", "reason": "affiliate_payout"},
     {"claimed": [], "unclaimed": []}),
    (lambda f: f.claim_checks.history(EVM, page_size=25), "claim-checks/claim-history",
     {**UID, "page": "1", "page_size": "25"}, {"results": [], "total_count": 0, "next_page": None}),
    (lambda f: f.claim_checks.claimable(EVM), "claimable-rewards", UID, []),
    (lambda f: f.audiences.of_user(EVM), "audiences/audience-segments/user", UID, {"results": []}),
    (lambda f: f.affiliate_portal.stats(EVM, date_range="custom", since="2026-01-01",
                                        group_by="week"), "affiliate-portal/stats",
     {"user_identifier": U, "date_range": "custom", "from": "2026-01-01", "group_by": "week"}, {}),
    (lambda f: f.affiliate_portal.total_stats(EVM, date_range="30d"), "affiliate-portal/total-stats",
     {"user_identifier": U, "date_range": "30d"}, {}),
    (lambda f: f.affiliate_portal.stats_breakdown(EVM, group_by="day"),
     "affiliate-portal/stats-breakdown", {"user_identifier": U, "group_by": "day"}, {}),
    (lambda f: f.affiliate_portal.referral_tree(EVM), "affiliate-portal/referral-tree",
     {"user_identifier": U}, {}),
]  # fmt: skip


@pytest.mark.parametrize(("call", "path", "params", "body"), CASES)
async def test_each_endpoint_sends_its_path_and_parameter_names(
    call: Callable[[FuulClient], Any], path: str, params: dict[str, str], body: Any
) -> None:
    fuul, transport = client(answering(body))
    async with fuul:
        await call(fuul)  # a paginator awaited is its first page
    [request] = transport.requests
    assert (request.method, request.path, request.params, request.body) == (
        "GET",
        path,
        params,
        None,
    )


async def test_the_client_project_id_rides_along() -> None:
    transport = MockTransport(answering({"user_identifier": U}))
    async with FuulClient("k", transport=transport, project_id="p1") as fuul:
        await fuul.users.referrer(EMAIL)
    assert transport.requests[0].params == {
        "user_identifier": "alice@example.com", "user_identifier_type": "email", "project_id": "p1"
    }  # fmt: skip


async def test_unknown_fields_are_kept_and_drifted_types_decode() -> None:
    row = {
        "date": "2026-03-01T10:00:00.000Z", "payout_id": 17, "chain_id": "8453",
        "conversion_id": 42, "total_amount": "1.25", "volume_usd": "99.5",
        "is_referrer": False, "brand_new": {"x": 1},
    }  # fmt: skip
    fuul, _ = client(answering({"total_results": 1, "results": [row], "surprise": True}))
    async with fuul:
        page = await fuul.payouts.movements(EVM)
    [movement] = page.items
    assert movement.conversion_id == "42" and movement.payout_id == "17"
    assert movement.chain_id == 8453
    assert movement.total_amount == Decimal("1.25") and movement.volume_usd == Decimal("99.5")
    assert movement.date == datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
    assert movement.extra == {"brand_new": {"x": 1}}
    assert page.extra["surprise"] is True and page.total == 1 and page.next is None
    assert as_dict(movement)["brand_new"] == {"x": 1}
    assert as_dict(movement)["conversion_id"] == "42"
    # and the other way round: numbers where strings were, strings where numbers were
    row2 = {**row, "conversion_id": "c-9", "chain_id": 1, "total_amount": 3, "volume_usd": 7}
    fuul, _ = client(answering({"total_results": 1, "results": [row2]}))
    async with fuul:
        [again] = (await fuul.payouts.movements(EVM)).items
    assert (again.conversion_id, again.chain_id, again.total_amount) == ("c-9", 1, Decimal(3))


async def test_a_value_of_the_wrong_kind_costs_its_field_not_the_page() -> None:
    rows = [{"rank": "first", "address": "a", "tiers": [1]}, {"rank": 2, "address": "b"}]
    fuul, transport = client(answering({"total_results": 2, "results": rows}))
    async with fuul:
        page = await fuul.leaderboards.points()
    odd, fine = page.items
    assert (odd.rank, odd.address, odd.tiers) == (None, "a", None)
    assert odd.extra == {"rank": "first", "tiers": [1]}
    assert (fine.rank, fine.extra) == (2, {})
    assert len(transport.requests) == 1


async def test_nested_unknown_fields_are_kept() -> None:
    body = {"results": [{"code": "A", "used_by": [{"identifier": "x", "new": 1}]}], "count": 1,
            "next_page": None}  # fmt: skip
    fuul, _ = client(answering(body))
    async with fuul:
        [code] = (await fuul.referral_codes.list(EVM)).items
    assert code.used_by is not None and code.used_by[0].extra == {"new": 1}


async def test_a_404_is_none_for_an_affiliate_and_an_error_elsewhere() -> None:
    fuul, transport = client(lambda r: respond(404, {"message": "Not Found"}))
    async with fuul:
        assert await fuul.affiliates.get(EVM) is None
        assert await fuul.affiliates.get(EVM) is None  # the lane did not pause or stop
        with pytest.raises(NotFoundError):
            await fuul.users.referrer(EVM)
    assert len(transport.requests) == 3
    assert fuul._lanes["affiliates"].stopped is None


async def test_a_429_waits_for_retry_after_then_succeeds() -> None:
    answers = [respond(429, retry_after="0.05"), respond(200, {"total_points": 3})]
    fuul, transport = client(lambda r: answers.pop(0), TENTH)
    async with fuul:
        totals = await fuul.payouts.totals(EVM)
    assert totals.total_points == 3 and len(transport.requests) == 2
    assert fuul._lanes["payouts"].rate_limited == 1


async def test_429s_past_the_retries_raise_rate_limit_error() -> None:
    fuul, _ = client(lambda r: respond(429, retry_after=0.001), TENTH)
    async with fuul:
        with pytest.raises(RateLimitError):
            await fuul.leaderboards.referred_volume([EVM])


async def test_a_403_names_the_key_kind_the_endpoint_needs() -> None:
    fuul, _ = client(lambda r: respond(403, {"message": "Forbidden"}))
    async with fuul:
        with pytest.raises(PermissionDeniedError, match="service-role") as portal:
            await fuul.affiliate_portal.stats(EVM)
        with pytest.raises(PermissionDeniedError, match="read scope") as read:
            await fuul.claim_checks.totals(EVM)
    assert portal.value.needed_scope == "service-role" and read.value.needed_scope == "read"


async def test_a_2xx_that_is_not_the_answer_is_retried() -> None:
    answers = [respond(200, body=b"<html>proxy</html>"), respond(200, {"tiers": []})]
    fuul, transport = client(lambda r: answers.pop(0))
    async with fuul:
        assert await fuul.payouts.terms_by_tier() == []
    assert len(transport.requests) == 2


async def test_referred_volume_splits_by_100_and_by_identifier_type() -> None:
    users = [User(f"0x{i:040x}", "evm_address") for i in range(250)] + [EMAIL]

    def handler(request: MockRequest) -> Response:
        ids = request.params["user_identifiers"].split(",")
        rows = [
            {"user_identifier": i, "referred_volume": "1.5" if n % 2 else 2}
            for n, i in enumerate(ids)
        ]
        return respond(200, {"referred_volumes": rows, "total_count": len(rows)})

    fuul, transport = client(handler)
    async with fuul:
        rows = await fuul.leaderboards.referred_volume(users)
    sizes = [len(r.params["user_identifiers"].split(",")) for r in transport.requests]
    assert sizes == [100, 100, 50, 1]
    assert transport.requests[-1].params["identifier_type"] == "email"
    assert [r.user_identifier for r in rows] == [u.identifier for u in users]
    assert {r.referred_volume for r in rows} == {Decimal("1.5"), Decimal(2)}


async def test_cursor_pages_may_be_empty_before_the_end() -> None:
    pages = {None: (["a"], "c1"), "c1": ([], "c2"), "c2": ([], "c3"), "c3": (["b"], None)}

    def handler(request: MockRequest) -> Response:
        rows, following = pages[request.params.get("after")]
        body = {"results": [{"user_identifier": r} for r in rows], "next_cursor": following}
        return respond(200, body)

    fuul, transport = client(handler)
    async with fuul:
        rows = [r.user_identifier async for r in fuul.payouts.referral_earnings(EVM)]
        first = await fuul.payouts.referral_earnings(EVM)
    assert rows == ["a", "b"] and len(transport.requests) == 5
    assert first.next == "c1" and first.total is None


async def test_a_cursor_that_does_not_advance_is_an_error_not_a_loop() -> None:
    body = {"results": [], "next_cursor": "same"}
    fuul, transport = client(answering(body))
    async with fuul:
        with pytest.raises(TransportError, match="did not advance"):
            [r async for r in fuul.payouts.referral_earnings(EVM)]
    assert len(transport.requests) == 2


async def test_next_page_style_stops_on_null_and_goes_past_an_empty_page() -> None:
    pages = {"1": (["A"], 2), "2": ([], 3), "3": (["B"], None)}

    def handler(request: MockRequest) -> Response:
        rows, following = pages[request.params["page"]]
        body = {"results": [{"code": c} for c in rows], "count": 2, "next_page": following}
        return respond(200, body)

    fuul, _ = client(handler)
    async with fuul:
        codes = [c.code async for c in fuul.referral_codes.list(EVM)]
        first = await fuul.referral_codes.list(EVM)
    assert codes == ["A", "B"] and first.total == 2 and first.next == 2


async def test_limit_caps_the_rows_and_the_requests() -> None:
    def handler(request: MockRequest) -> Response:
        page = int(request.params["page"])
        rows = [{"rank": (page - 1) * 10 + i} for i in range(1, 11)]
        return respond(200, {"total_results": 1000, "page_size": 10, "results": rows})

    fuul, transport = client(handler)
    async with fuul:
        ranks = [r.rank async for r in fuul.leaderboards.points(limit=25)]
        pages = [len(p.items) async for p in fuul.leaderboards.points(limit=25).pages()]
    assert ranks == list(range(1, 26)) and pages == [10, 10, 5]
    assert len(transport.requests) == 6


async def test_a_total_without_a_page_size_still_walks_every_page() -> None:
    def handler(request: MockRequest) -> Response:
        page = int(request.params["page"])
        rows = [{"rank": r} for r in range(page * 10 - 9, min(page * 10, 25) + 1)]
        return respond(200, {"total_results": 25, "results": rows})

    fuul, transport = client(handler)
    async with fuul:
        ranks = [r.rank async for r in fuul.leaderboards.points()]
    assert ranks == list(range(1, 26)) and len(transport.requests) == 3


async def test_start_resumes_a_walk() -> None:
    def handler(request: MockRequest) -> Response:
        page = int(request.params["page"])
        return respond(200, {"total_results": 4, "page_size": 2, "results": [{"rank": page}] * 2})

    fuul, _ = client(handler)
    async with fuul:
        ranks = [r.rank async for r in fuul.leaderboards.referred(start=2)]
    assert ranks == [2, 2]


async def test_reads_run_concurrently_within_the_lane() -> None:
    seen = 0

    async def handler(request: MockRequest) -> Response:
        nonlocal seen
        seen += 1
        await asyncio.sleep(0)
        return respond(200, {"total_points": 1})

    fuul, _ = client(handler)
    async with fuul:
        results = await asyncio.gather(*(fuul.payouts.totals(EVM) for _ in range(20)))
    assert len(results) == 20 and seen == 20


@pytest.mark.parametrize(("call", "path", "params", "body"), CASES)
async def test_each_endpoint_waits_out_a_429_then_answers(
    call: Callable[[FuulClient], Any], path: str, params: dict[str, str], body: Any
) -> None:
    answers = [respond(429, retry_after="0.01"), respond(200, body)]
    fuul, transport = client(lambda r: answers.pop(0), TENTH)
    async with fuul:
        await call(fuul)
    assert [r.params for r in transport.requests] == [params, params]


@pytest.mark.parametrize(("call", "path", "params", "body"), CASES)
async def test_each_endpoint_refused_403_names_the_key_kind_and_404_is_not_found(
    call: Callable[[FuulClient], Any], path: str, params: dict[str, str], body: Any
) -> None:
    kind = "service-role" if path.startswith("affiliate-portal") else "read"
    fuul, _ = client(lambda r: respond(403, {"message": "Forbidden resource"}))
    async with fuul:
        with pytest.raises(PermissionDeniedError) as refused:
            await call(fuul)
    assert refused.value.needed_scope == kind
    fuul, _ = client(lambda r: respond(404, {"message": "Not Found"}))
    async with fuul:
        if path.startswith("affiliates/0x"):
            assert await call(fuul) is None
        else:
            with pytest.raises(NotFoundError):
                await call(fuul)
