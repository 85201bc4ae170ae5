"""Bad input to the endpoint groups is refused before any request, by an error that
names the field and the rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from aiofuul import FuulClient, User, ValidationError
from aiofuul.testing import MockTransport, respond
from conftest import EVM

BAD_TYPE = User("0x52908400098527886E0F7030069857D2E4169EE7", "wallet")

#: (call, the field named, a piece of the rule)
CASES: list[tuple[Callable[[FuulClient], Any], str, str]] = [
    (lambda f: f.users.referrer(BAD_TYPE), "user.identifier_type", "must be one of"),
    (lambda f: f.payouts.movements(BAD_TYPE), "user.identifier_type", "must be one of"),
    (lambda f: f.affiliates.get(User("nope", "evm_address")), "user.identifier", "evm_address"),
    (lambda f: f.referral_codes.list(EVM, page_size=0), "page_size", "from 1 to 100"),
    (lambda f: f.referral_codes.list(EVM, page_size=101), "page_size", "from 1 to 100"),
    (lambda f: f.claim_checks.history(EVM, page_size=True), "page_size", "integer"),
    (lambda f: f.payouts.referral_earnings(EVM, page_size=1001), "page_size", "from 1 to 1000"),
    (lambda f: f.leaderboards.points(limit=-1), "limit", "from 0"),
    (lambda f: f.referral_codes.get(""), "code", "must not be empty"),
    (lambda f: f.affiliates.code_available("  "), "code", "must not be empty"),
    (lambda f: f.referral_codes.get("a\nb"), "code", "control characters"),
    (lambda f: f.leaderboards.payouts(currency_address=""), "currency_address", "empty"),
    (lambda f: f.leaderboards.volume(user_type="whale"), "user_type", "affiliate, end_user"),
    (lambda f: f.leaderboards.points(fields="tier"), "fields", "list of strings"),
    (lambda f: f.leaderboards.points(fields=["a,b"]), "fields[0]", "comma"),
    (lambda f: f.leaderboards.referred_volume([]), "users", "non-empty list"),
    (lambda f: f.leaderboards.referred_volume(EVM), "users", "non-empty list"),
    (lambda f: f.leaderboards.referred_volume([EVM] * 150 + [BAD_TYPE]), "users[150].identifier_type",
     "must be one of"),
    (lambda f: f.payouts.list(EVM, type="usd"), "type", "onchain-currency, point"),
    (lambda f: f.payouts.list(EVM, since="yesterday"), "since", "ISO 8601"),
    (lambda f: f.payouts.referral_earnings(EVM, scope="some"), "scope", "active, all"),
    (lambda f: f.claim_checks.list(EVM, status="lost"), "status", "open, unclaimed, claimed"),
    (lambda f: f.claim_checks.totals(EVM, reason="gift"), "reason", "affiliate_payout"),
    (lambda f: f.affiliate_portal.stats(EVM, date_range="1y"), "date_range", "7d"),
    (lambda f: f.affiliate_portal.stats(EVM, date_range="7d", since="2026-01-01"), "date_range",
     "custom"),
    (lambda f: f.affiliate_portal.stats_breakdown(EVM, group_by="year"), "group_by", "day"),
    (lambda f: f.payouts.terms_by_tier([]), "tier_ids", "1 to 1000"),
]  # fmt: skip


async def _made_and_awaited(call: Callable[[FuulClient], Any], fuul: FuulClient) -> None:
    result = call(fuul)
    if hasattr(result, "__await__"):
        await result


@pytest.mark.parametrize(("call", "field", "rule"), CASES)
async def test_refused_before_any_request(
    call: Callable[[FuulClient], Any], field: str, rule: str
) -> None:
    transport = MockTransport(lambda r: respond(200, {}))
    async with FuulClient("k", transport=transport) as fuul:
        with pytest.raises(ValidationError) as caught:
            await _made_and_awaited(call, fuul)
    assert caught.value.field == field
    assert rule in caught.value.rule
    assert transport.requests == []


async def test_a_list_is_refused_when_made_not_when_walked() -> None:
    """A paginator's input is checked by the call that makes it: the error points at the
    line with the mistake, not at the loop far below."""
    async with FuulClient("k", transport=MockTransport(lambda r: respond(200, {}))) as fuul:
        with pytest.raises(ValidationError):
            fuul.payouts.movements(EVM, page_size=500)
