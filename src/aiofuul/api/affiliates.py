"""``fuul.affiliates``: an affiliate's profile, and whether an affiliate code is free."""

from __future__ import annotations

from decimal import Decimal

from ..errors import NotFoundError
from ..wire.models import User
from ..wire.validation import check_user
from ._decode import Answer, Text, Timestamp
from ._group import Group, segment
from ._query import check_query_value

__all__ = ["Affiliate", "AffiliateCode", "Affiliates", "Tier"]


class AffiliateCode(Answer):
    """One of an affiliate's codes, with its uses and earnings (USD)."""

    code: str | None = None
    created_at: Timestamp | None = None
    uses: int | None = None
    clicks: int | None = None
    total_users: int | None = None
    total_earnings: Decimal | None = None
    rebate_rate: Decimal | None = None


class Tier(Answer):
    """A tier of the project's program."""

    id: Text | None = None
    name: str | None = None
    slug: str | None = None
    rank: int | None = None


class Affiliate(Answer):
    """An affiliate: who, where, its codes and its current tier (None: no tier)."""

    id: Text | None = None
    name: str | None = None
    user_identifier: str | None = None
    user_identifier_type: str | None = None
    region: str | None = None
    updated_at: Timestamp | None = None
    codes: list[AffiliateCode] | None = None
    current_tier: Tier | None = None


class _Available(Answer):
    available: bool


class Affiliates(Group):
    """The ``affiliates`` endpoints (``fuul.affiliates``)."""

    _lane = "affiliates"

    async def get(self, user: User) -> Affiliate | None:
        """``GET affiliates/{identifier}``: the affiliate ``user`` is, or None (404: not
        an affiliate).

        Example::

            affiliate = await fuul.affiliates.get(user)
            tier = affiliate.current_tier.name if affiliate and affiliate.current_tier else None
        """
        user = check_user(user, check_format=self._check_format)
        path = "affiliates/" + segment(user.identifier)
        try:
            return await self._one(path, {"identifier_type": user.identifier_type}, Affiliate)
        except NotFoundError:
            return None

    async def code_available(self, code: str) -> bool:
        """``GET affiliates/codes/{code}/availability``: whether ``code`` is free."""
        code = check_query_value("code", code)
        path = f"affiliates/codes/{segment(code)}/availability"
        return (await self._one(path, {}, _Available)).available
