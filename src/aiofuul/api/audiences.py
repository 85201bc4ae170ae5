"""``fuul.audiences``: the audience segments a user belongs to."""

from __future__ import annotations

from typing import Any

from ..models import User
from ._decode import Answer, Text, convert_list
from ._group import Group
from ._query import user_query

__all__ = ["AudienceSegment", "Audiences"]


class AudienceSegment(Answer):
    """An audience segment, with the badge it shows."""

    id: Text | None = None
    name: str | None = None
    badge_name: str | None = None
    badge_description: str | None = None
    badge_image: str | None = None
    active: bool | None = None


class Audiences(Group):
    """The ``audiences`` endpoints (``fuul.audiences``)."""

    _lane = "audiences"

    async def of_user(self, user: User) -> list[AudienceSegment]:
        """``GET audiences/audience-segments/user``: the segments ``user`` belongs to.

        Example::

            badges = [s.badge_name for s in await fuul.audiences.of_user(user)]
        """
        params = user_query(user, "user_identifier_type", self._check_format)

        def read(raw: Any) -> list[AudienceSegment]:
            return convert_list(raw["results"], AudienceSegment)

        return await self._get("audiences/audience-segments/user", params, read)
