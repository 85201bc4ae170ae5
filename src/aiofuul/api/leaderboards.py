"""``fuul.leaderboards``: rankings by payouts, points, volume, revenue and referred users,
and the volume referred by given users.

Fuul computes leaderboards with a lag of up to an hour: caching an answer for a minute
costs nothing (see the FastAPI example in ``examples/``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from ..errors import ValidationError
from ..wire.models import User
from ..wire.validation import check_user
from ._decode import Answer, convert_list
from ._group import Group, check_paging
from ._query import check_choice, check_query_value, comma_list, moment
from .paginator import PageToken, Paginator

__all__ = ["LeaderboardEntry", "Leaderboards", "ReferredUsersEntry", "ReferredVolume"]

USER_TYPES = ("affiliate", "end_user")
#: The most users one ``referred-volume`` request takes.
MAX_REFERRED_USERS = 100
When = datetime | date | str


class LeaderboardEntry(Answer):
    """One rank of a leaderboard. Which fields are set depends on the board and on the
    ``fields`` asked for (``tiers``, ``referred_volume``, ``referred_users``)."""

    rank: int | None = None
    address: str | None = None
    user_identifier: str | None = None
    user_identifier_type: str | None = None
    affiliate_code: str | None = None
    affiliate_name: str | None = None
    chain_id: int | None = None
    total_amount: Decimal | None = None
    total_attributions: int | None = None
    tiers: dict[str, Any] | None = None
    referred_volume: Decimal | None = None
    referred_users: int | None = None
    enduser_revenue: Decimal | None = None
    enduser_volume: Decimal | None = None
    attributions: int | None = None
    volume_usd: Decimal | None = None
    points: Decimal | None = None


class ReferredUsersEntry(Answer):
    """One rank of the referred-users leaderboard."""

    rank: int | None = None
    address: str | None = None
    total_referred_users: int | None = None


class ReferredVolume(Answer):
    """The volume (USD) referred by one user."""

    user_identifier: str | None = None
    referred_volume: Decimal | None = None


class Leaderboards(Group):
    """The leaderboard endpoints (``fuul.leaderboards``). Each board is a
    :class:`~aiofuul.api.paginator.Paginator` (``page_size`` 1-100)."""

    _lane = "leaderboards"

    def _board(
        self,
        path: str,
        *,
        currency_address: str | None = None,
        user: User | None = None,
        user_type: str | None = None,
        fields: Iterable[str] | None = None,
        since: When | None = None,
        until: When | None = None,
        conversion_external_ids: Iterable[int] | None = None,
        page_size: int | None,
        limit: int | None,
        start: PageToken,
    ) -> Paginator[LeaderboardEntry]:
        params: dict[str, str] = {}
        if currency_address is not None:
            params["currency_address"] = check_query_value("currency_address", currency_address)
        if user is not None:
            user = check_user(user, check_format=self._check_format)
            params["user_identifier"] = user.identifier
            params["identifier_type"] = user.identifier_type
        if since is not None:
            params["from"] = moment("since", since)
        if until is not None:
            params["to"] = moment("until", until)
        if user_type is not None:
            params["user_type"] = check_choice("user_type", user_type, USER_TYPES)
        if fields is not None:
            params["fields"] = comma_list("fields", fields)
        if conversion_external_ids is not None:
            ids = conversion_external_ids
            params["conversion_external_ids"] = comma_list("conversion_external_ids", ids)
        check_paging(page_size, limit)
        return self._numbered(
            path, params, LeaderboardEntry, page_size=page_size, limit=limit, start=start
        )

    def payouts(
        self,
        *,
        currency_address: str,
        user: User | None = None,
        user_type: str | None = None,
        fields: Iterable[str] | None = None,
        since: When | None = None,
        until: When | None = None,
        conversion_external_ids: Iterable[int] | None = None,
        page_size: int | None = None,
        limit: int | None = None,
        start: PageToken = None,
    ) -> Paginator[LeaderboardEntry]:
        """``GET payouts/leaderboard/payouts``: ranked by payouts in ``currency_address``
        (required); ``user`` narrows to one user's rank; ``user_type`` is ``affiliate``
        or ``end_user``; ``fields`` adds ``tier``, ``referred_volume``,
        ``referred_users``.

        Example::

            top = await fuul.leaderboards.payouts(currency_address=usdc, page_size=10)
            for row in top.items:
                print(row.rank, row.address, row.total_amount)
        """
        return self._board(
            "payouts/leaderboard/payouts", currency_address=check_query_value(
                "currency_address", currency_address), user=user, user_type=user_type,
            fields=fields, since=since, until=until,
            conversion_external_ids=conversion_external_ids,
            page_size=page_size, limit=limit, start=start,
        )  # fmt: skip

    def points(
        self,
        *,
        user: User | None = None,
        fields: Iterable[str] | None = None,
        page_size: int | None = None,
        limit: int | None = None,
        start: PageToken = None,
    ) -> Paginator[LeaderboardEntry]:
        """``GET payouts/leaderboard/points``: ranked by points."""
        return self._board(
            "payouts/leaderboard/points", user=user, fields=fields,
            page_size=page_size, limit=limit, start=start,
        )  # fmt: skip

    def volume(
        self,
        *,
        currency_address: str | None = None,
        user: User | None = None,
        user_type: str | None = None,
        page_size: int | None = None,
        limit: int | None = None,
        start: PageToken = None,
    ) -> Paginator[LeaderboardEntry]:
        """``GET payouts/leaderboard/volume``: ranked by volume."""
        return self._board(
            "payouts/leaderboard/volume", currency_address=currency_address, user=user,
            user_type=user_type, page_size=page_size, limit=limit, start=start,
        )  # fmt: skip

    def revenue(
        self,
        *,
        currency_address: str | None = None,
        user: User | None = None,
        user_type: str | None = None,
        fields: Iterable[str] | None = None,
        page_size: int | None = None,
        limit: int | None = None,
        start: PageToken = None,
    ) -> Paginator[LeaderboardEntry]:
        """``GET payouts/leaderboard/revenue``: ranked by revenue."""
        return self._board(
            "payouts/leaderboard/revenue", currency_address=currency_address, user=user,
            user_type=user_type, fields=fields, page_size=page_size, limit=limit, start=start,
        )  # fmt: skip

    def referred(
        self, *, page_size: int | None = None, limit: int | None = None, start: PageToken = None
    ) -> Paginator[ReferredUsersEntry]:
        """``GET leaderboard/referred``: ranked by the number of users referred."""
        check_paging(page_size, limit)
        return self._numbered(
            "leaderboard/referred", {}, ReferredUsersEntry,
            page_size=page_size, limit=limit, start=start,
        )  # fmt: skip

    async def referred_volume(
        self, users: Sequence[User], *, no_cache: bool = False
    ) -> list[ReferredVolume]:
        """``GET payouts/leaderboard/referred-volume``: the volume each of ``users``
        referred. The endpoint takes 1 to 100 users of one identifier type a request:
        more (or mixed types) are split into several requests, every user checked before
        the first is sent. Answers come back in the order of ``users``' requests.

        Example::

            for row in await fuul.leaderboards.referred_volume([alice, bob]):
                print(row.user_identifier, row.referred_volume)
        """
        if isinstance(users, User) or not isinstance(users, Sequence) or not users:
            raise ValidationError("users", "must be a non-empty list of aiofuul.User", users)
        by_type: dict[str, list[str]] = {}
        for i, user in enumerate(users):
            user = check_user(user, check_format=self._check_format, field=f"users[{i}]")
            by_type.setdefault(user.identifier_type, []).append(user.identifier)
        requests = []
        for kind, identifiers in by_type.items():
            for at in range(0, len(identifiers), MAX_REFERRED_USERS):
                chunk = identifiers[at : at + MAX_REFERRED_USERS]
                query = {
                    "user_identifiers": comma_list("users", chunk, 1, MAX_REFERRED_USERS),
                    "identifier_type": kind,
                }
                if no_cache:
                    query["no_cache"] = "true"
                requests.append(query)
        found: list[ReferredVolume] = []
        for query in requests:
            found += await self._get(
                "payouts/leaderboard/referred-volume",
                query,
                lambda raw: convert_list(raw["referred_volumes"], ReferredVolume),
            )
        return found
