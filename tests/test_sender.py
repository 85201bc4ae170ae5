"""The background sender on a fake clock and a fake server: which requests it starts,
with which events, in which order, and what each answer does to the queue.

Every test builds a real :class:`~aiofuul.engine.sender.Sender` with its two lanes on a
:class:`FakeClock` and a :class:`~aiofuul.testing.MockTransport` whose handler parks each
request until the test answers it (:class:`Server`). The worker runs, but the fake clock
only moves when a test moves it; a test then calls ``sender._dispatch(now)`` itself
(the worker's own timers count real seconds and never fire during a test). Nothing
waits on the wall clock: ``turn()`` only lets the event loop run what is ready.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import pytest_asyncio

from aiofuul import (
    BadRequestError,
    ClientConfig,
    Limits,
    QueueFullError,
    RateLimit,
    RetryPolicy,
    User,
)
from aiofuul.engine.lanes import Lane, make_lanes
from aiofuul.engine.limits import SlidingWindowLimiter
from aiofuul.engine.redis_limiter import RedisLimiter
from aiofuul.engine.seams import Stats
from aiofuul.engine.sender import Sender
from aiofuul.errors import (
    AuthenticationError,
    PermissionDeniedError,
    ServerError,
    UndeliveredError,
)
from aiofuul.testing import MockRequest, MockTransport, respond
from aiofuul.wire.models import Event
from aiofuul.wire.transport import Response
from conftest import FakeClock

INF = math.inf
LINGER = 6.0
USER = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")
CREATED = respond(201)
SINGLE_LIMIT = RateLimit(100, 60.0)  # the documented limits
BATCH_LIMIT = RateLimit(10, 60.0)


# -- the rig ----------------------------------------------------------------------------------


@dataclass
class Call:
    """One request the server received, answered when the test says."""

    request: MockRequest
    answer: asyncio.Future[Response]

    @property
    def path(self) -> str:
        return self.request.path

    @property
    def ids(self) -> list[str]:
        """The dedup ids it carries, in order."""
        body = self.request.json()
        return [e["dedup_id"] for e in body] if isinstance(body, list) else [body["dedup_id"]]

    def reply(self, response: Response = CREATED) -> None:
        self.answer.set_result(response)


class Server:
    """A MockTransport whose handler parks every request on a future."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.transport = MockTransport(self._handle)

    async def _handle(self, request: MockRequest) -> Response:
        call = Call(request, asyncio.get_running_loop().create_future())
        self.calls.append(call)
        return await call.answer

    @property
    def open(self) -> list[Call]:
        """Requests not answered yet, in the order they arrived."""
        return [c for c in self.calls if not c.answer.done()]

    def sent(self, start: int = 0) -> list[tuple[str, list[str]]]:
        """(path, dedup ids) of every request from the ``start``-th on."""
        return [(c.path, c.ids) for c in self.calls[start:]]


class FakeRemote:
    """A shared (Redis) limiter whose slots the test hands out: ``acquire`` waits until
    :meth:`grant`. Implements what a :class:`Lane` calls: ``watch``, ``acquire``,
    ``release`` and ``down``."""

    down = False

    def __init__(self) -> None:
        self.watched: list[SlidingWindowLimiter] = []
        self.waiting: list[tuple[str, asyncio.Future[str]]] = []
        self.released: list[str] = []
        self._tokens = 0

    def watch(self, limiter: SlidingWindowLimiter) -> None:
        self.watched.append(limiter)

    async def acquire(self, windows: list[tuple[str, RateLimit]]) -> str:
        slot: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.waiting.append((windows[0][0], slot))
        return await slot

    async def release(self, windows: list[tuple[str, RateLimit]], token: str | None) -> None:
        assert token is not None
        self.released.append(token)

    @property
    def queue(self) -> list[str]:
        """The lanes of the requests waiting for a slot, in order."""
        return [lane for lane, slot in self.waiting if not slot.done()]

    def grant(self, lane: str) -> str:
        """Give the first request of ``lane`` waiting its slot; returns the token."""
        for name, slot in self.waiting:
            if name == lane and not slot.done():
                self._tokens += 1
                token = f"{lane}-{self._tokens}"
                slot.set_result(token)
                return token
        raise AssertionError(f"no {lane} request waits for a slot")


