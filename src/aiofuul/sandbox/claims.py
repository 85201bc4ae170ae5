"""The sandbox's claim checks (made of on-chain payouts: amounts in the smallest unit of
an 18-decimal token), audience segments and affiliate portal statistics, answered from
:class:`~aiofuul.sandbox.state.FuulState` for :mod:`~aiofuul.sandbox.api_reads`."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ..wire.models import User
from .api_query import numbered
from .movements import iso as _iso
from .state import ClaimCheck, FuulState

__all__ = ["audiences", "checks", "claim_history", "claim_totals", "claimable", "portal"]


def _user(values: Mapping[str, Any]) -> User:
    return User(values["user_identifier"], values["user_identifier_type"])


def _check(check: ClaimCheck) -> dict[str, Any]:
    p = check.payout
    return {"id": p.id, "currency_address": p.currency_address, "currency_chain_id": p.chain_id,
            "currency_name": "TOKEN", "currency_decimals": 18, "reason": p.reason,
            "amount": str(int(p.amount * 10**18)), "status": check.status,
            "deadline_seconds": 86400, "created_at": _iso(p.at)}  # fmt: skip


def checks(state: FuulState, values: dict[str, Any], path: Mapping[str, str]) -> tuple[int, Any]:
    status = values.get("status")
    checks = state.checks_of(_user(values))
    return 200, {"claim_checks": [_check(c) for c in checks if status in (None, c.status)]}


def claim_totals(
    state: FuulState, values: dict[str, Any], path: Mapping[str, str]
) -> tuple[int, Any]:
    totals: dict[tuple[str, Any], int] = {}
    for check in state.checks_of(_user(values)):
        if values.get("reason") in (None, check.payout.reason):
            group = (check.status, check.payout.currency_address)
            totals[group] = totals.get(group, 0) + int(check.payout.amount * 10**18)
    rows = {"claimed": [], "unclaimed": []}  # type: dict[str, list[dict[str, Any]]]
    for (status, currency), amount in totals.items():
        rows[status].append({"currency_address": currency, "currency_chain_id": None,
                             "currency_name": "TOKEN", "currency_decimals": 18,
                             "amount": str(amount), "status": status})  # fmt: skip
    return 200, rows


def claim_history(
    state: FuulState, values: dict[str, Any], path: Mapping[str, str]
) -> tuple[int, Any]:
    done = [c for c in state.checks_of(_user(values)) if c.status == "claimed"]
    done.sort(key=lambda c: c.claimed_at or 0, reverse=True)
    rows = [{"hash": c.hash, "claimed_at": _iso(c.claimed_at or 0), **{
        k: v for k, v in _check(c).items() if k.startswith("currency_") or k == "amount"}}
        for c in done]  # fmt: skip
    return 200, numbered(rows, values, "total_count", 25)


def claimable(state: FuulState, values: dict[str, Any], path: Mapping[str, str]) -> tuple[int, Any]:
    checks = state.checks_of(_user(values))
    return 200, [_check(c) for c in checks if c.status == "unclaimed"]


def audiences(state: FuulState, values: dict[str, Any], path: Mapping[str, str]) -> tuple[int, Any]:
    user = _user(values)
    return 200, {"results": state.audiences.get((user.identifier, user.identifier_type), [])}


def portal(state: FuulState, values: dict[str, Any], path: Mapping[str, str]) -> tuple[int, Any]:
    ident = values["user_identifier"]
    state.catch_up()
    mine = [p for p in state.payouts if p.user.identifier == ident and p.is_referrer]
    referred = {p.end_user for p in mine}
    return 200, {"user_identifier": ident, "referred_users": len(referred),
                 "total_earnings": float(sum((p.amount for p in mine), Decimal(0))),
                 "total_volume": float(sum((p.volume_usd for p in mine), Decimal(0))),
                 "date_range": values.get("date_range"), "group_by": values.get("group_by")}  # fmt: skip
