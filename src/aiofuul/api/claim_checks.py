"""``fuul.claim_checks``: a user's claim checks, their totals, claim history and what is
claimable now."""

from __future__ import annotations

import builtins
from decimal import Decimal
from typing import Any

import msgspec

from ..wire.models import User
from ._decode import Answer, Text, Timestamp, convert_list
from ._group import Group, check_paging
from ._query import check_choice, user_query
from .paginator import Page, PageToken, Paginator

__all__ = ["ClaimCheck", "ClaimChecks", "ClaimRecord", "ClaimTotal", "ClaimTotals"]

STATUSES = ("open", "unclaimed", "claimed")
REASONS = ("affiliate_payout", "end_user_payout", "agency_payout")


class ClaimCheck(Answer):
    """One claim check: an amount (an integer string in the currency's smallest unit:
    divide by ``10 ** currency_decimals`` to show it) a user may claim."""

    id: Text | None = None
    currency_address: str | None = None
    currency_chain_id: int | None = None
    currency_name: str | None = None
    currency_decimals: int | None = None
    reason: str | None = None
    amount: Decimal | None = None
    status: str | None = None
    deadline_seconds: int | None = None
    created_at: Timestamp | None = None


class ClaimTotal(Answer):
    """The total of a user's claim checks in one currency and state."""

    currency_address: str | None = None
    currency_chain_id: int | None = None
    currency_name: str | None = None
    currency_decimals: int | None = None
    amount: Decimal | None = None
    status: str | None = None


class ClaimTotals(Answer):
    """Totals by currency: ``claimed``, and ``unclaimed`` (open and closed)."""

    claimed: list[ClaimTotal] = msgspec.field(default_factory=list)
    unclaimed: list[ClaimTotal] = msgspec.field(default_factory=list)


class ClaimRecord(Answer):
    """One (transaction, currency) row of a user's claim history."""

    hash: str | None = None
    claimed_at: Timestamp | None = None
    currency_address: str | None = None
    currency_chain_id: int | None = None
    currency_name: str | None = None
    currency_decimals: int | None = None
    amount: Decimal | None = None


class ClaimChecks(Group):
    """The ``claim-checks`` endpoints (``fuul.claim_checks``)."""

    _lane = "claim_checks"

    def list(self, user: User, *, status: str | None = None) -> Paginator[ClaimCheck]:
        """``GET claim-checks``: ``user``'s claim checks (``status``: ``open``,
        ``unclaimed`` or ``claimed``), as a one-page list.

        Example::

            async for check in fuul.claim_checks.list(user, status="unclaimed"):
                print(check.currency_name, check.amount)
        """
        params = user_query(user, "user_identifier_type", self._check_format)
        if status is not None:
            params["status"] = check_choice("status", status, STATUSES)

        def read(raw: Any) -> Page[ClaimCheck]:
            rest = {k: v for k, v in raw.items() if k != "claim_checks"}
            return Page(convert_list(raw["claim_checks"], ClaimCheck), extra=rest)

        async def fetch(token: PageToken) -> Page[ClaimCheck]:
            return await self._get("claim-checks", params, read)

        return Paginator(fetch)

    async def totals(
        self, user: User, *, status: str | None = None, reason: str | None = None
    ) -> ClaimTotals:
        """``GET claim-checks/totals``: ``user``'s totals by currency (``reason``:
        ``affiliate_payout``, ``end_user_payout`` or ``agency_payout``)."""
        params = user_query(user, "user_identifier_type", self._check_format)
        if status is not None:
            params["status"] = check_choice("status", status, STATUSES)
        if reason is not None:
            params["reason"] = check_choice("reason", reason, REASONS)
        return await self._one("claim-checks/totals", params, ClaimTotals)

    def history(
        self,
        user: User,
        *,
        page_size: int | None = None,
        limit: int | None = None,
        start: PageToken = None,
    ) -> Paginator[ClaimRecord]:
        """``GET claim-checks/claim-history``: ``user``'s claims, newest first
        (``page_size`` 1-100, the server's default 25)."""
        params = user_query(user, "user_identifier_type", self._check_format)
        check_paging(page_size, limit)
        return self._numbered(
            "claim-checks/claim-history", params, ClaimRecord,
            page_size=page_size, limit=limit, start=start,
        )  # fmt: skip

    async def claimable(self, user: User) -> builtins.list[ClaimCheck]:
        """``GET claimable-rewards``: what ``user`` can claim now."""
        params = user_query(user, "user_identifier_type", self._check_format)
        return await self._get(
            "claimable-rewards", params, lambda raw: convert_list(raw, ClaimCheck)
        )
