"""Every read and write of the Fuul API besides events, in endpoint groups named as the
official SDK's services, each on a lane (and a rate limit) of its own::

    async with FuulClient() as fuul:
        who = await fuul.users.referrer(user)
        async for movement in fuul.payouts.movements(user):
            ...
        await fuul.users.set_referrer(user, referrer)

A write returns the server's answer (:class:`Written`, or the codes it made) or raises.
Writes that are idempotent by meaning (PUT, DELETE, ``max_uses``, audience entries) are
retried like reads; ``referral_codes.generate`` and ``use`` are sent again only when they
surely did not arrive (:class:`~aiofuul.AmbiguousWriteError` otherwise).

Lists are :class:`~aiofuul.api.paginator.Paginator` objects; answers are lenient
msgspec Structs (:mod:`aiofuul.api._decode` says how): unknown fields land in
``extra``, numbers sent as strings (or the reverse) decode, dates are ``datetime``.

The events endpoints live here too: ``events_writes.py`` (``send_event``, ``send_batch``)
and ``events_reads.py`` (``event_status``, ``event_pipeline``, ``conversions``), with
``endpoints.py``, what every group needs of the client.
"""

from __future__ import annotations

from functools import cached_property

from ._decode import Answer, Text, Timestamp, as_dict
from ._group import Written
from .affiliate_portal import AffiliatePortal
from .affiliates import Affiliate, AffiliateCode, Affiliates, Tier
from .audiences import Audiences, AudienceSegment
from .claim_checks import ClaimCheck, ClaimChecks, ClaimRecord, ClaimTotal, ClaimTotals
from .endpoints import Endpoints
from .leaderboards import LeaderboardEntry, Leaderboards, ReferredUsersEntry, ReferredVolume
from .paginator import Page, PageToken, Paginator
from .payouts import (
    Movement,
    Payouts,
    PayoutsByConversion,
    PayoutTotals,
    ReferralEarning,
    TierTerms,
)
from .referral_codes import (
    CodeUse,
    ReferralCode,
    ReferralCodeDetails,
    ReferralCodes,
    ReferralStatus,
)
from .sync_groups import SyncGroup, SyncPaginator
from .users import UserReferrer, Users

__all__ = [
    "Affiliate",
    "AffiliateCode",
    "AffiliatePortal",
    "Affiliates",
    "Answer",
    "ApiGroups",
    "AudienceSegment",
    "Audiences",
    "ClaimCheck",
    "ClaimChecks",
    "ClaimRecord",
    "ClaimTotal",
    "ClaimTotals",
    "CodeUse",
    "LeaderboardEntry",
    "Leaderboards",
    "Movement",
    "Page",
    "PageToken",
    "Paginator",
    "PayoutTotals",
    "Payouts",
    "PayoutsByConversion",
    "ReferralCode",
    "ReferralCodeDetails",
    "ReferralCodes",
    "ReferralEarning",
    "ReferralStatus",
    "ReferredUsersEntry",
    "ReferredVolume",
    "SyncGroup",
    "SyncPaginator",
    "Text",
    "Tier",
    "TierTerms",
    "Timestamp",
    "UserReferrer",
    "Users",
    "Written",
    "as_dict",
]


class ApiGroups(Endpoints):
    """The endpoint groups of :class:`~aiofuul.FuulClient` (a base class of it), made on
    first use."""

    @cached_property
    def users(self) -> Users:
        """``user/referrer``."""
        return Users(self)

    @cached_property
    def referral_codes(self) -> ReferralCodes:
        """``referral_codes``: a user's codes, their status, one code."""
        return ReferralCodes(self)

    @cached_property
    def affiliates(self) -> Affiliates:
        """``affiliates``: an affiliate, and whether a code is free."""
        return Affiliates(self)

    @cached_property
    def leaderboards(self) -> Leaderboards:
        """The leaderboards."""
        return Leaderboards(self)

    @cached_property
    def payouts(self) -> Payouts:
        """A user's payouts, movements, referral earnings and totals."""
        return Payouts(self)

    @cached_property
    def claim_checks(self) -> ClaimChecks:
        """A user's claim checks."""
        return ClaimChecks(self)

    @cached_property
    def audiences(self) -> Audiences:
        """The audience segments of a user."""
        return Audiences(self)

    @cached_property
    def affiliate_portal(self) -> AffiliatePortal:
        """An affiliate's statistics (a service-role key)."""
        return AffiliatePortal(self)