@dataclass
class Rig:
    clock: FakeClock
    server: Server
    sender: Sender
    single: Lane
    batch: Lane
    errors: list[tuple[list[str], UndeliveredError]] = field(default_factory=list)
    closed: bool = False

    def track(self, *ids: str) -> None:
        for dedup_id in ids:
            self.sender.enqueue(Event("trade", USER, dedup_id, {"size": 1}))

    async def close(self, timeout: float) -> None:
        self.closed = True
        await self.sender.close(timeout)

    def dispatch(self) -> float:
        """Start what may start at the fake clock's now; the delay until more may."""
        return self.sender._dispatch(self.clock.now)

    def advance_to(self, now: float) -> None:
        self.clock.now = now

    def reasons(self) -> list[tuple[list[str], str]]:
        return [(ids, error.reason) for ids, error in self.errors]

    def stats(self) -> Stats:
        """The sender's stats, after checking that they add up."""
        s = self.sender.stats()
        settled = s.delivered + s.duplicates + s.rejected + s.failed + s.dropped
        assert s.tracked == settled + s.queued
        # Not settled means waiting (queue, solo queue) or carried by a request.
        assert s.queued == self.sender.backlog + s.in_flight
        return s


def ids(*numbers: int, prefix: str = "e") -> list[str]:
    return [f"{prefix}{n}" for n in numbers]


async def turn(times: int = 10) -> None:
    """Let the event loop run what is ready (no time passes)."""
    for _ in range(times):
        await asyncio.sleep(0)


MakeRig = Callable[..., Rig]


@pytest_asyncio.fixture
async def make_rig() -> AsyncIterator[MakeRig]:
    """``make_rig(single=RateLimit(...), remote=..., **config_changes)``: a started sender
    on a fake clock; closed (without waiting) after the test."""
    rigs: list[Rig] = []

    def make(
        *,
        single: RateLimit = SINGLE_LIMIT,
        batch: RateLimit = BATCH_LIMIT,
        remote: FakeRemote | None = None,
        **changes: Any,
    ) -> Rig:
        changes.setdefault("linger", LINGER)
        changes.setdefault(
            "retry", RetryPolicy(max_attempts=3, initial_backoff=0.0, max_backoff=0.0)
        )
        config = ClientConfig(limits=Limits(single=single, batch=batch), **changes)
        clock, server = FakeClock(), Server()
        # As FuulClient builds them, without the slow start (lanes.py: its own tests).
        lanes = make_lanes(
            config.limits, config.retry, None, cast("Any", remote), clock, slow_start=False
        )
        single_lane, batch_lane = lanes["single"], lanes["batch"]
        rig = Rig(clock, server, cast("Sender", None), single_lane, batch_lane)
        rig.sender = Sender(
            config,
            server.transport,
            single_lane,
            batch_lane,
            on_error=lambda events, error: rig.errors.append(([e.dedup_id for e in events], error)),
            clock=clock,
        )
        rig.sender.start(asyncio.get_running_loop())
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        if not rig.closed:
            await rig.close(0)
        await turn()


