"""From ``track()``'s arguments to a checked :class:`~aiofuul.Event`, on the hot path.

The common case (a short ASCII name, a user seen before, small args) is decided
inline; the ``check_*`` functions of :mod:`aiofuul.wire.validation` own the rules and the
messages, and run whenever the inline test is not conclusive. Events with tracking
fields (``metadata``, signatures, ...) or without a user take the full
:func:`~aiofuul.wire.validation.validate_event` path.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from ..errors import ValidationError
from ..wire.models import Conversion, Event, User
from ..wire.validation import (
    check_args,
    check_dedup_id,
    check_name,
    check_timestamp,
    check_user,
    validate_batch,
    validate_event,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack  # noqa: F401  (used in annotations)

__all__ = ["EventFactory", "EventFields"]

log = logging.getLogger("aiofuul")

# Users already validated, so the identifier regex runs once per user, not per event.
_KNOWN_USERS = 4096


class EventFields(TypedDict, total=False):
    """The optional fields of a tracking event (``pageview``, ``connect_wallet``) and the
    event's own project: keyword arguments of ``track()``, ``send_event()`` and their
    siblings, left out of the body when not given."""

    metadata: Mapping[str, Any] | None
    user_address: str | None
    signature: str | None
    signature_message: str | None
    signature_public_key: str | None
    account_chain_id: int | None
    project_id: str | None


class EventFactory:
    """Builds the events of one client: its dedup ids, its cache of checked users, its
    validation settings, and (``check_event_names``) the project's trigger names."""

    def __init__(self, check_format: bool, strict: bool):
        self.check_format = check_format
        self.strict = strict
        #: The project's trigger names, once fetched (``check_event_names``).
        self.trigger_names: frozenset[str] | None = None
        self._warned_names: set[str] = set()
        self._ids = itertools.count()
        self._id_prefix = secrets.token_hex(8) + "-"
        # Least recently used first: an app with more active users than fit keeps its
        # frequent ones, and pays one eviction per miss instead of a cleared cache.
        self._known_users: OrderedDict[User, User] = OrderedDict()
        # Names already checked: an app tracks a few names, again and again.
        self._known_names: set[str] = set()

    def new_id(self) -> str:
        """A dedup id unique to this client and event."""
        return f"{self._id_prefix}{next(self._ids)}"

    def make(
        self,
        name: str,
        user: User | None,
        dedup_id: str | None,
        args: Mapping[str, Any] | None,
        timestamp: int | str | None,
        fields: EventFields,
        *,
        stamp: bool = True,
    ) -> Event:
        """The event to queue or send; ``stamp``: give it the current time when it has
        none (``track()``, whose events may wait; a direct send leaves it to the server)."""
        if user is None or fields:
            return self._make_full(name, user, dedup_id, args, timestamp, fields, stamp)
        if type(name) is not str or name not in self._known_names:
            name = self._learn_name(name)
        if self.trigger_names is not None and name not in self.trigger_names:
            self.unknown_name(name)
        try:
            known = self._known_users.get(user) if type(user) is User else None
        except TypeError:  # a User holding unhashable garbage
            known = None
        if known is None:
            user = self._learn_user(user)
        else:
            self._known_users.move_to_end(known)
            user = known
        dedup_id = self.new_id() if dedup_id is None else check_dedup_id(dedup_id)
        if args is not None:
            args = check_args(args, strict=self.strict)
        if timestamp is None:
            if stamp:
                timestamp = time.time_ns() // 1_000_000
        else:
            check_timestamp(timestamp)
        return Event(name, user, dedup_id, args, timestamp)

    def _make_full(
        self,
        name: str,
        user: User | None,
        dedup_id: str | None,
        args: Mapping[str, Any] | None,
        timestamp: int | str | None,
        fields: EventFields,
        stamp: bool,
    ) -> Event:
        if dedup_id is None:
            dedup_id = self.new_id()
        if timestamp is None and stamp:
            timestamp = time.time_ns() // 1_000_000
        event = Event(name, user, dedup_id, args, timestamp, **fields)  # type: ignore[arg-type]
        checked = validate_event(event, check_format=self.check_format, strict=self.strict)
        if self.trigger_names is not None and checked.name not in self.trigger_names:
            self.unknown_name(checked.name)
        return checked

    def _learn_name(self, name: object) -> str:
        checked = check_name(name)
        if len(self._known_names) < _KNOWN_USERS and type(name) is str:
            self._known_names.add(checked)
        return checked

    def _learn_user(self, user: User) -> User:
        # The cache maps a user to its checked form (plain strings), which is what is
        # queued: equal users then share one object, and a User holding str subclasses
        # that compares equal to a checked one is sent as that one.
        checked = check_user(user, check_format=self.check_format)
        known = self._known_users
        if checked not in known and len(known) >= _KNOWN_USERS:
            known.popitem(last=False)
        known[checked] = checked
        return checked

    def unknown_name(self, name: str) -> None:
        """``check_event_names``: no trigger has this name. Warn once (refuse if strict)."""
        rule = (
            "no trigger of this project has this name (names are case-sensitive: "
            "'trade' is not 'Trade'; see fuul.conversions())"
        )
        if self.strict:
            raise ValidationError("name", rule, name, tier=2)
        if name not in self._warned_names and len(self._warned_names) < _KNOWN_USERS:
            self._warned_names.add(name)
            log.warning("name %r: %s; sent anyway, the server decides", name, rule)

    def check_batch(self, events: object) -> list[Event]:
        """A batch for ``send_batch``: every event checked, every name too."""
        checked = validate_batch(events, check_format=self.check_format, strict=self.strict)
        if self.trigger_names is not None:
            for event in checked:
                if event.name not in self.trigger_names:
                    self.unknown_name(event.name)
        return checked

    async def load_names(self, conversions: Callable[[], Awaitable[list[Conversion]]]) -> None:
        """``check_event_names``: learn the project's trigger names from ``conversions()``."""
        try:
            found = await conversions()
        except Exception as exc:  # the check is a help; tracking goes on without it
            log.warning("check_event_names: could not fetch the conversions (%s)", exc)
            return
        self.trigger_names = frozenset(t.name for c in found for t in c.triggers)
