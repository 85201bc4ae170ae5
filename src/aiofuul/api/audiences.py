"""``fuul.audiences``: the audience segments a user belongs to, and putting users in a
segment or taking one out (a service-role key)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import ValidationError
from ..wire.models import User
from ..wire.validation import check_user
from ._decode import Answer, Text, convert_list
from ._group import Group, Written, segment
from ._query import check_query_value, user_query

__all__ = ["MAX_AUDIENCE_BATCH", "AudienceSegment", "Audiences"]

#: The users one ``entries/batch`` request carries at most (Fuul publishes no limit: the
#: events batch's 100 is assumed).
MAX_AUDIENCE_BATCH = 100


def _segment_path(segment_id: str | int) -> str:
    text = str(segment_id) if type(segment_id) is int else segment_id
    return "audiences/audience-segments/" + segment(check_query_value("segment_id", text))


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

    async def add(self, segment_id: str | int, users: Iterable[User]) -> list[Written]:
        """``POST audiences/audience-segments/{id}/entries/batch``: put ``users`` (any
        number: sent 100 a request, every user checked before the first) in the segment.
        Returns the server's answer to each request, in order. Adding a user already in
        the segment changes nothing, so it is retried like a read, and after an error
        calling it again with the same users is safe.

        Example::

            await fuul.audiences.add("vip", [alice, bob])
        """
        path = _segment_path(segment_id) + "/entries/batch"
        if isinstance(users, (User, str, bytes)):
            raise ValidationError("users", "must be a list of users, not one", users)
        entries = []
        for i, user in enumerate(users):
            user = check_user(user, check_format=self._check_format, field=f"users[{i}]")
            entries.append(
                {"user_identifier": user.identifier, "user_identifier_type": user.identifier_type}
            )
        answers = []
        for start in range(0, len(entries), MAX_AUDIENCE_BATCH):
            chunk = entries[start : start + MAX_AUDIENCE_BATCH]
            answers.append(await self._write("POST", path, Written, body={"entries": chunk}))
        return answers

    async def remove(self, segment_id: str | int, user: User) -> Written:
        """``DELETE audiences/audience-segments/{id}/entries/{user_identifier}``: take
        ``user`` out of the segment."""
        user = check_user(user, check_format=self._check_format)
        path = _segment_path(segment_id) + "/entries/" + segment(user.identifier)
        params = {"user_identifier_type": user.identifier_type}
        return await self._write("DELETE", path, Written, params=params)
