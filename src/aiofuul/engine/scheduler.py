"""The sender's decision, as a pure function: given the queue, the two event lanes and
the clock, start which request now, or sleep how long.

Light traffic goes out at once, one event per ``POST /v1/events``. When more is waiting
than the single lane's free slots can carry, events are coalesced into
``POST /v1/events/batch`` requests of up to ``max_batch``; a batch slot (10 a minute) is
spent on a partial batch only once its oldest event has waited ``linger`` for company,
or when ``flush()``/``aclose()`` asks for everything now (``hurry``).

With a shared (Redis) limiter, requests wait for their shared slot before taking their
events: the events stay queued, *promised* to them. When nothing unpromised is left and
time is up, singles may take events a waiting batch was promised (it then leaves
smaller), never the reverse: at the end of a backlog that sends everything soonest.

Nothing here touches a lane, a queue or a clock: :func:`decide` reads two small
snapshots, so a test can drive it with made-up numbers.
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

__all__ = ["EventLane", "LaneState", "Launch", "QueueState", "decide", "events_to_wake"]


# Structs, not dataclasses: the sender builds a few per pass, and events_to_wake copies
# them (msgspec.structs.replace is some ten times cheaper than dataclasses.replace).
class LaneState(msgspec.Struct, frozen=True):
    """One lane as the scheduler sees it."""

    usable: bool
    """Not stopped by a 401/403/404."""
    free: int
    """Requests that could start now."""
    next_free: float
    """When a slot frees (``math.inf``: every slot is held in flight)."""
    may_wait: bool = True
    """Room for one more request waiting for its shared slot."""


class QueueState(msgspec.Struct, frozen=True):
    """The queue and the sender as the scheduler sees them."""

    queued: int
    """Events waiting, promised ones included."""
    promised_single: int = 0
    promised_batch: int = 0
    solo: int = 0
    """Events of a refused batch, to be sent one by one to find the bad ones."""
    oldest: float = 0.0
    """When the oldest unpromised event was queued."""
    in_flight: int = 0
    """Requests under way (waiting for a shared slot included)."""
    max_in_flight: int = 8
    max_batch: int = 100
    linger: float = 6.0
    hurry: bool = False
    """A flush or close asks for everything now."""


#: The two lanes the sender sends events on (the scheduler names them; it holds no lane).
EventLane = Literal["single", "batch"]


class Launch(msgspec.Struct, frozen=True):
    """Start one request on ``lane`` for ``count`` events; ``solo``: the next event of
    the solo queue."""

    lane: EventLane
    count: int
    solo: bool = False


def decide(queue: QueueState, single: LaneState, batch: LaneState, now: float) -> Launch | float:
    """The next request to start now, or the seconds until one may (``math.inf``: until
    something happens: an event, an answer, a flush)."""
    unpromised = queue.queued - queue.promised_single
    for_batch = unpromised - queue.promised_batch
    if not (unpromised > 0 or queue.solo) or queue.in_flight >= queue.max_in_flight:
        return math.inf
    if queue.solo:
        name: EventLane = "single" if single.usable else "batch"
        lane = single if single.usable else batch
        return Launch(name, 1, solo=True) if lane.free else max(0.0, lane.next_free - now)
    hurry = queue.hurry or now - queue.oldest >= queue.linger
    # A lane with no room for another request waiting for its shared slot cannot carry.
    single_can = single.usable and single.may_wait
    batch_can = batch.usable and batch.may_wait
    wants_batch = for_batch >= queue.max_batch or (
        for_batch > 0 and hurry and (not single_can or for_batch > single.free)
    )
    if batch_can and wants_batch and batch.free:
        return Launch("batch", min(for_batch, queue.max_batch))
    if single_can and (for_batch > 0 or hurry) and single.free:
        return Launch("single", 1)
    wake = math.inf
    if single_can:
        # With every event promised to a waiting batch, singles may take them at linger.
        at = single.next_free
        wake = at if for_batch > 0 or hurry else max(at, queue.oldest + queue.linger)
    if batch_can and for_batch > 0:
        at = batch.next_free
        if for_batch < queue.max_batch and not queue.hurry:
            at = max(at, queue.oldest + queue.linger)
        wake = min(wake, at)
    return max(0.0, wake - now)


def events_to_wake(
    queue: QueueState, single: LaneState, batch: LaneState, now: float
) -> tuple[int, float]:
    """After :func:`decide` chose to wait: ``(more, wait)``. ``more``: how many more
    events would let a request start now (one, the first after idle; or enough to fill
    a batch), or 0 when no number would (every slot taken, the in-flight budget spent, a
    lane paused); below it a new event changes nothing, so ``track()`` need not wake the
    sender. ``wait``: the seconds until a queue grown by fewer events could start one
    (a single slot freeing while the queue is empty, say): the sender must wake then
    even if no event wakes it, since :func:`decide` saw nothing to wait for."""
    unpromised = queue.queued - queue.promised_single - queue.promised_batch
    oldest = queue.oldest if unpromised > 0 else now  # the new event would be the oldest
    wait = math.inf
    for more in (1, queue.max_batch - unpromised):
        if more >= 1:
            grown = msgspec.structs.replace(queue, queued=queue.queued + more, oldest=oldest)
            step = decide(grown, single, batch, now)
            if isinstance(step, Launch):
                return more, wait
            wait = min(wait, step)
    return 0, wait
