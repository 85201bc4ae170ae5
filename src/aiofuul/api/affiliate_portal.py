"""``fuul.affiliate_portal``: an affiliate's statistics, as the vendor's affiliate portal
shows them. These endpoints need a service-role key; their answers are large objects
whose shapes are not published, returned as decoded JSON."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from ..errors import ValidationError
from ..wire.models import User
from ..wire.validation import check_user
from ._group import Group
from ._query import check_choice, moment

__all__ = ["AffiliatePortal"]

DATE_RANGES = ("7d", "30d", "MTD", "QTD", "custom")
GROUP_BY = ("day", "week", "month")
When = datetime | date | str


def _object(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise TypeError("not an object")
    return raw


class AffiliatePortal(Group):
    """The ``affiliate-portal`` endpoints (``fuul.affiliate_portal``)."""

    _lane = "affiliate_portal"
    _needs = "service-role"

    async def _stats(
        self,
        path: str,
        user: User,
        since: When | None,
        until: When | None,
        date_range: str | None,
        group_by: str | None,
    ) -> dict[str, Any]:
        user = check_user(user, check_format=self._check_format)
        params = {"user_identifier": user.identifier}
        if date_range is not None:
            params["date_range"] = check_choice("date_range", date_range, DATE_RANGES)
        if (since is not None or until is not None) and date_range not in (None, "custom"):
            raise ValidationError(
                "date_range", "must be 'custom' (or unset) when since/until are given", date_range
            )
        if since is not None:
            params["from"] = moment("since", since)
        if until is not None:
            params["to"] = moment("until", until)
        if group_by is not None:
            params["group_by"] = check_choice("group_by", group_by, GROUP_BY)
        return await self._get("affiliate-portal/" + path, params, _object)

    async def stats(
        self,
        user: User,
        *,
        since: When | None = None,
        until: When | None = None,
        date_range: str | None = None,
        group_by: str | None = None,
    ) -> dict[str, Any]:
        """``GET affiliate-portal/stats``: ``user``'s statistics over a period
        (``since``/``until``, or ``date_range``: ``7d``, ``30d``, ``MTD``, ``QTD``).

        Example::

            stats = await fuul.affiliate_portal.stats(user, date_range="30d", group_by="week")
        """
        return await self._stats("stats", user, since, until, date_range, group_by)

    async def total_stats(
        self,
        user: User,
        *,
        since: When | None = None,
        until: When | None = None,
        date_range: str | None = None,
    ) -> dict[str, Any]:
        """``GET affiliate-portal/total-stats``: ``user``'s totals."""
        return await self._stats("total-stats", user, since, until, date_range, None)

    async def stats_breakdown(
        self,
        user: User,
        *,
        since: When | None = None,
        until: When | None = None,
        date_range: str | None = None,
        group_by: str | None = None,
    ) -> dict[str, Any]:
        """``GET affiliate-portal/stats-breakdown``: ``user``'s statistics by period."""
        return await self._stats("stats-breakdown", user, since, until, date_range, group_by)

    async def referral_tree(self, user: User) -> dict[str, Any]:
        """``GET affiliate-portal/referral-tree``: whom ``user`` referred, and whom they did."""
        return await self._stats("referral-tree", user, None, None, None, None)
