"""``fuul.payouts``: a user's payouts by conversion, movements, referral earnings and
totals, and the payout terms of tiers."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from ..wire.models import User
from ..wire.validation import check_user
from ._decode import Answer, Text, Timestamp, convert_list
from ._group import Group, check_paging, segment
from ._query import check_choice, check_query_value, comma_list, moment, user_query
from .paginator import PageToken, Paginator

__all__ = [
    "Movement",
    "PayoutTotals",
    "Payouts",
    "PayoutsByConversion",
    "ReferralEarning",
    "TierTerms",
]

PAYOUT_TYPES = ("onchain-currency", "point")
REFERRER_SCOPES = ("active", "all")
#: ``referral-earnings`` takes 1 to 1,000 rows a page (``limit`` on the wire).
MAX_EARNINGS_PAGE = 1000
When = datetime | date | str


class PayoutsByConversion(Answer):
    """What a user earned from one conversion, as referrer or as end user."""

    is_referrer: bool | None = None
    total_amount: Decimal | None = None
    conversion_id: Text | None = None
    conversion_name: str | None = None
    currency_address: str | None = None
    chain_id: int | None = None


class Movement(Answer):
    """One payout movement of a user."""

    date: Timestamp | None = None
    payout_id: Text | None = None
    currency_address: str | None = None
    chain_id: int | None = None
    is_referrer: bool | None = None
    conversion_id: Text | None = None
    conversion_name: str | None = None
    total_amount: Decimal | None = None
    volume_usd: Decimal | None = None
    project_name: str | None = None
    payout_status: str | None = None
    payout_status_details: str | None = None
    enduser_address: str | None = None
    user_identifier: str | None = None
    referrer_identifier: str | None = None
    dedup_id: str | None = None


class ReferralEarning(Answer):
    """What one referred user brought its referrer."""

    user_identifier: str | None = None
    volume: Decimal | None = None
    direct_eligible_volume: Decimal | None = None
    earnings: list[Any] | None = None
    total_commission_earned: list[Any] | None = None
    date_joined: Timestamp | None = None
    referral_code: str | None = None


class PayoutTotals(Answer):
    """A user's total points."""

    total_points: Decimal | None = None


class TierTerms(Answer):
    """A tier and the payout terms that apply in it."""

    tier_id: Text | None = None
    tier_name: str | None = None
    tier_description: str | None = None
    tier_slug: str | None = None
    tier_rank: int | None = None
    payout_terms: list[Any] | None = None


def _period(params: dict[str, str], since: When | None, until: When | None, names: str) -> None:
    low, high = names.split(",")
    if since is not None:
        params[low] = moment("since", since)
    if until is not None:
        params[high] = moment("until", until)


class Payouts(Group):
    """The ``payouts`` endpoints (``fuul.payouts``)."""

    _lane = "payouts"

    def list(
        self,
        user: User,
        *,
        type: str = "onchain-currency",
        since: When | None = None,
        until: When | None = None,
        group_by: str | None = None,
        page_size: int | None = None,
        limit: int | None = None,
        start: PageToken = None,
    ) -> Paginator[PayoutsByConversion]:
        """``GET payouts``: what ``user`` earned, by conversion. ``type`` is
        ``"onchain-currency"`` (the default: token payouts only) or ``"point"``: a program
        that rewards points must say ``type="point"``, or it sees none.

        Example::

            async for row in fuul.payouts.list(user, type="point"):
                print(row.conversion_name, row.total_amount)
        """
        params = user_query(user, "identifier_type", self._check_format)
        params["type"] = check_choice("type", type, PAYOUT_TYPES)
        _period(params, since, until, "from,to")
        if group_by is not None:
            params["group_by"] = check_query_value("group_by", group_by)
        check_paging(page_size, limit)
        return self._numbered(
            "payouts", params, PayoutsByConversion, page_size=page_size, limit=limit, start=start
        )

    def movements(
        self,
        user: User,
        *,
        type: str = "onchain-currency",
        since: When | None = None,
        until: When | None = None,
        page_size: int | None = None,
        limit: int | None = None,
        start: PageToken = None,
    ) -> Paginator[Movement]:
        """``GET payouts/movements``: every payout movement of ``user``, page by page.
        ``type`` is ``"onchain-currency"`` (the default: token payouts only) or
        ``"point"``: a program that rewards points must say ``type="point"``, or it sees
        none.

        Example::

            async for movement in fuul.payouts.movements(user, type="point", page_size=100):
                print(movement.date, movement.total_amount, movement.payout_status)
        """
        params = user_query(user, "identifier_type", self._check_format)
        params["type"] = check_choice("type", type, PAYOUT_TYPES)
        _period(params, since, until, "from_date,to_date")
        check_paging(page_size, limit)
        return self._numbered(
            "payouts/movements", params, Movement, page_size=page_size, limit=limit, start=start
        )

    def referral_earnings(
        self,
        user: User,
        *,
        scope: str = "active",
        since: When | None = None,
        until: When | None = None,
        page_size: int | None = None,
        limit: int | None = None,
        start: PageToken = None,
    ) -> Paginator[ReferralEarning]:
        """``GET payouts/referral-earnings``: what each user referred by ``user`` brought
        (``scope``: ``active`` or ``all``), walked by cursor (``page_size`` 1-1000)."""
        params = user_query(user, "user_identifier_type", self._check_format)
        params["referrer_scope"] = check_choice("scope", scope, REFERRER_SCOPES)
        _period(params, since, until, "from_date,to_date")
        check_paging(page_size, limit, MAX_EARNINGS_PAGE)
        size = None if page_size is None else ("limit", page_size)
        return self._cursor(
            "payouts/referral-earnings", params, ReferralEarning,
            size=size, limit=limit, start=start,
        )  # fmt: skip

    async def totals(self, user: User) -> PayoutTotals:
        """``GET payouts/totals/{user_identifier}``: ``user``'s total points."""
        user = check_user(user, check_format=self._check_format)
        return await self._one("payouts/totals/" + segment(user.identifier), {}, PayoutTotals)

    async def terms_by_tier(
        self, tier_ids: Iterable[str] | None = None
    ) -> builtins.list[TierTerms]:
        """``GET payouts/terms-by-tier``: the payout terms of each tier (``tier_ids``:
        these only; ``"null"`` names the no-tier bucket)."""
        params = {} if tier_ids is None else {"tier_ids": comma_list("tier_ids", tier_ids)}
        return await self._get(
            "payouts/terms-by-tier", params, lambda raw: convert_list(raw["tiers"], TierTerms)
        )
