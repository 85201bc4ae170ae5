"""``fuul.users``: who referred a user (``GET user/referrer``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..models import User
from ._decode import Answer
from ._group import Group
from ._query import user_query

__all__ = ["UserReferrer", "Users"]


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
