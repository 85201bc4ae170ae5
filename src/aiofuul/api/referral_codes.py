"""``fuul.referral_codes``: a user's codes, their referral status, one code's details."""

from __future__ import annotations

from decimal import Decimal

from ..models import User
from ._decode import Answer, Timestamp
from ._group import Group, check_paging, segment
from ._query import check_query_value, user_query
from .paginator import PageToken, Paginator

__all__ = ["CodeUse", "ReferralCode", "ReferralCodeDetails", "ReferralCodes", "ReferralStatus"]


class CodeUse(Answer):
    """One use of a code: who used it and when."""

    identifier: str | None = None
    identifier_type: str | None = None
    used_at: Timestamp | None = None


class ReferralCode(Answer):
    """A referral code of a user, with its uses and what it earned (USD)."""

    code: str | None = None
    created_at: Timestamp | None = None
    used_by: list[CodeUse] | None = None
    max_uses: int | None = None
    uses: int | None = None
    remaining_uses: int | None = None
    rebate_rate: Decimal | None = None
    clicks: int | None = None
    total_users: int | None = None
    total_earnings: Decimal | None = None


class ReferralStatus(Answer):
    """Whether a user was referred, and by which code and whom."""

    referred: bool | None = None
    code: str | None = None
    referrer_identifier: str | None = None
    referrer_identifier_type: str | None = None
    referred_at: Timestamp | None = None


class ReferralCodeDetails(ReferralCode):
    """``available`` (whether the code can still be used), and the code's details when
    it exists."""

    available: bool | None = None


class ReferralCodes(Group):
    """The ``referral_codes`` endpoints (``fuul.referral_codes``)."""

    _lane = "referral_codes"

    def list(
        self,
        user: User,
        *,
        page_size: int | None = None,
        limit: int | None = None,
        start: PageToken = None,
    ) -> Paginator[ReferralCode]:
        """``GET referral_codes``: the codes of ``user``, in pages (``page_size`` 1-100).

        Example::

            async for code in fuul.referral_codes.list(user):
                print(code.code, code.uses, code.remaining_uses)
        """
        params = user_query(user, "user_identifier_type", self._check_format)
        check_paging(page_size, limit)
        return self._numbered(
            "referral_codes", params, ReferralCode, page_size=page_size, limit=limit, start=start
        )

    async def status(self, user: User) -> ReferralStatus:
        """``GET referral_codes/status``: whether ``user`` was referred, and how."""
        params = user_query(user, "user_identifier_type", self._check_format)
        result: ReferralStatus = await self._one("referral_codes/status", params, ReferralStatus)
        return result

    async def get(self, code: str) -> ReferralCodeDetails:
        """``GET referral_codes/{code}``: whether ``code`` is available, with its details
        when it exists."""
        code = check_query_value("code", code)
        path = "referral_codes/" + segment(code)
        result: ReferralCodeDetails = await self._one(path, {}, ReferralCodeDetails)
        return result
