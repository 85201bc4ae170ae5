"""The sandbox's small Fuul: who referred whom, referral codes, affiliates, audiences,
and the payouts its pipeline makes of the stored events, with the claim checks they
give. Every read endpoint of :mod:`~aiofuul.sandbox.api_reads` answers from this one
state, so answers agree with each other (a movement is a payout is a leaderboard's
amount is a claim check).

A stored event pays when one of the sandbox's conversions has a trigger of its name:
its user gets a payout of ``args["amount"]`` (1 when absent), in points, or on chain
when ``args["currency_address"]`` is set (with ``args["chain_id"]``); its
``args["volume_usd"]`` counts as volume. If the user has a referrer, the referrer gets
:attr:`FuulState.referrer_rate` of it too. Referrers are set by tests
(:meth:`FuulState.set_referrer`) or by the writes of the API
(:mod:`~aiofuul.sandbox.api_writes`), through the same methods.

This state is the only maker of payouts: the read endpoints, ``GET events/pipeline``
and the webhooks (an ``on_payout`` callback) all show the payouts made here. An event
is processed ``pipeline_delay`` seconds after it was stored and pays only if the
pipeline's status is then ``"success"`` (the sandbox's two knobs, asked for through the
``pipeline`` callable). Payouts are made lazily, when something asks
(:meth:`FuulState.catch_up`: a read, or the webhook sender soon after a send), so a load
test that reads nothing pays nothing; they are made in the order the events were stored,
and ``on_payout`` callbacks see each one as it is made.

Example::

    sb.state.set_referrer(alice, referrer=bob, code="BOB1")
    sb.state.add_affiliate(bob, name="Bob")
    sb.state.store_events(events)      # or send them through the API
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from ..wire.models import Event, User
from .store import EventStore

__all__ = ["Affiliate", "ClaimCheck", "Code", "FuulState", "Payout", "Referral", "conversion_of"]

_IDS = uuid.UUID("0b5e9c1e-64a8-4f61-9a63-9a2f0f1d8e21")
Key = tuple[str, str]


def key(user: User) -> Key:
    """A user as a dict key: ``(identifier, identifier_type)``."""
    return (user.identifier, user.identifier_type)


def _number(value: object, default: Decimal) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return default
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return default
    return number if number.is_finite() else default


def _payee(event: Event) -> User | None:
    """Whom an event pays: its user, or the EVM address of the deprecated
    ``user_address`` (a tracking id alone names nobody who can be paid)."""
    if event.user is not None:
        return event.user
    if event.user_address is not None:
        return User(event.user_address, "evm_address")
    return None


def conversion_of(conversions: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any]:
    """The first conversion with a trigger named ``name``, or an empty mapping."""
    for conversion in conversions:
        triggers = conversion.get("triggers")
        if isinstance(triggers, list) and any(
            isinstance(t, Mapping) and t.get("name") == name for t in triggers
        ):
            return conversion
    return {}


@dataclass
class Referral:
    """``user`` was referred by ``referrer`` (with ``code``, at ``at``: epoch seconds)."""

    user: User
    referrer: User
    code: str | None
    at: float


@dataclass
class Code:
    """A referral code of ``owner`` and the users who used it."""

    code: str
    owner: User
    created_at: float
    max_uses: int | None = None
    used_by: list[tuple[User, float]] = field(default_factory=list)
    clicks: int = 0


@dataclass
class Affiliate:
    """A user who is an affiliate of the project."""

    user: User
    id: str
    name: str
    region: str
    updated_at: float
    tier: dict[str, Any] | None = None


@dataclass
class Payout:
    """One payout the pipeline made of a stored event, to its user or its referrer."""

    id: str
    user: User
    end_user: User
    referrer: User | None
    is_referrer: bool
    type: str
    amount: Decimal
    volume_usd: Decimal
    currency_address: str | None
    chain_id: int | None
    conversion_id: str | None
    conversion_name: str | None
    dedup_id: str
    at: float
    status: str = "accepted"

    @property
    def reason(self) -> str:
        """``affiliate_payout`` or ``end_user_payout``."""
        return "affiliate_payout" if self.is_referrer else "end_user_payout"


@dataclass
class ClaimCheck:
    """What an on-chain payout lets its user claim."""

    payout: Payout
    status: str = "unclaimed"
    claimed_at: float | None = None
    hash: str | None = None


class FuulState:
    """The sandbox's state beyond events (see the module docstring)."""

    def __init__(
        self,
        store: EventStore,
        conversions: Callable[[], Sequence[Mapping[str, Any]]],
        pipeline: Callable[[], tuple[str, float]] = lambda: ("success", 0.0),
    ):
        self._store = store
        self._conversions = conversions
        # The sandbox's pipeline_status and pipeline_delay, as they are now (it owns them).
        self._pipeline = pipeline
        #: The share of a referred user's payout its referrer gets.
        self.referrer_rate = Decimal("0.1")
        #: Called with each payout as it is made.
        self.on_payout: list[Callable[[Payout], None]] = []
        #: The project's tiers, as ``payouts/terms-by-tier`` answers them.
        self.tiers: list[dict[str, Any]] = [
            {"tier_id": str(uuid.uuid5(_IDS, t)), "tier_name": t.title(), "tier_slug": t,
             "tier_rank": rank, "tier_description": f"The {t} tier", "payout_terms": []}
            for rank, t in enumerate(("bronze", "silver", "gold"), 1)
        ]  # fmt: skip
        self.clear()

    def clear(self) -> None:
        """Forget everything (the stored events are the store's, cleared by its owner)."""
        self.referrals: dict[Key, Referral] = {}
        self.codes: dict[str, Code] = {}
        self.affiliates: dict[Key, Affiliate] = {}
        self.audiences: dict[Key, list[dict[str, Any]]] = {}
        self.segments: dict[str, dict[str, Any]] = {}
        self.payouts: list[Payout] = []
        self.claim_checks: dict[str, ClaimCheck] = {}
        self._by_user: dict[Key, list[Payout]] = {}
        self._by_event: dict[str, list[Payout]] = {}
        self._referred: dict[Key, list[User]] = {}
        self._seen = 0

    # -- set up by tests (and by the API's writes) ---------------------------------------
    def set_referrer(
        self, user: User, referrer: User, code: str | None = None, at: float | None = None
    ) -> bool:
        """Record (or overwrite) who referred ``user``; a ``code`` of the referrer's is
        counted as used (and the use of the code it replaces undone). False when it was
        already so (nothing changed)."""
        old = self.referrals.get(key(user))
        if old is not None:
            if old.referrer == referrer and old.code == code:
                return False
            self.remove_referrer(user)
        when = time.time() if at is None else at
        self.referrals[key(user)] = Referral(user, referrer, code, when)
        self._referred.setdefault(key(referrer), []).append(user)
        if code is not None:
            found = self.codes.get(code) or self.add_code(referrer, code)
            found.used_by.append((user, when))
        return True

    def remove_referrer(self, user: User) -> bool:
        """``user`` has no referrer any more (the use of its code undone); False when it
        had none."""
        old = self.referrals.pop(key(user), None)
        if old is None:
            return False
        self._referred[key(old.referrer)].remove(user)
        if old.code is not None and old.code in self.codes:
            used = self.codes[old.code].used_by
            used[:] = [(u, at) for u, at in used if u != user]
        return True

    def redemptions(self, user: User) -> list[Code]:
        """The codes ``user`` used."""
        return [c for c in self.codes.values() if any(u == user for u, _ in c.used_by)]

    def use_code(self, code: Code, user: User) -> None:
        """``user`` uses ``code``: it counts, and its owner is ``user``'s referrer."""
        self.set_referrer(user, code.owner, code.code)

    def set_max_uses(self, code: Code, max_uses: int | None) -> None:
        """How many times ``code`` may be used (None: without limit; 0: disabled)."""
        code.max_uses = max_uses

    def join_segment(self, segment_id: str, user: User) -> bool:
        """Put ``user`` in the audience segment ``segment_id`` (made on first use);
        False when it was there."""
        segment = self.segments.get(segment_id) or self._segment(segment_id, segment_id)
        mine = self.audiences.setdefault(key(user), [])
        if any(s["id"] == segment_id for s in mine):
            return False
        mine.append(segment)
        return True

    def leave_segment(self, segment_id: str, user: User) -> bool:
        """Take ``user`` out of the segment; False when it was not in it."""
        mine = self.audiences.get(key(user), [])
        before = len(mine)
        mine[:] = [s for s in mine if s["id"] != segment_id]
        return len(mine) != before

    def referred_by(self, referrer: User) -> list[User]:
        """The users ``referrer`` referred, in the order they were."""
        return list(self._referred.get(key(referrer), ()))

    def add_code(self, owner: User, code: str | None = None, max_uses: int | None = None) -> Code:
        """A new referral code of ``owner`` (a random one when ``code`` is None)."""
        code = code or uuid.uuid4().hex[:8].upper()
        made = self.codes[code] = Code(code, owner, time.time(), max_uses)
        return made

    def add_affiliate(
        self, user: User, name: str = "", region: str = "US", tier: str | None = None
    ) -> Affiliate:
        """Make ``user`` an affiliate (``tier``: a tier slug of :attr:`tiers`)."""
        found = next((t for t in self.tiers if t["tier_slug"] == tier), None)
        current = None
        if found is not None:
            current = {"id": found["tier_id"], "name": found["tier_name"],
                       "slug": found["tier_slug"], "rank": found["tier_rank"]}  # fmt: skip
        ident = str(uuid.uuid5(_IDS, "/".join(key(user))))
        made = Affiliate(user, ident, name or user.identifier, region, time.time(), current)
        self.affiliates[key(user)] = made
        return made

    def add_audience(self, user: User, name: str, badge_name: str | None = None) -> None:
        """Put ``user`` in the audience segment ``name``."""
        ident = str(uuid.uuid5(_IDS, name))
        segment = self.segments.get(ident) or self._segment(ident, name, badge_name)
        self.audiences.setdefault(key(user), []).append(segment)

    def _segment(self, ident: str, name: str, badge_name: str | None = None) -> dict[str, Any]:
        made = self.segments[ident] = {
            "id": ident, "name": name, "badge_name": badge_name or name,
            "badge_description": f"Member of {name}", "badge_image": None, "active": True,
        }  # fmt: skip
        return made

    def store_events(self, events: Iterable[Event]) -> int:
        """Store events as if they had been sent (a test's shortcut past the rate
        limits); returns how many were new."""
        return self._store.add_all(events)

    def claim(self, user: User) -> int:
        """Claim every unclaimed check of ``user`` in one transaction; returns how many."""
        self.catch_up()
        tx = "0x" + uuid.uuid4().hex * 2
        checks = [c for c in self.checks_of(user) if c.status == "unclaimed"]
        for check in checks:
            check.status, check.claimed_at, check.hash = "claimed", time.time(), tx
        return len(checks)

    # -- what the pipeline made of the events --------------------------------------------
    def catch_up(self) -> None:
        """Make the payouts of the stored events processed since the last call: those
        stored at least ``pipeline_delay`` seconds ago (the others wait their turn)."""
        events = self._store.events
        if self._seen >= len(events):
            return
        status, delay = self._pipeline()
        conversions = self._conversions()
        now = time.monotonic()
        while self._seen < len(events):
            at, wall = self._store.stored_at(self._seen)
            if now - at < delay:
                break  # the events stored after this one are not due either
            event = events[self._seen]
            self._seen += 1
            user = _payee(event)
            if status != "success" or user is None:
                continue  # the pipeline failed, or the event names nobody to pay
            conversion = conversion_of(conversions, event.name)
            if conversion:
                self._pay(event, user, conversion, wall + delay)

    def due_in(self) -> float | None:
        """Seconds until the next stored event is processed (0: now), or None when every
        stored event is processed. A :meth:`catch_up` then makes its payouts."""
        events = self._store.events
        if self._seen >= len(events):
            return None
        at, _ = self._store.stored_at(self._seen)
        return max(0.0, at + self._pipeline()[1] - time.monotonic())

    def unprocessed(self) -> int:
        """How many stored events are not processed yet (their payouts not yet made)."""
        return len(self._store.events) - self._seen

    def _pay(self, event: Event, user: User, conversion: Mapping[str, Any], at: float) -> None:
        args = event.args or {}
        amount = _number(args.get("amount"), Decimal(1))
        currency = args.get("currency_address")
        chain = args.get("chain_id")
        referral = self.referrals.get(key(user))
        referrer = None if referral is None else referral.referrer
        mine = Payout(
            id=str(uuid.uuid5(_IDS, event.dedup_id)), user=user, end_user=user,
            referrer=referrer, is_referrer=False,
            type="onchain-currency" if isinstance(currency, str) else "point",
            amount=amount, volume_usd=_number(args.get("volume_usd"), Decimal(0)),
            currency_address=currency if isinstance(currency, str) else None,
            chain_id=chain if type(chain) is int else None,
            conversion_id=conversion.get("id"), conversion_name=conversion.get("name"),
            dedup_id=event.dedup_id, at=at,
        )  # fmt: skip
        self._add(mine)
        if referrer is not None:
            ident = str(uuid.uuid5(_IDS, event.dedup_id + "/referrer"))
            share = amount * self.referrer_rate
            self._add(replace(mine, id=ident, user=referrer, is_referrer=True, amount=share))

    def _add(self, payout: Payout) -> None:
        self.payouts.append(payout)
        self._by_user.setdefault(key(payout.user), []).append(payout)
        self._by_event.setdefault(payout.dedup_id, []).append(payout)
        if payout.type == "onchain-currency":
            self.claim_checks[payout.id] = ClaimCheck(payout)
        for listener in self.on_payout:
            listener(payout)

    def payouts_of(self, user: User) -> list[Payout]:
        """``user``'s payouts (as end user and as referrer), oldest first."""
        self.catch_up()
        return self._by_user.get(key(user), [])

    def payouts_of_event(self, dedup_id: str) -> list[Payout]:
        """The payouts made of the stored event ``dedup_id``: its user's, then its
        referrer's (none when it is not processed yet, or paid nothing)."""
        self.catch_up()
        return self._by_event.get(dedup_id, [])

    def checks_of(self, user: User) -> list[ClaimCheck]:
        """``user``'s claim checks, oldest first."""
        return [self.claim_checks[p.id] for p in self.payouts_of(user) if p.id in self.claim_checks]
