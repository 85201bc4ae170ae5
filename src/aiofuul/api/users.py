"""``fuul.users``: who referred a user (``GET user/referrer``), and setting or removing
that referrer (``PUT``/``DELETE user-referrers``, a service-role key)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..errors import ValidationError
from ..wire.models import User
from ..wire.validation import check_user
from ._decode import Answer
from ._group import Group, Written
from ._query import check_query_value, user_query

__all__ = ["UserReferrer", "Users", "referral_body"]


def referral_body(
    user: object, referrer: object, referral_code: object = None, check_format: bool = True
) -> dict[str, str]:
    """The body of ``PUT user-referrers``, every value checked (:class:`ValidationError`
    naming the field): the one set of rules of ``set_referrer`` and of the import."""
    user = check_user(user, check_format=check_format, field="user")
    referrer = check_user(referrer, check_format=check_format, field="referrer")
    if (user.identifier, user.identifier_type) == (referrer.identifier, referrer.identifier_type):
        raise ValidationError("referrer", "must not be the user itself", referrer.identifier)
    body = {
        "user_identifier": user.identifier,
        "user_identifier_type": user.identifier_type,
        "referrer_identifier": referrer.identifier,
        "referrer_identifier_type": referrer.identifier_type,
    }
    if referral_code is not None:
        body["referral_code"] = check_query_value("referral_code", referral_code)
    return body


class UserReferrer(Answer):
    """Who referred ``user_identifier``; the referrer's fields are None when nobody did.
    ``referrer_code`` is deprecated by Fuul in favour of ``referrer_codes``."""

    user_identifier: str | None = None
    referrer_identifier: str | None = None
    referrer_name: str | None = None
    referrer_code: str | None = None
    referrer_codes: list[Any] | None = None
    referrer_user_rebate_rate: Decimal | None = None


class Users(Group):
    """The ``user`` endpoints (``fuul.users``)."""

    _lane = "users"

    async def referrer(self, user: User) -> UserReferrer:
        """``GET user/referrer``: who referred ``user`` (fields None when nobody).

        Example::

            who = await fuul.users.referrer(user)
            if who.referrer_identifier is not None:
                print("referred by", who.referrer_identifier)
        """
        params = user_query(user, "user_identifier_type", self._check_format)
        result: UserReferrer = await self._one("user/referrer", params, UserReferrer)
        return result

    async def set_referrer(
        self, user: User, referrer: User, referral_code: str | None = None
    ) -> Written:
        """``PUT user-referrers``: ``referrer`` referred ``user`` (an upsert: sets or
        overwrites), optionally through ``referral_code``. Retried like a read: setting
        the same referrer twice is setting it once.

        Example::

            await fuul.users.set_referrer(alice, bob)
            assert (await fuul.users.referrer(alice)).referrer_identifier == bob.identifier
        """
        body = referral_body(user, referrer, referral_code, self._check_format)
        return await self._write("PUT", "user-referrers", Written, body=body)

    async def remove_referrer(self, user: User) -> Written:
        """``DELETE user-referrers``: ``user`` has no referrer any more. Refused with
        :class:`~aiofuul.UnprocessableEntityError` (422) while ``user`` has redeemed
        referral codes: undo those first (:meth:`ReferralCodes.remove_referral`)."""
        params = user_query(user, "user_identifier_type", self._check_format)
        return await self._write("DELETE", "user-referrers", Written, params=params)
