"""The read endpoints beyond events, served from :class:`~aiofuul.sandbox.state.FuulState`.

:data:`ROUTES` is the sandbox's table: each endpoint's path, lane (its rate limit), the
parameters it takes (judged by :mod:`~aiofuul.sandbox.api_query`), the key kind it needs,
and its answer. Each endpoint pages in its own style, as the API does: page numbers with
``total_results``; page numbers with ``count``/``total_count`` and ``next_page``; and a
cursor (``referral-earnings``) whose pages may be empty before the end, since a page is
a slice of all referred users of which only the active ones are shown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

from ..engine.limits import LaneName
from ..wire.models import User
from .api_query import Param, judge_query, numbered
from .claims import audiences, checks, claim_history, claim_totals, claimable, portal
from .movements import iso as _iso
from .movements import movement_row
from .rankings import leaderboard, referred_users, referred_volume
from .state import FuulState, Payout

__all__ = ["API_LANES", "ROUTES", "Route", "answer_route", "key_refusal"]

Answer = Callable[[FuulState, dict[str, Any], Mapping[str, str]], tuple[int, Any]]


@dataclass(frozen=True)
class Route:
    """One endpoint of the table (see the module docstring)."""

    path: str
    lane: LaneName
    params: Mapping[str, Param]
    answer: Answer
    needs: str = "read"


_NOT_FOUND = {"message": "Not Found", "statusCode": 404}
_PAGE = {"page": Param("int", high=10**6), "page_size": Param("int")}
_UID = {"user_identifier": Param(required=True), "user_identifier_type": Param("idtype", True)}
_UID_T = {"user_identifier": Param(required=True), "identifier_type": Param("idtype", True)}
_TYPE = Param("enum", choices=("onchain-currency", "point"))


def _user(values: Mapping[str, Any]) -> User:
    kind = values.get("user_identifier_type") or values["identifier_type"]
    return User(values["user_identifier"], kind)


# -- users, referral codes, affiliates ----------------------------------------------------
def _referrer(state: FuulState, values: dict[str, Any], path: Mapping[str, str]) -> tuple[int, Any]:
    user = _user(values)
    referral = state.referrals.get((user.identifier, user.identifier_type))
    if referral is None:
        return 200, {"user_identifier": user.identifier, "referrer_identifier": None,
                     "referrer_name": None, "referrer_code": None, "referrer_codes": [],
                     "referrer_user_rebate_rate": None}  # fmt: skip
    ref = referral.referrer
    affiliate = state.affiliates.get((ref.identifier, ref.identifier_type))
    codes = [c.code for c in state.codes.values() if c.owner == ref]
    return 200, {"user_identifier": user.identifier, "referrer_identifier": ref.identifier,
                 "referrer_name": affiliate.name if affiliate else None,
                 "referrer_code": referral.code, "referrer_codes": codes,
                 "referrer_user_rebate_rate": None}  # fmt: skip


def _code_row(state: FuulState, code: str) -> dict[str, Any]:
    found = state.codes[code]
    uses = len(found.used_by)
    earned = sum((p.amount for p in state.payouts_of(found.owner) if p.is_referrer), Decimal(0))
    return {
        "code": found.code, "created_at": _iso(found.created_at),
        "used_by": [{"identifier": u.identifier, "identifier_type": u.identifier_type,
                     "used_at": _iso(at)} for u, at in found.used_by],
        "max_uses": found.max_uses, "uses": uses,
        "remaining_uses": None if found.max_uses is None else max(0, found.max_uses - uses),
        "rebate_rate": None, "clicks": found.clicks, "total_users": uses,
        "total_earnings": float(earned),
    }  # fmt: skip


def _codes(state: FuulState, values: dict[str, Any], path: Mapping[str, str]) -> tuple[int, Any]:
    user = _user(values)
    rows = [_code_row(state, c.code) for c in state.codes.values() if c.owner == user]
    return 200, numbered(rows, values, "count")


def _status(state: FuulState, values: dict[str, Any], path: Mapping[str, str]) -> tuple[int, Any]:
    user = _user(values)
    referral = state.referrals.get((user.identifier, user.identifier_type))
    if referral is None:
        return 200, {"referred": False}
    return 200, {"referred": True, "code": referral.code,
                 "referrer_identifier": referral.referrer.identifier,
                 "referrer_identifier_type": referral.referrer.identifier_type,
                 "referred_at": _iso(referral.at)}  # fmt: skip


def _code(state: FuulState, values: dict[str, Any], path: Mapping[str, str]) -> tuple[int, Any]:
    code = path["code"]
    if code not in state.codes:
        return 200, {"code": code, "available": False}
    row = _code_row(state, code)
    return 200, {**row, "available": row["remaining_uses"] != 0}


def _affiliate(
    state: FuulState, values: dict[str, Any], path: Mapping[str, str]
) -> tuple[int, Any]:
    found = state.affiliates.get((path["identifier"], values["identifier_type"]))
    if found is None:
        return 404, {**_NOT_FOUND, "message": "Affiliate not found"}
    codes = [_code_row(state, c.code) for c in state.codes.values() if c.owner == found.user]
    keep = ("code", "created_at", "uses", "clicks", "total_users", "total_earnings", "rebate_rate")
    return 200, {
        "id": found.id, "name": found.name, "user_identifier": found.user.identifier,
        "user_identifier_type": found.user.identifier_type, "region": found.region,
        "updated_at": _iso(found.updated_at), "current_tier": found.tier,
        "codes": [{k: c[k] for k in keep} for c in codes],
    }  # fmt: skip


def _code_free(
    state: FuulState, values: dict[str, Any], path: Mapping[str, str]
) -> tuple[int, Any]:
    return 200, {"available": path["code"] not in state.codes}


# -- payouts --------------------------------------------------------------------------
def _in_period(payout: Payout, values: Mapping[str, Any], low: str, high: str) -> bool:
    return bool(values.get(low, -1e18) <= payout.at <= values.get(high, 1e18))


def _mine(state: FuulState, values: Mapping[str, Any], low: str, high: str) -> list[Payout]:
    kind = values.get("type")
    return [
        p for p in state.payouts_of(_user(values))
        if (kind is None or p.type == kind) and _in_period(p, values, low, high)
    ]  # fmt: skip


def _movements(
    state: FuulState, values: dict[str, Any], path: Mapping[str, str]
) -> tuple[int, Any]:
    rows = _mine(state, values, "from_date", "to_date")
    size = values.get("page_size", 10)
    page = values.get("page", 1)
    # Only the page asked for is rendered: a walk of 10,000 rows stays cheap.
    window = rows[(page - 1) * size : page * size]
    return 200, {"total_results": len(rows), "page": page, "page_size": size,
                 "results": [movement_row(p) for p in window]}  # fmt: skip


def _by_conversion(
    state: FuulState, values: dict[str, Any], path: Mapping[str, str]
) -> tuple[int, Any]:
    sums: dict[tuple[bool, Any, Any, Any], Decimal] = {}
    for p in _mine(state, values, "from", "to"):
        group = (p.is_referrer, p.conversion_id, p.conversion_name, p.currency_address)
        sums[group] = sums.get(group, Decimal(0)) + p.amount
    rows = [{"is_referrer": r, "total_amount": str(total), "conversion_id": cid,
             "conversion_name": name, "currency_address": cur, "chain_id": None}
            for (r, cid, name, cur), total in sums.items()]  # fmt: skip
    return 200, numbered(rows, values, "total")


def _earnings(state: FuulState, values: dict[str, Any], path: Mapping[str, str]) -> tuple[int, Any]:
    referrer = _user(values)
    everyone = state.referred_by(referrer)
    after = values.get("after", "c0")
    start = int(after[1:]) if after[:1] == "c" and after[1:].isdigit() else 0
    end = start + values.get("limit", 500)
    rows = []
    for user in everyone[start:end]:
        paid = [p for p in state.payouts_of(user) if not p.is_referrer]
        if values.get("referrer_scope", "active") == "active" and not paid:
            continue  # not active: this page may end up empty, the cursor goes on
        volume = sum((p.volume_usd for p in paid), Decimal(0))
        mine = [p for p in state.payouts_of(referrer) if p.is_referrer and p.end_user == user]
        earned = sum((p.amount for p in mine), Decimal(0))
        referral = state.referrals[(user.identifier, user.identifier_type)]
        rows.append({"user_identifier": user.identifier, "volume": float(volume),
                     "direct_eligible_volume": float(volume),
                     "earnings": [{"currency": "POINT", "amount": str(earned)}],
                     "total_commission_earned": [{"currency": "POINT", "amount": str(earned)}],
                     "date_joined": _iso(referral.at), "referral_code": referral.code})  # fmt: skip
    following = f"c{end}" if end < len(everyone) else None
    return 200, {"results": rows, "next_cursor": following, "count": len(rows)}


def _totals(state: FuulState, values: dict[str, Any], path: Mapping[str, str]) -> tuple[int, Any]:
    ident = path["user_identifier"]
    state.catch_up()
    points = sum(
        (p.amount for p in state.payouts if p.user.identifier == ident and p.type == "point"),
        Decimal(0),
    )
    return 200, {"total_points": float(points)}


def _terms(state: FuulState, values: dict[str, Any], path: Mapping[str, str]) -> tuple[int, Any]:
    wanted = values.get("tier_ids")
    tiers = [t for t in state.tiers if wanted is None or t["tier_id"] in wanted]
    return 200, {"tiers": tiers}


_PORTAL = {
    "user_identifier": Param(required=True), "from": Param("date"), "to": Param("date"),
    "date_range": Param("enum", choices=("7d", "30d", "MTD", "QTD", "custom")),
    "group_by": Param("enum", choices=("day", "week", "month")),
}  # fmt: skip
_BOARD = {"user_identifier": Param(), "identifier_type": Param("idtype"), **_PAGE}
_USER_TYPE = Param("enum", choices=("affiliate", "end_user"))
_STATUS = Param("enum", choices=("open", "unclaimed", "claimed"))
_REASON = Param("enum", choices=("affiliate_payout", "end_user_payout", "agency_payout"))
_FIELDS = Param("list", high=10)

#: The table. Order matters where paths overlap: ``referral_codes/status`` before
#: ``referral_codes/{code}``.
ROUTES: tuple[Route, ...] = (
    Route("user/referrer", "users", _UID, _referrer),
    Route("referral_codes", "referral_codes", {**_UID, **_PAGE}, _codes),
    Route("referral_codes/status", "referral_codes", _UID, _status),
    Route("referral_codes/{code}", "referral_codes", {}, _code),
    Route("affiliates/codes/{code}/availability", "affiliates", {}, _code_free),
    Route("affiliates/{identifier}", "affiliates", {"identifier_type": Param("idtype", True)}, _affiliate),
    Route("payouts/leaderboard/payouts", "leaderboards", {
        **_BOARD, "currency_address": Param(required=True), "from": Param("date"),
        "to": Param("date"), "user_type": _USER_TYPE, "fields": _FIELDS,
        "conversion_external_ids": Param("list")}, leaderboard("payouts")),
    Route("payouts/leaderboard/points", "leaderboards", {**_BOARD, "fields": _FIELDS}, leaderboard("points")),
    Route("payouts/leaderboard/volume", "leaderboards", {
        **_BOARD, "currency_address": Param(), "user_type": _USER_TYPE}, leaderboard("volume")),
    Route("payouts/leaderboard/revenue", "leaderboards", {
        **_BOARD, "currency_address": Param(), "user_type": _USER_TYPE, "fields": _FIELDS},
        leaderboard("revenue")),
    Route("payouts/leaderboard/referred-volume", "leaderboards", {
        "user_identifiers": Param("list", True), "identifier_type": Param("idtype"),
        "no_cache": Param("bool")}, referred_volume),
    Route("leaderboard/referred", "leaderboards", _PAGE, referred_users),
    Route("payouts", "payouts", {**_UID_T, **_PAGE, "type": _TYPE, "from": Param("date"),
          "to": Param("date"), "group_by": Param()}, _by_conversion),
    Route("payouts/movements", "payouts", {**_UID_T, **_PAGE, "type": _TYPE,
          "from_date": Param("date"), "to_date": Param("date")}, _movements),
    Route("payouts/referral-earnings", "payouts", {
        **_UID, "referrer_scope": Param("enum", choices=("active", "all")),
        "limit": Param("int", high=1000), "after": Param(), "from_date": Param("date"),
        "to_date": Param("date")}, _earnings),
    Route("payouts/totals/{user_identifier}", "payouts", {}, _totals),
    Route("payouts/terms-by-tier", "payouts", {"tier_ids": Param("list", high=1000)}, _terms),
    Route("claim-checks", "claim_checks", {**_UID, "status": _STATUS}, checks),
    Route("claim-checks/totals", "claim_checks", {**_UID, "status": _STATUS, "reason": _REASON}, claim_totals),
    Route("claim-checks/claim-history", "claim_checks", {**_UID, **_PAGE}, claim_history),
    Route("claimable-rewards", "claim_checks", _UID, claimable),
    Route("audiences/audience-segments/user", "audiences", _UID, audiences),
    *(Route(f"affiliate-portal/{p}", "affiliate_portal", _PORTAL, portal, "service-role")
      for p in ("stats", "total-stats", "stats-breakdown", "referral-tree")),
)  # fmt: skip

#: The lanes of the table (the server sends their requests here).
API_LANES = frozenset(route.lane for route in ROUTES)


def answer_route(
    route: Route,
    state: FuulState,
    query: Mapping[str, str],
    path: Mapping[str, str],
    scopes: frozenset[str] | None,
) -> tuple[int, bytes]:
    """``(status, body)`` of one request to ``route`` (a 400 is raised as BadRequest)."""
    refused = key_refusal(route.needs, scopes)
    if refused is not None:
        return refused
    values = judge_query(route.params, query)
    status, body = route.answer(state, values, path)
    return status, msgspec.json.encode(body)


def key_refusal(needs: str, scopes: frozenset[str] | None) -> tuple[int, bytes] | None:
    """The 403 for a key whose ``scopes`` lack what an endpoint ``needs`` (``read`` or
    ``service-role``; a service-role key may do everything), or None."""
    if scopes is None or {needs, "service-role"} & scopes:
        return None
    kind = "a service-role key" if needs == "service-role" else "a key with read scope"
    body = {"message": f"Forbidden: this endpoint needs {kind}", "statusCode": 403}
    return 403, msgspec.json.encode(body)
