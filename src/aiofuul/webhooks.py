"""Fuul's webhooks: what Fuul POSTs to your backend when a reward is earned.

Fuul sends ``{"event_type": "reward.earned", "movement": {...}}`` for every movement
(a reward to a user or an affiliate), in every status (``rejected`` included), and
retries it on a non-2xx answer or a timeout, so the same movement may arrive more than
once: store it by :attr:`RewardEarned.key`, once. :func:`parse` turns a body into a
typed :class:`RewardEarned`, or raises :class:`~aiofuul.WebhookError` saying what is
wrong. Fuul publishes no signature scheme: nothing here checks one (see
docs/api/webhooks.md for how to restrict the endpoint instead).

Decoding is lenient, like the read endpoints': fields nobody knows yet are kept
(:attr:`RewardEarned.extra`, and :attr:`RewardEarned.raw` is the whole body), a number
may arrive as a string and a string as a number, and a value outside the documented
ones (a new movement ``type``) is kept as sent rather than refused: refusing it would
make the receiver answer non-2xx, and Fuul would retry a reward that can never be read.
Only what a receiver cannot do without is required: ``type``, ``reason``, ``status``,
``user_identifier`` and ``amount``.

Example::

    from decimal import Decimal

    from aiofuul import webhooks

    reward = webhooks.parse(b'{"event_type": "reward.earned", "movement": {'
                            b'"type": "point", "reason": "end_user_payout", '
                            b'"status": "accepted", "user_identifier": "0xabc", '
                            b'"amount": "12.5", "created_at": "2026-01-02T03:04:05Z"}}')
    assert reward.amount == Decimal("12.5") and reward.created_at.year == 2026
    print(reward.key)  # the same for every delivery of this movement in this status
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import msgspec

from .errors import WebhookError
from .wire.models import DECODE_ERRORS

__all__ = [
    "MOVEMENT_REASONS",
    "MOVEMENT_STATUSES",
    "MOVEMENT_TYPES",
    "REWARD_EARNED",
    "RewardCurrency",
    "RewardEarned",
    "parse",
]

#: The ``event_type`` of the one webhook Fuul documents.
REWARD_EARNED = "reward.earned"
#: The documented movement types; :attr:`RewardEarned.type` may hold another (kept as sent).
MOVEMENT_TYPES: frozenset[str] = frozenset({"point", "onchain-currency", "airdrop"})
#: The documented reasons of a movement.
MOVEMENT_REASONS: frozenset[str] = frozenset({"end_user_payout", "affiliate_payout"})
#: The documented statuses of a movement.
MOVEMENT_STATUSES: frozenset[str] = frozenset({"accepted", "rejected", "pending"})

# The documented fields of a movement, in the order they enter the key.
_DOCUMENTED = (
    "type",
    "reason",
    "status",
    "status_details",
    "user_identifier",
    "user_identifier_type",
    "amount",
    "currency",
    "conversion_name",
    "created_at",
)
# Seconds since the epoch above this are taken as milliseconds (1e11 s is year 5138).
_MILLIS_FROM = 1e11
_T = TypeVar("_T")


class RewardCurrency(msgspec.Struct, frozen=True):
    """The currency of a movement: its ``name`` (``"POINT"``, ``"USDC"``, ...) and every
    field as sent in ``raw`` (an address, a chain id: Fuul documents only ``name``)."""

    name: str | None
    raw: dict[str, Any]


class RewardEarned(msgspec.Struct, frozen=True):
    """One ``reward.earned`` webhook: the movement it reports, typed.

    ``type`` is ``point``, ``onchain-currency`` or ``airdrop`` (see
    :data:`MOVEMENT_TYPES`), ``reason`` ``end_user_payout`` or ``affiliate_payout``,
    ``status`` ``accepted``, ``rejected`` or ``pending``; a value Fuul adds later is kept
    as sent, so compare with these and have an ``else``. ``amount`` is exact (a
    :class:`~decimal.Decimal`, from a number or a numeric string). ``created_at`` is
    timezone-aware (UTC when the body gave no zone), or None when absent. ``extra`` holds
    the movement's fields Fuul does not document; ``raw`` is the whole body as sent.
    """

    type: str
    reason: str
    status: str
    status_details: Any
    user_identifier: str
    user_identifier_type: str | None
    amount: Decimal
    currency: RewardCurrency | None
    conversion_name: str | None
    created_at: datetime | None
    extra: dict[str, Any]
    raw: dict[str, Any]
    event_type: str = REWARD_EARNED

    @property
    def key(self) -> str:
        """A stable idempotency key: the same for every delivery of this movement in this
        status, different for anything else.

        Fuul's movement has no id, so the key is a SHA-256 over the documented fields in
        canonical form (``amount`` as an exact number, so ``"10"``, ``10`` and ``10.0``
        agree; ``created_at`` in UTC; ``currency`` with sorted keys). ``status`` is part of
        it: a movement that goes from ``pending`` to ``accepted`` arrives twice with the
        news, and the second is not a duplicate. Undocumented fields are left out, since
        one that changes per attempt (a send time) would defeat the key. Two movements
        equal in every documented field get one key; no receiver could tell them apart.
        """
        parts = [
            self.type,
            self.reason,
            self.status,
            _canonical(self.status_details),
            self.user_identifier,
            self.user_identifier_type,
            _number_text(self.amount),
            None if self.currency is None else _canonical(self.currency.raw),
            self.conversion_name,
            None if self.created_at is None else self.created_at.isoformat(),
        ]
        digest = hashlib.sha256(msgspec.json.encode(parts)).hexdigest()
        return "rwd_" + digest[:40]

    def to_movement(self) -> dict[str, Any]:
        """The movement as Fuul sent it (documented and undocumented fields)."""
        movement = self.raw.get("movement")
        return dict(movement) if isinstance(movement, dict) else {}


def parse(body: bytes | str) -> RewardEarned:
    """The :class:`RewardEarned` in a webhook body, or :class:`~aiofuul.WebhookError`
    naming what is wrong: not JSON, not an object, another ``event_type`` (its
    ``event_type`` attribute says which), no ``movement`` object, or a required field of
    the movement missing or unusable."""
    try:
        data = msgspec.json.decode(body)
    except DECODE_ERRORS as exc:  # nested too deep included
        raise WebhookError("body", f"must be JSON ({exc})") from None
    if not isinstance(data, dict):
        raise WebhookError("body", "must be a JSON object", type(data).__name__)
    event_type = data.get("event_type")
    if event_type != REWARD_EARNED:
        if isinstance(event_type, str) and event_type:
            raise WebhookError(
                "event_type", f"must be {REWARD_EARNED!r}", event_type, event_type=event_type
            )
        raise WebhookError("event_type", f"is required and must be {REWARD_EARNED!r}", event_type)
    movement = data.get("movement")
    if not isinstance(movement, dict):
        raise WebhookError("movement", "is required and must be a JSON object", movement)
    return RewardEarned(
        type=_required(movement, "type", _text),
        reason=_required(movement, "reason", _text),
        status=_required(movement, "status", _text),
        status_details=movement.get("status_details"),
        user_identifier=_required(movement, "user_identifier", _text),
        user_identifier_type=_optional(movement, "user_identifier_type", _text),
        amount=_required(movement, "amount", _decimal),
        currency=_optional(movement, "currency", _currency),
        conversion_name=_optional(movement, "conversion_name", _text),
        created_at=_optional(movement, "created_at", _moment),
        extra={k: v for k, v in movement.items() if k not in _DOCUMENTED},
        raw=data,
    )


# -- converters: each returns the value, or raises ValueError with the rule -----------


def _required(movement: Mapping[str, Any], name: str, convert: Callable[[Any], _T]) -> _T:
    value = movement.get(name)
    if value is None:
        raise WebhookError(f"movement.{name}", "is required")
    return _converted(name, value, convert)


def _optional(movement: Mapping[str, Any], name: str, convert: Callable[[Any], _T]) -> _T | None:
    value = movement.get(name)
    return None if value is None else _converted(name, value, convert)


def _converted(name: str, value: Any, convert: Callable[[Any], _T]) -> _T:
    try:
        return convert(value)
    except ValueError as exc:
        raise WebhookError(f"movement.{name}", str(exc), value) from None


def _text(value: Any) -> str:
    # A number where a string is expected (an id typed string | number) is its text.
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("must be a string")
    text = str(value)
    if not text:
        raise ValueError("must not be empty")
    return text


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("must be a number or a numeric string")
    try:
        number = Decimal(value.strip() if isinstance(value, str) else repr(value))
    except InvalidOperation:
        raise ValueError("must be a number or a numeric string") from None
    if not number.is_finite():
        raise ValueError("must be a finite number")
    return number


def _currency(value: Any) -> RewardCurrency:
    if isinstance(value, str):  # a bare name, as events' args may carry it
        return RewardCurrency(value, {"name": value})
    if not isinstance(value, dict):
        raise ValueError("must be an object like {'name': 'USDC'} or a name")
    name = value.get("name")
    return RewardCurrency(None if name is None else _text(name), value)


def _moment(value: Any) -> datetime:
    """An ISO 8601 date-time (``Z`` or an offset; none: UTC), or seconds (or, when
    huge, milliseconds) since the epoch, as a number or a numeric string."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("must be an ISO 8601 date-time or a timestamp")
    if isinstance(value, str):
        text = value.strip()
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise ValueError("must be an ISO 8601 date-time or a timestamp") from None
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            return moment.astimezone(timezone.utc)
    seconds = float(value)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError("must be a finite timestamp")
    if abs(seconds) >= _MILLIS_FROM:
        seconds /= 1000.0
    try:
        return datetime.fromtimestamp(seconds, timezone.utc)
    except (OverflowError, OSError):
        raise ValueError("is out of range for a date") from None


def _number_text(number: Decimal) -> str:
    """``Decimal`` in one form for equal values: 10, 10.0 and 1E1 all give ``"10"``."""
    if number == 0:
        return "0"
    return format(number.normalize(), "f")


def _canonical(value: Any) -> Any:
    """``value`` with mappings' keys sorted and numbers as their canonical text, so that
    ``{"chain_id": 1}`` and ``{"chain_id": "1"}`` agree."""
    if isinstance(value, dict):
        return {str(k): _canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return _number_text(Decimal(repr(value)))
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return value
        return _number_text(number) if number.is_finite() else value
    return value