# -- light traffic, and the switch to batch ------------------------------------------------------
async def test_light_traffic_goes_single_one_by_one(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.track("e0")
    await turn()
    assert rig.server.sent() == [("events", ["e0"])]
    rig.track("e1", "e2")
    await turn()
    assert rig.server.sent() == [("events", ["e0"]), ("events", ["e1"]), ("events", ["e2"])]
    assert rig.dispatch() == INF
    assert rig.stats().in_flight == 3
    for call in rig.server.open:
        call.reply()
    await turn()
    s = rig.stats()
    assert (s.delivered, s.queued, s.requests_single, s.requests_batch) == (3, 0, 3, 0)


async def test_backlog_beyond_single_slots_goes_batch_after_linger(make_rig: MakeRig) -> None:
    rig = make_rig(single=RateLimit(2, 60.0))
    rig.track(*ids(0, 1, 2, 3, 4))
    await turn()
    # Two single slots: two singles; the other three wait for linger, for a batch.
    assert rig.server.sent() == [("events", ["e0"]), ("events", ["e1"])]
    assert rig.dispatch() == LINGER
    rig.advance_to(5.5)
    assert rig.dispatch() == 0.5
    await turn()
    assert len(rig.server.calls) == 2
    rig.advance_to(LINGER)
    # Everything is on its way; an event tracked now would wait for linger, and (one
    # event changing nothing) would not wake the sender: its timer covers that.
    assert rig.dispatch() == LINGER
    await turn()
    assert rig.server.sent(2) == [("events/batch", ids(2, 3, 4))]
    assert rig.stats().in_flight == 5
    rig.server.open[-1].reply(respond(200, json={"ingested_events": 3}))
    await turn()
    s = rig.stats()
    assert (s.delivered, s.batches, s.mean_batch_size, s.in_flight) == (3, 1, 3.0, 2)


async def test_a_full_batch_goes_at_once(make_rig: MakeRig) -> None:
    rig = make_rig(single=RateLimit(2, 60.0), max_batch=4)
    rig.track(*ids(*range(10)))
    await turn()
    # No linger for full batches; the two left over fit the single slots.
    assert rig.server.sent() == [
        ("events/batch", ids(0, 1, 2, 3)),
        ("events/batch", ids(4, 5, 6, 7)),
        ("events", ["e8"]),
        ("events", ["e9"]),
    ]
    assert rig.dispatch() == LINGER  # the linger of an event that may come meanwhile
    assert rig.stats().in_flight == 10


async def test_max_in_flight_caps_concurrent_requests(make_rig: MakeRig) -> None:
    rig = make_rig(max_in_flight=2, max_batch=2)
    rig.track(*ids(0, 1, 2, 3, 4, 5, 6))
    await turn()
    # Two full batches fill the budget; the rest waits for an answer, however free the
    # single lane is.
    assert rig.server.sent() == [("events/batch", ids(0, 1)), ("events/batch", ids(2, 3))]
    assert rig.dispatch() == INF
    assert rig.stats().queued == 7
    rig.server.calls[1].reply()
    await turn()
    assert rig.server.sent(2) == [("events/batch", ids(4, 5))]
    assert rig.dispatch() == INF
    rig.server.calls[0].reply()
    await turn()
    assert rig.server.sent(3) == [("events", ["e6"])]
    assert len(rig.server.open) == 2


# -- 429, 5xx, garbage: retries ----------------------------------------------------------------
async def test_429_pauses_the_lane_and_requeues_at_the_front(make_rig: MakeRig) -> None:
    # A one-second window, so that the pause, not the window, is what holds the lane.
    rig = make_rig(single=RateLimit(1, 1.0))
    rig.track("e0")
    await turn()
    rig.track("e1", "e2")  # newer: behind e0, waiting for a single slot or linger
    await turn()
    assert rig.server.sent() == [("events", ["e0"])]
    rig.server.calls[0].reply(respond(429, retry_after=5))
    await turn()
    assert rig.dispatch() == 5.0  # the pause, before linger (6.0)
    rig.advance_to(4.5)
    assert rig.dispatch() == 0.5
    await turn()
    assert len(rig.server.calls) == 1
    rig.advance_to(5.0)
    assert rig.dispatch() == 1.0  # e0 left; e1 and e2 wait for linger
    await turn()
    assert rig.server.sent(1) == [("events", ["e0"])]  # requeued before e1 and e2
    rig.server.calls[1].reply()
    await turn()
    rig.advance_to(6.0)
    rig.dispatch()
    await turn()
    assert rig.server.sent(2) == [("events/batch", ids(1, 2))]
    s = rig.stats()
    # A 429 is not a failed attempt: it is retried, never given up.
    assert (s.rate_limited_single, s.retries, s.delivered, s.failed) == (1, 1, 1, 0)
    assert rig.errors == []


async def test_429_on_a_batch_requeues_its_events_before_newer_ones(make_rig: MakeRig) -> None:
    rig = make_rig(single=RateLimit(1, 60.0), batch=RateLimit(10, 1.0), max_batch=3)
    rig.track("s0")  # holds the only single slot
    await turn()
    rig.track(*ids(0, 1, 2))  # a full batch
    await turn()
    rig.track("e3")  # newer, waiting for linger
    await turn()
    assert rig.server.sent() == [("events", ["s0"]), ("events/batch", ids(0, 1, 2))]
    rig.server.calls[1].reply(respond(429, retry_after=5))
    await turn()
    assert rig.dispatch() == 5.0
    rig.advance_to(5.0)
    rig.dispatch()
    await turn()
    # Requeued at the front: the same three again, e3 still behind them.
    assert rig.server.sent(2) == [("events/batch", ids(0, 1, 2))]
    assert rig.stats().rate_limited_batch == 1


async def test_429_without_retry_after_still_pauses(make_rig: MakeRig) -> None:
    rig = make_rig(single=RateLimit(1, 1.0))
    rig.track("e0")
    await turn()
    rig.server.calls[0].reply(respond(429))
    await turn()
    # No hint: a jittered slot's worth of the period (0.5 to 1.5 s here), and the
    # window of one request (1 s), whichever ends later.
    delay = rig.dispatch()
    assert 1.0 <= delay <= 1.5
    assert len(rig.server.calls) == 1


async def test_5xx_is_retried_then_given_up(make_rig: MakeRig) -> None:
    rig = make_rig()  # max_attempts=3, no backoff
    rig.track("e0")
    await turn()
    for attempt in range(3):
        (call,) = rig.server.open
        assert rig.errors == [], attempt
        call.reply(respond(503))
        await turn()
    assert rig.server.open == []
    assert rig.server.sent() == [("events", ["e0"])] * 3
    assert rig.reasons() == [(["e0"], "retries_exhausted")]
    assert isinstance(rig.errors[0][1].cause, ServerError)
    s = rig.stats()
    assert (s.failed, s.retries, s.requests_single, s.queued) == (1, 2, 3, 0)


async def test_5xx_retry_after_pauses_the_lane(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.track("e0")
    await turn()
    rig.server.calls[0].reply(respond(503, retry_after=3))
    await turn()
    assert rig.dispatch() == 3.0
    assert len(rig.server.calls) == 1
    rig.advance_to(3.0)
    rig.dispatch()
    await turn()
    assert rig.server.sent() == [("events", ["e0"])] * 2


async def test_garbage_2xx_is_retried_with_the_same_dedup_id(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.track("e0")
    await turn()
    rig.server.calls[0].reply(respond(200, body=b"<html>captive portal</html>"))
    await turn()
    rig.server.calls[1].reply()
    await turn()
    assert rig.server.calls[0].request.body == rig.server.calls[1].request.body
    assert rig.server.sent() == [("events", ["e0"])] * 2
    s = rig.stats()
    assert (s.delivered, s.retries, s.failed) == (1, 1, 0)


async def test_batch_answer_out_of_range_is_retried_then_counted(make_rig: MakeRig) -> None:
    rig = make_rig(max_batch=3)
    rig.track(*ids(0, 1, 2))
    await turn()
    rig.server.calls[0].reply(respond(200, json={"ingested_events": 7}))  # of 3?
    await turn()
    rig.server.calls[1].reply(respond(200, json={"ingested_events": 2}))
    await turn()
    assert rig.server.sent() == [("events/batch", ids(0, 1, 2))] * 2
    s = rig.stats()
    # The server knew one of them already: it does not say which, the counts are exact.
    assert (s.delivered, s.duplicates, s.retries, s.batches) == (2, 1, 1, 1)


# -- refusals ---------------------------------------------------------------------------------
async def test_400_naming_an_event_rejects_it_and_resends_the_others(make_rig: MakeRig) -> None:
    rig = make_rig(max_batch=3)
    rig.track(*ids(0, 1, 2))
    await turn()
    message = "[1].user.identifier: must be a valid EVM address"
    rig.server.calls[0].reply(respond(400, json={"message": [message]}))
    await turn()
    assert rig.server.sent(1) == [("events", ["e0"]), ("events", ["e2"])]
    assert rig.reasons() == [(["e1"], "rejected")]
    cause = rig.errors[0][1].cause
    assert isinstance(cause, BadRequestError) and cause.message == [message]
    for call in rig.server.open:
        call.reply()
    await turn()
    s = rig.stats()
    assert (s.rejected, s.delivered, s.queued) == (1, 2, 0)


async def test_400_naming_no_event_sends_each_alone_first(make_rig: MakeRig) -> None:
    rig = make_rig(max_batch=3, max_in_flight=1)
    rig.track(*ids(0, 1, 2))
    await turn()
    rig.track("e3")  # queued behind the batch (max_in_flight)
    rig.server.calls[0].reply(respond(400, json={"message": "invalid body"}))
    await turn()
    for n, answer in enumerate([CREATED, respond(400, json={"message": "bad"}), CREATED]):
        assert rig.server.sent(1 + n) == [("events", [f"e{n}"])]
        assert rig.sender.backlog == 3 - n  # the solo queue and e3
        rig.server.calls[-1].reply(answer)
        await turn()
    # The solo events went one by one before e3, queued earlier.
    assert rig.server.sent(4) == [("events", ["e3"])]
    assert rig.reasons() == [(["e1"], "rejected")]
    s = rig.stats()
    assert (s.rejected, s.delivered, s.in_flight) == (1, 2, 1)


async def test_a_stopped_single_lane_sends_even_one_event_by_batch(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.track("e0")
    await turn()
    rig.server.calls[0].reply(respond(403, json={"message": "Forbidden"}))
    await turn()
    # Paused, not failed: e0 waits for a probe (or the retry deadline).
    assert rig.reasons() == []
    assert isinstance(rig.single.stopped, PermissionDeniedError)
    rig.track("e1")
    await turn()
    assert rig.dispatch() == LINGER  # both wait for company before a batch slot
    rig.advance_to(LINGER)
    rig.dispatch()
    await turn()
    # The paused single lane probes with e0 (its pause is over); e1 goes by batch.
    assert sorted(rig.server.sent(1)) == [("events", ["e0"]), ("events/batch", ["e1"])]
    for call in rig.server.calls[1:]:
        call.reply(respond(401, json={"message": "Unauthorized"}))
    await turn()
    assert isinstance(rig.batch.stopped, AuthenticationError)
    assert rig.stats().failed == 0  # still waiting: the key may come back
    # Probes go on (one per lane at a time) until the retry deadline or the attempts run
    # out; then the waiting events are reported "stopped".
    rig.advance_to(LINGER + RetryPolicy().max_elapsed + 1)
    for _ in range(5):
        rig.dispatch()
        await turn()
        for call in rig.server.open:
            call.reply(respond(401, json={"message": "Unauthorized"}))
        await turn()
    assert sorted(e for events, _ in rig.reasons() for e in events) == ["e0", "e1"]
    assert {r for _, r in rig.reasons()} == {"stopped"}
    assert rig.stats().failed == 2


# -- the queue-full policies ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "dropped", "sent"),
    [
        ("drop_new", ids(3, 4), ids(0, 1, 2)),
        ("drop_old", ids(0, 1), ids(2, 3, 4)),
        ("raise", [], ids(0, 1, 2)),
    ],
)
async def test_queue_full_policies(
    make_rig: MakeRig, policy: str, dropped: list[str], sent: list[str]
) -> None:
    rig = make_rig(max_queue=3, queue_full=policy)
    for dedup_id in ids(0, 1, 2, 3, 4):  # before the worker runs: all five find the queue
        if policy == "raise" and dedup_id in ("e3", "e4"):
            with pytest.raises(QueueFullError):
                rig.track(dedup_id)
        else:
            rig.track(dedup_id)
    s = rig.stats()
    tracked = 3 if policy == "raise" else 5  # a refused event was never accepted
    assert (s.tracked, s.dropped, s.queued) == (tracked, len(dropped), 3)
    await turn()  # on_error runs on the loop, outside track(): once for the turn's drops
    assert rig.reasons() == ([(dropped, "dropped")] if dropped else [])
    assert rig.server.sent() == [("events", [i]) for i in sent]
    # Events in flight leave room in the queue.
    rig.track("f0", "f1", "f2")
    assert rig.stats().dropped == len(dropped)


async def test_queue_full_raise_from_a_thread_drops_new(make_rig: MakeRig) -> None:
    rig = make_rig(max_queue=1, queue_full="raise")
    rig.sender.enqueue_from_thread(Event("trade", USER, "e0"))
    rig.sender.enqueue_from_thread(Event("trade", USER, "e1"))
    await turn()
    assert rig.reasons() == [(["e1"], "dropped")]
    s = rig.stats()
    assert (s.tracked, s.dropped, s.queued) == (2, 1, 1)


# -- flush and close ---------------------------------------------------------------------------
async def test_flush_completes_when_the_events_tracked_before_it_settle(
    make_rig: MakeRig,
) -> None:
    rig = make_rig()
    rig.track("e0", "e1")
    await turn()
    flushed = asyncio.ensure_future(rig.sender.flush(None))
    await turn()
    rig.track("e2")  # after the flush began: not its business
    await turn()
    assert rig.server.sent() == [("events", ["e0"]), ("events", ["e1"]), ("events", ["e2"])]
    rig.server.calls[2].reply()
    await turn()
    assert not flushed.done()
    rig.server.calls[0].reply(respond(409))
    await turn()
    assert not flushed.done()
    rig.server.calls[1].reply(respond(503))  # retried: not settled yet
    await turn()
    assert not flushed.done()
    assert rig.server.sent(3) == [("events", ["e1"])]
    rig.server.calls[3].reply()
    await turn()
    assert flushed.done() and flushed.result() is True
    s = rig.stats()
    assert (s.delivered, s.duplicates, s.queued) == (2, 1, 0)


async def test_flush_does_not_wait_for_later_events(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.track("e0")
    await turn()
    flushed = asyncio.ensure_future(rig.sender.flush(None))
    await turn()
    rig.track("e1")
    await turn()
    rig.server.calls[0].reply()
    await turn()
    assert flushed.done() and flushed.result() is True
    assert [c.ids for c in rig.server.open] == [["e1"]]


async def test_flush_skips_linger(make_rig: MakeRig) -> None:
    rig = make_rig(single=RateLimit(1, 60.0))
    rig.track("e0", "e1", "e2")
    await turn()
    assert rig.server.sent() == [("events", ["e0"])]
    assert rig.dispatch() == LINGER
    flushed = asyncio.ensure_future(rig.sender.flush(None))
    await turn()
    # No time passed: the flush sends the partial batch now.
    assert rig.server.sent(1) == [("events/batch", ids(1, 2))]
    for call in rig.server.open:
        call.reply()
    await turn()
    assert flushed.result() is True
    # The hurry ends with the flush: the next event waits for company again.
    rig.track("e3")
    await turn()
    assert rig.dispatch() == LINGER
    assert len(rig.server.calls) == 2


async def test_flush_deadline_leaves_events_queued(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.track("e0")
    await turn()
    assert await rig.sender.flush(0) is False
    s = rig.stats()
    assert (s.failed, s.queued, s.in_flight) == (0, 1, 1)
    rig.server.calls[0].reply()
    await turn()
    assert await rig.sender.flush(0) is True  # nothing left: no wait at all


async def test_close_sends_what_is_queued_without_linger(make_rig: MakeRig) -> None:
    rig = make_rig(single=RateLimit(1, 60.0))
    rig.track("e0", "e1", "e2")
    await turn()
    closing = asyncio.ensure_future(rig.close(10.0))
    await turn()
    assert rig.server.sent() == [("events", ["e0"]), ("events/batch", ids(1, 2))]
    for call in rig.server.open:
        call.reply()
    await turn()
    assert closing.done()
    await closing
    assert rig.errors == []
    s = rig.stats()
    assert (s.delivered, s.queued) == (3, 0)


async def test_close_deadline_reports_in_flight_events_as_shutdown(make_rig: MakeRig) -> None:
    rig = make_rig(max_in_flight=2)
    rig.track("e0", "e1", "e2")
    await turn()
    assert [c.ids for c in rig.server.open] == [["e0"], ["e1"]]
    await rig.close(0)
    reported = sorted(i for event_ids, _ in rig.errors for i in event_ids)
    assert reported == ids(0, 1, 2)
    assert {error.reason for _, error in rig.errors} == {"shutdown"}
    s = rig.stats()
    assert (s.failed, s.queued, s.in_flight) == (3, 0, 0)
    # The requests were cancelled; their slots were given back.
    assert rig.single.limiter.in_flight == 0
    assert len(rig.server.calls) == 2


# -- shared-slot claims (a Redis limiter) --------------------------------------------------------
async def test_a_request_waiting_for_its_shared_slot_holds_no_events(make_rig: MakeRig) -> None:
    remote = FakeRemote()
    rig = make_rig(remote=remote)
    assert rig.single.limiter in remote.watched and rig.batch.limiter in remote.watched
    rig.track("e0")
    await turn()
    assert remote.queue == ["single"]
    assert rig.server.calls == []
    s = rig.stats()
    assert (s.queued, s.in_flight, rig.sender.backlog) == (1, 0, 1)
    # The event is promised to that single: no other request starts for it, ever.
    assert rig.dispatch() == INF
    rig.advance_to(60.0)
    assert rig.dispatch() == INF
    await turn()
    assert remote.queue == ["single"]  # still the one request
    token = remote.grant("single")
    await turn()
    assert rig.server.sent() == [("events", ["e0"])]
    assert rig.stats().in_flight == 1
    rig.server.calls[0].reply()
    await turn()
    assert remote.released == [token]
    assert rig.stats().delivered == 1


async def test_shared_slot_claims_take_what_is_queued_then(make_rig: MakeRig) -> None:
    remote = FakeRemote()
    rig = make_rig(remote=remote, single=RateLimit(1, 60.0), max_batch=5, max_in_flight=4)
    rig.track(*ids(0, 1, 2))
    await turn()
    assert remote.queue == ["single"]  # promised one event; the others wait for linger
    assert rig.dispatch() == LINGER
    rig.advance_to(LINGER)
    assert rig.dispatch() == INF  # a batch now waits too, promised a full batch
    await turn()
    assert remote.queue == ["single", "batch"]
    rig.track(*ids(3, 4, 5, 6))
    await turn()
    assert remote.queue == ["single", "batch"]
    assert rig.server.calls == []
    # The batch's slot comes first: it takes up to max_batch of what is queued now,
    # leaving one event for the single still waiting.
    remote.grant("batch")
    await turn()
    assert rig.server.sent() == [("events/batch", ids(0, 1, 2, 3, 4))]
    assert rig.sender.backlog == 2
    remote.grant("single")
    await turn()
    assert rig.server.sent(1) == [("events", ["e5"])]
    # e6 waits for its own linger, then goes by batch (the single lane is busy). It was
    # tracked at 6.0 like e3..e5: the ledger nudged its stamp up by a few ulps.
    assert rig.dispatch() == pytest.approx(LINGER, abs=1e-12)
    rig.advance_to(13.0)
    rig.dispatch()
    await turn()
    remote.grant("batch")
    await turn()
    assert rig.server.sent(2) == [("events/batch", ["e6"])]
    sent = [i for call in rig.server.calls for i in call.ids]
    assert sorted(sent) == ids(*range(7))  # each exactly once
    for call in rig.server.open:
        call.reply()
    await turn()
    assert rig.stats().delivered == 7
    assert len(remote.released) == 3


async def test_singles_take_events_promised_to_a_waiting_batch_when_time_is_up(
    make_rig: MakeRig,
) -> None:
    remote = FakeRemote()
    rig = make_rig(remote=remote, max_batch=2)
    rig.track("e0", "e1")  # a full batch: promised at once
    await turn()
    assert remote.queue == ["batch"]
    rig.advance_to(LINGER)
    assert rig.dispatch() == LINGER  # nothing left; a new event's linger at the latest
    await turn()
    # Time is up and the single lane is free: singles take the batch's events.
    assert remote.queue == ["batch", "single", "single"]
    remote.grant("single")
    remote.grant("single")
    await turn()
    assert rig.server.sent() == [("events", ["e0"]), ("events", ["e1"])]
    # The batch's slot comes: nothing is left for it, and it sends nothing.
    token = remote.grant("batch")
    await turn()
    assert len(rig.server.calls) == 2
    assert token in remote.released
    for call in rig.server.open:
        call.reply()
    await turn()
    s = rig.stats()
    assert (s.delivered, s.requests_batch, s.queued) == (2, 0, 0)


async def test_events_promised_to_a_waiting_batch_have_a_wake_at_linger(
    make_rig: MakeRig,
) -> None:
    remote = FakeRemote()
    rig = make_rig(remote=remote, max_batch=2)
    rig.track("e0", "e1")
    await turn()
    assert remote.queue == ["batch"]
    # At linger a single may take them (test above): that is when to wake.
    assert rig.dispatch() == LINGER


async def test_waiting_requests_are_capped_per_lane(make_rig: MakeRig) -> None:
    remote = FakeRemote()
    rig = make_rig(remote=remote, max_in_flight=2)  # one waiting request per lane
    rig.track("e0", "e1")
    await turn()
    assert remote.queue == ["single"]  # e1 stays queued: the single lane has no room
    assert rig.sender.backlog == 2
    remote.grant("single")
    await turn()
    assert rig.server.sent() == [("events", ["e0"])]
    assert remote.queue == ["single"]  # the room is back: the next single waits for e1
    remote.grant("single")
    await turn()
    assert rig.server.sent(1) == [("events", ["e1"])]


async def test_close_cancels_requests_waiting_for_their_shared_slot(make_rig: MakeRig) -> None:
    remote = FakeRemote()
    rig = make_rig(remote=remote)
    rig.track("e0")
    await turn()
    assert remote.queue == ["single"]
    await rig.close(0)
    assert rig.reasons() == [(["e0"], "shutdown")]
    assert rig.server.calls == []
    assert rig.single.limiter.in_flight == 0
    s = rig.stats()
    assert (s.failed, s.queued, s.in_flight) == (1, 0, 0)


def test_fake_remote_has_what_a_lane_uses() -> None:
    """The fake stands for RedisLimiter: the same methods a Lane calls."""
    for name in ("watch", "acquire", "release"):
        assert callable(getattr(RedisLimiter, name))
        assert callable(getattr(FakeRemote, name))
    assert hasattr(FakeRemote, "down")
