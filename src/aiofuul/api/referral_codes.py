"""``fuul.referral_codes``: a user's codes, their referral status, one code's details;
and the writes (a service-role key): generating codes, using one, its ``max_uses``,
undoing a use."""

from __future__ import annotations

import builtins
from decimal import Decimal
from typing import Any

from ..errors import ValidationError
from ..wire.models import User
from ..wire.validation import check_user
from ._decode import Answer, Timestamp
from ._group import Group, Written, check_paging, segment
from ._query import check_int_range, check_query_value, user_query
from .paginator import PageToken, Paginator

__all__ = [
    "MAX_GENERATED",
    "CodeUse",
    "ReferralCode",
    "ReferralCodeDetails",
    "ReferralCodes",
    "ReferralStatus",
]


#: The codes one ``generate`` makes at most (the API's bound on ``quantity``).
MAX_GENERATED = 50
_MAX_USES = 2**31 - 1


def _codes(raw: Any) -> list[str]:
    """``[{"code": ...}, ...]`` as the codes; ValueError when the answer is not that."""
    if not isinstance(raw, list) or not all(
        isinstance(item, dict) and isinstance(item.get("code"), str) for item in raw
    ):
        raise ValueError("not a list of codes")
    return [item["code"] for item in raw]


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

    async def generate(
        self, user: User, quantity: int = 5, max_uses: int | None = None
    ) -> builtins.list[str]:
        """``POST referral_codes``: ``quantity`` (1-50) new codes for ``user``, each
        usable ``max_uses`` times (None: without limit). Not idempotent: sent again only
        when it surely did not arrive; after a failure that leaves it unknown it raises
        :class:`~aiofuul.AmbiguousWriteError` (:meth:`list` shows the codes ``user`` has).

        Example::

            codes = await fuul.referral_codes.generate(user, quantity=2, max_uses=10)
        """
        params = user_query(user, "user_identifier_type", self._check_format)
        params["quantity"] = str(check_int_range("quantity", quantity, 1, MAX_GENERATED))
        if max_uses is not None:
            params["max_uses"] = str(check_int_range("max_uses", max_uses, 0, _MAX_USES))
        check = "fuul.referral_codes.list(user): the codes it made would be there"
        return await self._write(
            "POST", "referral_codes", _codes, params=params, idempotent=False, check=check
        )

    async def use(
        self,
        code: str,
        user: User,
        signature: str | None = None,
        signature_message: str | None = None,
        chain_id: int | None = None,
    ) -> Written:
        """``PATCH referral_codes/{code}/use``: ``user`` was referred with ``code``. A
        service-role key needs no signature; otherwise ``signature`` and
        ``signature_message`` (and ``chain_id`` for a contract wallet) prove it. Refused
        with :class:`~aiofuul.UnprocessableEntityError` once the code reached its
        ``max_uses``. Not idempotent: see :meth:`generate`
        (:meth:`status` tells whether ``user`` was referred).

        Example::

            await fuul.referral_codes.use("ABC123", user)
        """
        code = check_query_value("code", code)
        params = user_query(user, "user_identifier_type", self._check_format)
        if (signature is None) != (signature_message is None):
            field = "signature_message" if signature_message is None else "signature"
            raise ValidationError(field, "must be given with the other signature field")
        body: dict[str, Any] = {}
        if signature is not None and signature_message is not None:
            body["signature"] = check_query_value("signature", signature)
            body["signature_message"] = check_query_value("signature_message", signature_message)
        if chain_id is not None:
            body["chain_id"] = check_int_range("chain_id", chain_id, 1, 2**63 - 1)
        path = f"referral_codes/{segment(code)}/use"
        check = "fuul.referral_codes.status(user): referred=True and this code if it did"
        return await self._write(
            "PATCH", path, Written, params=params, body=body, idempotent=False, check=check
        )

    async def set_max_uses(self, code: str, max_uses: int | None) -> Written:
        """``PATCH referral_codes/{code}``: how many times ``code`` may be used; None:
        without limit, 0: disabled.

        Example::

            await fuul.referral_codes.set_max_uses("ABC123", 0)   # nobody may use it now
        """
        code = check_query_value("code", code)
        if max_uses is not None:
            check_int_range("max_uses", max_uses, 0, _MAX_USES)
        path = "referral_codes/" + segment(code)
        return await self._write("PATCH", path, Written, body={"max_uses": max_uses})

    async def remove_referral(self, code: str, user: User, referrer: User) -> Written:
        """``DELETE referral_codes/{code}/referrals``: undo ``user``'s use of
        ``referrer``'s ``code``."""
        code = check_query_value("code", code)
        params = user_query(user, "user_identifier_type", self._check_format)
        referrer = check_user(referrer, check_format=self._check_format, field="referrer")
        params["referrer_identifier"] = referrer.identifier
        params["referrer_identifier_type"] = referrer.identifier_type
        path = f"referral_codes/{segment(code)}/referrals"
        return await self._write("DELETE", path, Written, params=params)
