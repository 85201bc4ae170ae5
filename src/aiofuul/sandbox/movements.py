"""How the sandbox shows a payout of :class:`~aiofuul.sandbox.state.FuulState`: as a
payout and a movement of ``GET events/pipeline``, as a row of ``GET payouts/movements``,
and as the movement of a ``reward.earned`` webhook. One module, so that the views of one
payout agree (same amount, same time, same user) wherever a client reads it.

The state makes the payouts; this module only renders them, and imports nothing of the
sandbox at run time (the state and the read endpoints both import it).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .state import Payout

__all__ = ["iso", "movement_row", "pipeline_payout", "reward_movement"]

# What the sandbox calls the token of an on-chain payout (it knows only its address).
TOKEN_NAME = "TOKEN"


def iso(wall: float) -> str:
    """Seconds since the epoch as the API writes a time: ``2026-01-02T03:04:05.678Z``."""
    moment = datetime.fromtimestamp(wall, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _currency_name(p: Payout) -> str:
    return "POINT" if p.type == "point" else TOKEN_NAME


def movement_row(p: Payout) -> dict[str, Any]:
    """``p`` as a row of ``GET payouts/movements`` (and of the pipeline's ``movements``)."""
    return {
        "date": iso(p.at), "payout_id": p.id, "currency_address": p.currency_address,
        "chain_id": p.chain_id, "is_referrer": p.is_referrer, "conversion_id": p.conversion_id,
        "conversion_name": p.conversion_name, "total_amount": str(p.amount),
        "volume_usd": float(p.volume_usd), "project_name": "Sandbox project",
        "payout_status": p.status, "payout_status_details": None,
        "enduser_address": p.end_user.identifier, "user_identifier": p.user.identifier,
        "referrer_identifier": None if p.referrer is None else p.referrer.identifier,
        "dedup_id": p.dedup_id,
    }  # fmt: skip


def pipeline_payout(p: Payout) -> dict[str, Any]:
    """``p`` as an item of the pipeline's ``payouts`` (its shape is not published: the
    fields a reader of the pipeline most likely wants)."""
    return {
        "id": p.id, "type": p.type, "reason": p.reason, "amount": str(p.amount),
        "currency": _currency_name(p), "currency_address": p.currency_address,
        "chain_id": p.chain_id, "status": p.status, "user_identifier": p.user.identifier,
        "user_identifier_type": p.user.identifier_type, "is_referrer": p.is_referrer,
        "created_at": iso(p.at),
    }  # fmt: skip


def reward_movement(p: Payout) -> dict[str, Any]:
    """``p`` as the ``movement`` of a ``reward.earned`` webhook: the documented fields,
    plus one no client knows (``"sandbox": true``), which receivers must tolerate.

    A movement has no id: ``status_details`` names the payout and its event, which keeps
    two payouts to one user in one instant apart (and traceable) in a test."""
    currency: dict[str, Any] = {"name": _currency_name(p)}
    if p.currency_address is not None:
        currency |= {"address": p.currency_address, "chain_id": p.chain_id}
    return {
        "type": p.type,
        "reason": p.reason,
        "status": p.status,
        "status_details": f"sandbox payout {p.id} for event {p.dedup_id!r}",
        "user_identifier": p.user.identifier,
        "user_identifier_type": p.user.identifier_type,
        "amount": str(p.amount),
        "currency": currency,
        "conversion_name": p.conversion_name,
        "created_at": iso(p.at),
        "sandbox": True,
    }
