"""The sandbox's leaderboards, ranked from the payouts of :mod:`~aiofuul.sandbox.state`:
by payouts in a currency, by points, by referred volume (``volume``), by on-chain
amounts (``revenue``), by referred users; and the volume users referred.

Like the API, ``payouts``/``points`` send ``total_amount`` as a number and
``volume``/``revenue`` as a string, and ``chain_id`` as a string.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from .movements import iso as _iso
from .state import FuulState, Payout

__all__ = ["leaderboard", "referred_users", "referred_volume"]

Answer = Callable[[FuulState, dict[str, Any], Mapping[str, str]], tuple[int, Any]]


def _counts(kind: str, p: Payout, values: Mapping[str, Any]) -> bool:
    """Whether payout ``p`` counts on the board ``kind`` asked with ``values``."""
    user_type = values.get("user_type")
    if user_type is not None and p.is_referrer != (user_type == "affiliate"):
        return False
    if not values.get("from", -1e18) <= p.at <= values.get("to", 1e18):
        return False
    currency = values.get("currency_address")
    if kind == "points":
        return p.type == "point"
    if kind == "volume":
        return not p.is_referrer and (currency is None or p.currency_address == currency)
    return p.type == "onchain-currency" and (currency is None or p.currency_address == currency)


def leaderboard(kind: str) -> Answer:
    """The answer of ``payouts/leaderboard/<kind>``."""

    def answer(
        state: FuulState, values: dict[str, Any], path: Mapping[str, str]
    ) -> tuple[int, Any]:
        state.catch_up()
        totals: dict[tuple[str, str], list[Any]] = {}
        for p in state.payouts:
            if _counts(kind, p, values):
                row = totals.setdefault((p.user.identifier, p.user.identifier_type), [
                    Decimal(0), 0, p.chain_id])  # fmt: skip
                row[0] += p.volume_usd if kind == "volume" else p.amount
                row[1] += 1
        ranked = sorted(totals.items(), key=lambda item: (-item[1][0], item[0]))
        fields = set(values.get("fields", ()))
        rows = []
        for rank, ((ident, id_type), (total, count, chain)) in enumerate(ranked, 1):
            if values.get("user_identifier") not in (None, ident):
                continue
            rows.append(_row(state, kind, fields, rank, ident, id_type, total, count, chain))
        page, size = values.get("page", 1), values.get("page_size", 10)
        return 200, {"total_results": len(rows), "page": page, "page_size": size,
                     "results": rows[(page - 1) * size : page * size],
                     "calculated_at": _iso(time.time())}  # fmt: skip

    return answer


def _row(
    state: FuulState, kind: str, fields: set[str], rank: int, ident: str, id_type: str,
    total: Decimal, count: int, chain: int | None,
) -> dict[str, Any]:  # fmt: skip
    owner = next((c.code for c in state.codes.values() if c.owner.identifier == ident), None)
    affiliate = state.affiliates.get((ident, id_type))
    amount: Any = float(total) if kind in ("payouts", "points") else str(total)
    row: dict[str, Any] = {
        "address": ident, "user_identifier": ident, "user_identifier_type": id_type,
        "rank": rank, "chain_id": None if chain is None else str(chain),
        "total_amount": amount, "total_attributions": count, "affiliate_code": owner,
    }  # fmt: skip
    if kind == "points":
        row["affiliate_name"] = affiliate.name if affiliate else None
    referred = [u for (_, _), r in state.referrals.items() if r.referrer.identifier == ident
                for u in (r.user,)]  # fmt: skip
    if "tier" in fields:
        row["tiers"] = {"current": affiliate.tier["name"]} if affiliate and affiliate.tier else {}
    if "referred_volume" in fields:
        row["referred_volume"] = float(_volume_of(state, referred))
    if "referred_users" in fields:
        row["referred_users"] = len(referred)
    return row


def _volume_of(state: FuulState, users: list[Any]) -> Decimal:
    return sum(
        (p.volume_usd for u in users for p in state.payouts_of(u) if not p.is_referrer),
        Decimal(0),
    )


def referred_volume(
    state: FuulState, values: dict[str, Any], path: Mapping[str, str]
) -> tuple[int, Any]:
    """``payouts/leaderboard/referred-volume``: the volume each named user referred."""
    kind = values.get("identifier_type")
    rows: list[dict[str, Any]] = []
    for ident in values["user_identifiers"]:
        referred = [r.user for r in state.referrals.values() if r.referrer.identifier == ident
                    and kind in (None, r.referrer.identifier_type)]  # fmt: skip
        # A number for some users and a string for others: the drift the SDK saw.
        volume = _volume_of(state, referred)
        rows.append({"user_identifier": ident,
                     "referred_volume": str(volume) if len(rows) % 2 else float(volume)})  # fmt: skip
    return 200, {"project_id": None, "referred_volumes": rows, "total_count": len(rows)}


def referred_users(
    state: FuulState, values: dict[str, Any], path: Mapping[str, str]
) -> tuple[int, Any]:
    """``leaderboard/referred``: referrers ranked by how many users they referred."""
    counts: dict[str, int] = {}
    for referral in state.referrals.values():
        counts[referral.referrer.identifier] = counts.get(referral.referrer.identifier, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    rows = [{"address": a, "total_referred_users": n, "rank": i}
            for i, (a, n) in enumerate(ranked, 1)]  # fmt: skip
    page, size = values.get("page", 1), values.get("page_size", 10)
    return 200, {"total_results": len(rows), "page": page, "page_size": size,
                 "results": rows[(page - 1) * size : page * size]}  # fmt: skip
