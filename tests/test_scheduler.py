"""The scheduler's decision, driven with made-up snapshots: no lanes, no queue, no clock.

Each case gives a :class:`QueueState`, the two :class:`LaneState` and ``now``, and the
exact answer of :func:`decide`: the :class:`Launch` to start, or the seconds to sleep
(``math.inf``: until something happens). Times are chosen so that every expected delay
is exact in binary floating point.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiofuul.engine.scheduler import LaneState, Launch, QueueState, decide

INF = math.inf
NOW = 100.0
LINGER = 6.0  # QueueState's default


def free(n: int) -> LaneState:
    """A usable lane with ``n`` slots free now."""
    return LaneState(True, n, NOW)


def busy(until: float = INF) -> LaneState:
    """A usable lane with no slot free until ``until`` (inf: all held in flight)."""
    return LaneState(True, 0, until)


def stopped(n: int = 5) -> LaneState:
    """A lane stopped by a 401/403/404: its free slots do not matter."""
    return LaneState(False, n, NOW)


def cannot_wait(n: int) -> LaneState:
    """A usable lane with free slots but no room for one more request waiting for its
    shared slot."""
    return LaneState(True, n, NOW, may_wait=False)


def q(queued: int, *, age: float = 0.0, **fields: object) -> QueueState:
    """``queued`` events, the oldest unpromised one queued ``age`` seconds ago."""
    return QueueState(queued, oldest=NOW - age, **fields)  # type: ignore[arg-type]


SINGLE = Launch("single", 1)
SOLO = Launch("single", 1, solo=True)


def batch_of(n: int) -> Launch:
    return Launch("batch", n)


# fmt: off
CASES: list[tuple[str, QueueState, LaneState, LaneState, Launch | float]] = [
    # id                                                  queue                                    single            batch             expected
    # -- nothing to do
    ("nothing queued",                                    q(0),                                    free(100),        free(10),         INF),
    ("nothing queued, linger long passed",                q(0, age=60.0),                          free(100),        free(10),         INF),
    ("only events promised to a waiting single",          q(3, promised_single=3),                 free(5),          free(5),          INF),
    # -- light traffic: one event per request
    ("one event goes single at once",                     q(1),                                    free(100),        free(10),         SINGLE),
    ("one old event still goes single",                   q(1, age=60.0),                          free(100),        free(10),         SINGLE),
    ("as many as single slots: single",                   q(5, age=60.0),                          free(5),          free(10),         SINGLE),
    # -- the switch from single to batch
    ("more than single slots, linger passed: batch",      q(30, age=LINGER),                       free(2),          free(10),         batch_of(30)),
    ("linger long passed: batch of all",                  q(42, age=30.0),                         busy(),           free(10),         batch_of(42)),
    ("a full batch goes without linger",                  q(100),                                  free(100),        free(10),         batch_of(100)),
    ("more than a batch: max_batch of them",              q(250),                                  free(100),        free(10),         batch_of(100)),
    ("configured max_batch",                              q(7, max_batch=5),                       free(100),        free(10),         batch_of(5)),
    ("partial batch before linger, single has slots",     q(30, age=1.0),                          free(2),          free(10),         SINGLE),
    ("partial batch before linger, single full",          q(30, age=1.5),                          busy(),           free(10),         4.5),
    ("just before linger",                                q(30, age=5.5),                          busy(),           free(10),         0.5),
    ("single frees before linger: wake for it",           q(30, age=1.5),                          busy(NOW + 2.0),  free(10),         2.0),
    ("linger before single frees: wake for linger",       q(30, age=1.5),                          busy(NOW + 5.0),  free(10),         4.5),
    # -- hurry (flush, close)
    ("hurry skips linger",                                q(30, hurry=True),                       busy(),           free(10),         batch_of(30)),
    ("hurry sends one event single",                      q(1, hurry=True),                        free(5),          free(10),         SINGLE),
    ("hurry, few events: single can carry them",          q(3, hurry=True),                        free(5),          free(10),         SINGLE),
    ("hurry, more than single slots: batch",              q(6, hurry=True),                        free(5),          free(10),         batch_of(6)),
    ("hurry waits for the batch slot, not linger",        q(30, hurry=True),                       busy(),           busy(NOW + 1.5),  1.5),
    # -- max in flight
    ("max_in_flight reached",                             q(30, in_flight=8),                      free(100),        free(10),         INF),
    ("max_in_flight reached, full batch",                 q(500, age=60.0, in_flight=8),           free(100),        free(10),         INF),
    ("max_in_flight reached, solo events",                q(0, solo=3, in_flight=8),               free(100),        free(10),         INF),
    ("configured max_in_flight",                          q(30, in_flight=2, max_in_flight=2),     free(100),        free(10),         INF),
    ("one below max_in_flight",                           q(1, in_flight=7),                       free(100),        free(10),         SINGLE),
    # -- a stopped lane
    ("single stopped: one event goes batch after linger", q(1, age=LINGER),                        stopped(),        free(10),         batch_of(1)),
    ("single stopped: one event waits for linger",        q(1, age=2.0),                           stopped(),        free(10),         4.0),
    ("single stopped, hurry: batch at once",              q(1, hurry=True),                        stopped(),        free(10),         batch_of(1)),
    ("batch stopped: a full batch goes single",           q(150),                                  free(100),        stopped(),        SINGLE),
    ("batch stopped, single full: wait for single",       q(150),                                  busy(NOW + 3.0),  stopped(),        3.0),
    ("both stopped",                                      q(5, age=60.0),                          stopped(),        stopped(),        INF),
    # -- solo events (a refused batch, sent one by one)
    ("solo goes first, single",                           q(0, solo=2),                            free(1),          free(10),         SOLO),
    ("solo before a full batch",                          q(500, solo=2, age=60.0),                free(1),          free(10),         SOLO),
    ("solo waits for single, not batch",                  q(500, solo=2),                          busy(NOW + 3.0),  free(10),         3.0),
    ("solo, single stopped: batch",                       q(0, solo=1),                            stopped(),        free(10),         Launch("batch", 1, solo=True)),
    ("solo, single stopped, batch busy",                  q(0, solo=1),                            stopped(),        busy(NOW + 2.5),  2.5),
    ("solo ignores may_wait",                             q(0, solo=1),                            cannot_wait(1),   free(10),         SOLO),
    # -- promised events (requests waiting for their shared slot)
    ("promised to a batch: not a full batch",             q(102, promised_batch=100),              free(1),          free(10),         SINGLE),
    ("unpromised full batch goes",                        q(200, promised_batch=100),              free(1),          free(10),         batch_of(100)),
    ("promised to a single: not a full batch",            q(100, promised_single=1),               busy(),           free(10),         LINGER),
    ("without that promise: the full batch goes",         q(100),                                  busy(),           free(10),         batch_of(100)),
    ("all promised, single full: nothing to do",          q(3, promised_single=1, promised_batch=2), busy(),         free(10),         INF),
    ("time is up: single takes a batch's promised",       q(2, promised_batch=100, age=LINGER),    free(3),          free(10),         SINGLE),
    ("hurry: single takes a batch's promised",            q(2, promised_batch=100, hurry=True),    free(3),          free(10),         SINGLE),
    ("batch never takes a single's promised",             q(1, promised_single=1, age=60.0),       stopped(),        free(10),         INF),
    # -- may_wait: room for one more request waiting for its shared slot
    ("batch may not wait: no batch",                      q(150),                                  busy(),           cannot_wait(10),  INF),
    ("batch may not wait, single may",                    q(150),                                  free(1),          cannot_wait(10),  SINGLE),
    ("single may not wait: wait for linger",              q(1),                                    cannot_wait(5),   free(10),         LINGER),
    ("single may not wait, linger passed, more: batch",   q(6, age=LINGER),                        cannot_wait(5),   free(10),         batch_of(6)),
    ("neither may wait",                                  q(150, age=60.0),                        cannot_wait(5),   cannot_wait(10),  INF),
    # -- wake time: the earliest of the lanes' next_free (and linger, for a partial batch)
    ("full batch, both lanes busy: batch frees first",    q(150),                                  busy(NOW + 7.0),  busy(NOW + 2.5),  2.5),
    ("full batch, both lanes busy: single frees first",   q(150),                                  busy(NOW + 1.25), busy(NOW + 2.5),  1.25),
    ("partial batch: slot before linger, linger wins",    q(30, age=1.5),                          busy(),           busy(NOW + 1.0),  4.5),
    ("partial batch: slot after linger, slot wins",       q(30, age=1.5),                          busy(),           busy(NOW + 9.0),  9.0),
    ("everything held in flight",                         q(150),                                  busy(),           busy(),           INF),
    # -- a 429 pause is a next_free in the future
    ("single paused by a 429",                            q(1),                                    busy(NOW + 5.0),  free(10),         5.0),
    ("single paused past linger: linger wins",            q(1),                                    busy(NOW + 20.0), free(10),         LINGER),
    ("batch paused by a 429",                             q(100),                                  busy(),           busy(NOW + 30.0), 30.0),
    ("both paused",                                       q(100),                                  busy(NOW + 12.0), busy(NOW + 30.0), 12.0),
    ("single paused, hurry: batch at once",               q(1, hurry=True),                        busy(NOW + 5.0),  free(10),         batch_of(1)),
]
# fmt: on


@pytest.mark.parametrize(
    ("queue", "single", "batch", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_decide(
    queue: QueueState, single: LaneState, batch: LaneState, expected: Launch | float
) -> None:
    assert decide(queue, single, batch, NOW) == expected


def test_linger_boundary_is_inclusive() -> None:
    """An event that has waited exactly ``linger`` goes; a hair earlier it waits."""
    queue = QueueState(30, oldest=NOW - 6.0)
    assert decide(queue, busy(), free(10), NOW) == Launch("batch", 30)
    earlier = math.nextafter(NOW, -INF)
    assert decide(queue, busy(), free(10), earlier) == NOW - earlier


def test_configured_linger() -> None:
    queue = QueueState(30, oldest=NOW - 0.25, linger=0.5)
    assert decide(queue, busy(), free(10), NOW) == 0.25
    assert decide(queue, busy(), free(10), NOW + 0.25) == Launch("batch", 30)


def test_a_backlog_drains_single_first_then_batch() -> None:
    """Replaying the decisions on a snapshot that follows them: 5 events, 2 single slots,
    linger not passed: two singles, then the wait for linger, then one batch of 3."""
    queued, single_free, launches = 5, 2, []
    while True:
        step = decide(
            QueueState(queued, oldest=NOW),
            LaneState(True, single_free, NOW if single_free else INF),
            free(10),
            NOW,
        )
        if not isinstance(step, Launch):
            break
        launches.append(step)
        queued -= step.count
        single_free -= step.lane == "single"
    assert launches == [SINGLE, SINGLE]
    assert step == LINGER
    step = decide(QueueState(queued, oldest=NOW), busy(), free(10), NOW + LINGER)
    assert step == Launch("batch", 3)


def test_all_promised_to_a_batch_wakes_at_linger() -> None:
    """Two events promised to a batch waiting for its shared slot; the single lane is
    free. At ``oldest + linger`` a single takes one of them (the scheduler's docstring:
    "when nothing unpromised is left and time is up, singles may take events a waiting
    batch was promised"), so that is the wake time; now, nothing can start."""
    queue = QueueState(2, promised_batch=2, oldest=NOW, max_batch=2)
    assert decide(queue, free(1), free(10), NOW + LINGER) == SINGLE
    assert decide(queue, free(1), free(10), NOW) == LINGER


def test_no_zero_wait_without_a_launch_when_single_may_not_wait() -> None:
    """One event past linger; the single lane has free slots but no room for one more
    request waiting for its shared slot; the batch lane is free. Nothing starts, and
    the answer is 0.0 ("start in no time"), not a launch, a positive delay or inf."""
    step = decide(QueueState(1, oldest=NOW - LINGER), cannot_wait(5), free(10), NOW)
    assert isinstance(step, Launch) or step > 0.0


# -- properties ------------------------------------------------------------------------------

lanes = st.builds(
    LaneState,
    usable=st.booleans(),
    free=st.integers(0, 4),
    next_free=st.one_of(st.just(INF), st.floats(NOW, NOW + 100.0)),
    may_wait=st.booleans(),
)


@st.composite
def queues(draw: st.DrawFn) -> QueueState:
    queued = draw(st.integers(0, 300))
    promised_single = draw(st.integers(0, min(queued, 4)))
    max_batch = draw(st.integers(1, 100))
    return QueueState(
        queued=queued,
        promised_single=promised_single,
        promised_batch=draw(st.sampled_from([0, max_batch])) * draw(st.integers(0, 2)),
        solo=draw(st.integers(0, 3)),
        oldest=draw(st.floats(NOW - 20.0, NOW)),
        in_flight=draw(st.integers(0, 8)),
        max_in_flight=draw(st.integers(1, 8)),
        max_batch=max_batch,
        linger=draw(st.floats(0.0, 10.0)),
        hurry=draw(st.booleans()),
    )


def consistent(lane: LaneState) -> LaneState:
    """A lane with free slots is free now (as the sender reports it)."""
    return LaneState(lane.usable, lane.free, NOW if lane.free else lane.next_free, lane.may_wait)


@settings(
    max_examples=500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@pytest.mark.slow
@given(queue=queues(), single=lanes.map(consistent), batch=lanes.map(consistent))
def test_a_launch_is_always_possible_and_a_wait_never_negative(
    queue: QueueState, single: LaneState, batch: LaneState
) -> None:
    step = decide(queue, single, batch, NOW)
    if not isinstance(step, Launch):
        assert step >= 0.0
        return
    assert queue.in_flight < queue.max_in_flight
    lane = single if step.lane == "single" else batch
    assert lane.free > 0
    if step.solo:
        assert queue.solo > 0 and step.count == 1
        assert step.lane == ("single" if single.usable else "batch")
        return
    assert queue.solo == 0  # solo events go first
    assert lane.usable and lane.may_wait
    unpromised = queue.queued - queue.promised_single
    if step.lane == "single":
        assert step.count == 1 and unpromised >= 1
    else:
        # A batch takes only events promised to nobody, at most max_batch of them.
        assert 1 <= step.count <= min(unpromised - queue.promised_batch, queue.max_batch)
