"""The engine's seams: what it tells the world outside it, and what it asks of an outbox.

- :class:`Stats`, the counters ``fuul.stats()`` returns;
- ``on_error`` (:data:`OnError`) and :class:`Observer` (``fuul.add_observer``), told of
  settled events;
- :class:`Journal`, what a durable outbox (SQLite, Redis) is told of every accepted and
  settled event, and how it hands events back (:data:`Feed`).

The :class:`~aiofuul.engine.ledger.Ledger` is the one place that tells them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import msgspec

from ..errors import UndeliveredError
from ..wire.models import Event

__all__ = ["Feed", "Journal", "Observer", "OnError", "Settlement", "Stats"]

#: ``on_error(events, error)``: called on the loop with events that were not delivered.
OnError = Callable[[list[Event], UndeliveredError], object]
#: The counter an event ends in.
Settlement = Literal["delivered", "duplicates", "rejected", "failed", "dropped", "handed_off"]


class Stats(msgspec.Struct, frozen=True):
    """A snapshot of the client's counters; ``fuul.stats()`` costs next to nothing.

    At any moment ``tracked == delivered + duplicates + rejected + failed + dropped +
    handed_off + queued``, where ``queued`` counts every accepted event not yet settled
    (waiting, awaiting a retry, or ``in_flight``).
    """

    tracked: int
    delivered: int
    duplicates: int
    rejected: int
    failed: int
    dropped: int
    queued: int
    in_flight: int
    requests_single: int
    requests_batch: int
    rate_limited_single: int
    rate_limited_batch: int
    retries: int
    batches: int
    mean_batch_size: float
    oldest_queued_age: float = 0.0
    """Seconds the oldest event waiting to be sent has waited (0.0 when none waits)."""
    arrival_rate: float = 0.0
    """Events accepted per second over the last period of the single lane's limit (a
    minute with the documented limits); compare with the key's ceiling of 1,100 a
    minute (18.3/s). Above it for a period, one warning is logged with the numbers."""
    shared_limiter_down: bool = False
    """True while the shared (Redis) limiter is unreachable and the local one, lowered,
    stands in."""
    handed_off: int = 0
    """Events left at close in a shared (Redis) outbox for another client to deliver,
    instead of lost (see :mod:`aiofuul.storage.redis_outbox`)."""
    outbox_down: bool = False
    """True while the outbox cannot be written (Redis unreachable): accepted events
    wait in memory and are written when it is back."""


class Observer(Protocol):
    """Told of every settlement of a client's tracked events, on the client's loop
    (:meth:`FuulClient.add_observer <aiofuul.FuulClient.add_observer>`): ``outcome`` is
    the counter the events ended in (``"delivered"``, ``"duplicates"``, ``"rejected"``,
    ``"failed"``, ``"dropped"``, ``"handed_off"``), and ``waited`` holds, per event, the
    seconds since ``track()`` accepted it. Keep it quick: it runs inside the sender's
    bookkeeping; what it raises is logged and ignored.

    Example::

        def observe(outcome, waited):
            if outcome == "delivered":
                latencies.extend(waited)

        remove = fuul.add_observer(observe)
    """

    def __call__(self, outcome: Settlement, waited: Sequence[float], /) -> None: ...


#: ``feed(events)``: a journal hands the sender events it took over from a client that
#: is gone; ``room()``: how many the sender can take now.
Feed = Callable[[list[Event]], None]


class Journal(Protocol):
    """Told of every accepted and every settled event (the durable outbox: a SQLite
    file, :class:`~aiofuul.storage.outbox.Outbox`, or a Redis stream shared by a fleet,
    :class:`~aiofuul.storage.redis_outbox.RedisOutbox`)."""

    #: True while events cannot be written (see ``Stats.outbox_down``).
    down: bool

    def added(self, event: Event) -> None: ...

    def settled(
        self, events: Sequence[Event], outcome: Settlement, error: UndeliveredError | None
    ) -> None: ...

    async def recover(self) -> list[Event]: ...

    def attach(self, feed: Feed, room: Callable[[], int]) -> None:
        """After :meth:`recover`: where to send events taken over later (a shared
        journal adopts those of clients that died)."""

    def hands_off(self, event: Event) -> bool:
        """Whether ``event``, not delivered at shutdown, is left where another client
        will deliver it (a shared journal that holds it), instead of lost."""

    async def commit(self) -> None: ...

    async def close(self) -> None: ...
