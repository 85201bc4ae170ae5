"""SlidingWindowLimiter: at most N in ANY window of the period, and no more conservative
than that; the 429 feedback (capacity cut, recovery), pause() and next_free(). The
recovery on a shared key, end to end against a fake server, is in test_rate_limit_recovery.py.

The property tests drive the limiter with a fake clock over integer times (exact
arithmetic, so window edges are not blurred by float rounding) through random
acquire / release / cancel / advance schedules, and check every window against a
model that only knows the definition. The aiolimiter comparison runs on the real loop
clock with the period compressed to half a second.
"""

from __future__ import annotations

import asyncio
import math
from bisect import bisect_left
from collections.abc import Sequence

import pytest
from aiolimiter import AsyncLimiter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiofuul import DEFAULT_LIMITS, Limits, RateLimit
from aiofuul.engine.limits import SlidingWindowLimiter
from conftest import FakeClock

PROPERTY = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def max_in_any_window(times: Sequence[float], period: float) -> int:
    """The most of ``times`` inside any half-open window ``[t, t + period)``; the
    busiest window always starts at one of the times."""
    ordered = sorted(times)
    return max(
        (bisect_left(ordered, t + period) - i for i, t in enumerate(ordered)),
        default=0,
    )


def counted(releases: Sequence[float], now: float, period: float) -> int:
    """Releases inside the window ending now, ``(now - period, now]``."""
    return sum(1 for r in releases if now - period < r <= now)


# -- the sliding window, by property ------------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.integers(0, 12)),
        st.tuples(st.just("acquire"), st.integers(1, 4)),
        st.tuples(st.just("release"), st.integers(0, 1000)),
        st.tuples(st.just("cancel"), st.integers(0, 1000)),
    ),
    max_size=80,
)


@PROPERTY
@given(
    requests=st.integers(1, 8),
    period=st.integers(1, 20),
    ops=operations,
    rate_limited_at=st.sets(st.integers(0, 79), max_size=3),
)
def test_sliding_window_never_admits_more_than_n_in_any_window(
    requests: int, period: int, ops: list[tuple[str, int]], rate_limited_at: set[int]
) -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(RateLimit(requests, float(period)), clock=clock)
    in_flight: list[float] = []  # acquire times of the slots held
    sent: list[float] = []  # acquire times of the requests released (so sent)
    releases: list[float] = []
    for step, (op, arg) in enumerate(ops):
        now = clock.now
        if step in rate_limited_at:
            limiter.on_rate_limited()
        if op == "advance":
            clock.now += arg
        elif op == "acquire":
            for _ in range(arg):
                if not limiter.try_acquire():
                    continue
                in_flight.append(now)
                # At the moment of admission: the window ending now plus everything
                # in flight (this one included) fits the limit and the current capacity.
                in_use = counted(releases, now, period) + len(in_flight)
                assert in_use <= limiter.capacity <= requests
        elif op in ("release", "cancel") and in_flight:
            acquired = in_flight.pop(arg % len(in_flight))
            if op == "release":
                limiter.release()
                releases.append(now)
                sent.append(acquired)
            else:
                limiter.cancel()  # never sent: it counts nowhere
        assert limiter.in_flight == len(in_flight)
    # The server counts each request at some moment between its acquire and its
    # release: any window of the releases holds at most N ...
    assert max_in_any_window(releases, period) <= requests
    # ... and so does any window of the acquires of sent requests (those still in
    # flight included), the earliest moment the server could have counted them.
    assert max_in_any_window(sent + in_flight, period) <= requests


@PROPERTY
@given(requests=st.integers(1, 8), period=st.integers(1, 20), ops=operations)
def test_sliding_window_admits_whenever_fewer_than_n_are_counted(
    requests: int, period: int, ops: list[tuple[str, int]]
) -> None:
    """Not over-conservative: without 429 feedback a slot is refused exactly when the
    window ending now plus the requests in flight already make N, and next_free()
    is the first moment that stops being true."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter(RateLimit(requests, float(period)), clock=clock)
    in_flight = 0
    releases: list[float] = []
    for op, arg in ops:
        now = clock.now
        if op == "advance":
            clock.now += arg
        elif op == "acquire":
            for _ in range(arg):
                free = counted(releases, now, period) + in_flight < requests
                assert limiter.try_acquire() is free
                in_flight += free
                # next_free(): the earliest time t >= now at which the model frees a
                # slot if nothing else happens (inf while in-flight requests alone fill it).
                at = limiter.next_free()
                if counted(releases, now, period) + in_flight < requests:
                    assert at == now
                elif in_flight >= requests:
                    assert at == math.inf
                else:
                    assert at > now
                    assert counted(releases, at, period) + in_flight < requests
                    # Times and the period are integers: the count can only change at
                    # integers, so half a tick earlier the window was still full.
                    before = at - 0.5
                    if before >= now:
                        assert counted(releases, before, period) + in_flight >= requests
        elif op in ("release", "cancel") and in_flight:
            in_flight -= 1
            if op == "release":
                limiter.release()
                releases.append(now)
            else:
                limiter.cancel()
        assert limiter.used() == counted(releases, clock.now, period) + in_flight


def test_release_counts_from_the_response_not_the_request() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(RateLimit(1, 10.0), clock=clock)
    assert limiter.try_acquire()
    clock.now = 7.0  # the response arrives 7 s after the request was sent
    limiter.release()
    clock.now = 10.0  # a full period after the *request*: still counted
    assert not limiter.try_acquire()
    assert limiter.next_free() == 17.0
    clock.now = 17.0
    assert limiter.try_acquire()


def test_cancelled_slot_does_not_count() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(RateLimit(1, 10.0), clock=clock)
    assert limiter.try_acquire()
    limiter.cancel()
    assert limiter.used() == 0
    assert limiter.try_acquire()


# -- next_free and pause ---------------------------------------------------------------------------


def test_next_free_is_inf_when_every_slot_is_in_flight() -> None:
    clock = FakeClock(100.0)
    limiter = SlidingWindowLimiter(RateLimit(3, 10.0), clock=clock)
    for _ in range(3):
        assert limiter.try_acquire()
    assert limiter.next_free() == math.inf
    assert not limiter.try_acquire()
    clock.now = 1_000_000.0  # time alone frees nothing while they are in flight
    assert limiter.next_free() == math.inf
    clock.now = 1_000_002.0
    limiter.release()
    assert limiter.next_free() == 1_000_012.0  # a full period after that response


def test_next_free_is_now_when_a_slot_is_free() -> None:
    clock = FakeClock(5.0)
    limiter = SlidingWindowLimiter(RateLimit(2, 10.0), clock=clock)
    assert limiter.next_free() == 5.0
    assert limiter.try_acquire()
    assert limiter.next_free() == 5.0


def test_pause_admits_nothing_until_its_time() -> None:
    clock = FakeClock(50.0)
    limiter = SlidingWindowLimiter(RateLimit(10, 1.0), clock=clock)
    limiter.pause(3.0)
    assert limiter.next_free() == 53.0
    clock.now = 52.999
    assert not limiter.try_acquire()
    clock.now = 53.0
    assert limiter.try_acquire()


def test_pause_keeps_the_later_of_two_pauses() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(RateLimit(10, 1.0), clock=clock)
    limiter.pause(5.0)
    limiter.pause(1.0)  # a shorter hint does not shorten the pause
    assert limiter.next_free() == 5.0


def test_pause_delays_a_window_slot_too() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(RateLimit(1, 2.0), clock=clock)
    assert limiter.try_acquire()
    limiter.release()
    limiter.pause(5.0)
    assert limiter.next_free() == 5.0  # later than the window's 2.0
    limiter.pause(0.0)
    assert limiter.next_free() == 5.0


def sleeping_on(clock: FakeClock, limiter: SlidingWindowLimiter) -> list[float | None]:
    """Make ``limiter.wait`` a sleep on the fake clock (it moves on by the timeout at
    once); the timeouts it was asked for."""
    asked: list[float | None] = []

    async def wait(timeout: float | None = None) -> None:
        asked.append(timeout)
        assert timeout is not None, "would wait for a release that never comes"
        clock.advance(timeout)

    limiter.wait = wait  # type: ignore[method-assign]
    return asked


async def test_acquire_sleeps_until_the_pause_ends() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(RateLimit(10, 1.0), clock=clock)
    asked = sleeping_on(clock, limiter)
    limiter.pause(0.1)
    await limiter.acquire()
    assert clock.now == pytest.approx(0.1) and asked == [pytest.approx(0.1)]


async def test_acquire_wakes_as_soon_as_an_in_flight_slot_is_cancelled() -> None:
    loop = asyncio.get_running_loop()
    limiter = SlidingWindowLimiter(RateLimit(1, 60.0), clock=loop.time)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.02)
    assert not waiter.done()  # next_free() is inf: it waits for a release
    limiter.cancel()
    await asyncio.wait_for(waiter, 30)  # without the wake: 60 s (only a hang fails)
    assert limiter.in_flight == 1


async def test_acquire_waits_a_full_period_after_a_release() -> None:
    clock = FakeClock(5.0)
    limiter = SlidingWindowLimiter(RateLimit(1, 0.1), clock=clock)
    sleeping_on(clock, limiter)
    await limiter.acquire()
    limiter.release()
    await limiter.acquire()
    assert clock.now >= 5.1


# -- 429 feedback ----------------------------------------------------------------------------------


def test_on_rate_limited_lowers_capacity_below_what_was_in_use() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(RateLimit(10, 60.0), clock=clock)
    for _ in range(5):
        assert limiter.try_acquire()
    limiter.on_rate_limited()
    assert limiter.capacity == 4 < limiter.in_flight == 5
    # Over capacity with everything in flight: nothing more until responses come back,
    assert limiter.next_free() == math.inf
    for _ in range(5):
        limiter.release()
    # and then only once the window is back under the new capacity (2 of 5 aged out).
    assert limiter.next_free() == 60.0


def test_on_rate_limited_never_goes_below_one_and_counts_recent_releases() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(RateLimit(10, 60.0), clock=clock)
    limiter.on_rate_limited()  # nothing in use at all
    assert limiter.capacity == 1
    limiter = SlidingWindowLimiter(RateLimit(100, 60.0), clock=clock)
    for _ in range(50):
        limiter.try_acquire()
        limiter.release()
    limiter.on_rate_limited()  # 50 counted in the window, none in flight
    assert limiter.capacity == 40


def _serve(limiter: SlidingWindowLimiter, n: int) -> None:
    """``n`` requests answered at once (the window counts them from now)."""
    for _ in range(n):
        assert limiter.try_acquire()
        limiter.release()


def test_capacity_climbs_to_90_percent_of_the_429_level_probes_then_forgets_it() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(RateLimit(100, 10.0), clock=clock)
    _serve(limiter, 1)  # in use since t=0 ...
    clock.now = 10.0  # ... so a 429 a period later speaks of our share of the key
    _serve(limiter, 50)
    limiter.on_rate_limited()  # 50 in use drew a 429
    assert limiter.capacity == 40

    def capacity_at(t: float) -> int:
        clock.now = t
        limiter.next_free()  # recovery is evaluated when the limiter is consulted
        return limiter.capacity

    assert capacity_at(19.9) == 40  # not before a full quiet period
    assert capacity_at(20.0) == 41  # then a slot every period / capacity ...
    assert capacity_at(21.0) == 45  # ... up to 90% of the level that drew the 429
    assert capacity_at(30.5) == 45  # holds a period there
    assert capacity_at(31.5) == 46  # then probes: a tenth of the limit a period,
    assert capacity_at(32.5) == 47  # one slot at a time
    assert capacity_at(35.5) == 50  # at the level that drew the 429 ...
    assert capacity_at(44.5) == 59  # ... for a period without a 429:
    assert capacity_at(45.5) == 62  # forgotten, a slot every period / capacity again
    assert capacity_at(50.5) == 100


def test_after_a_probe_draws_a_429_the_next_probe_waits_two_periods() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(RateLimit(100, 10.0), clock=clock)
    _serve(limiter, 1)
    clock.now = 10.0
    _serve(limiter, 50)
    limiter.on_rate_limited()  # level 50, capacity 40

    def capacity_at(t: float) -> int:
        clock.now = t
        limiter.next_free()
        return limiter.capacity

    assert [capacity_at(t) for t in (21.0, 32.5)] == [45, 47]  # settled, probing
    _serve(limiter, 47)  # the other user is still there: the probe draws a 429
    limiter.on_rate_limited()
    assert limiter.capacity == 37  # 80% of 47
    assert capacity_at(42.4) == 37  # a quiet period
    assert capacity_at(44.5) == 42  # floor(0.9 * 47)
    assert capacity_at(63.5) == 42  # holds two periods ...
    assert capacity_at(64.5) == 43  # ... then probes again


def test_next_free_wakes_a_waiter_for_the_next_slot_of_growth() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(RateLimit(10, 10.0), clock=clock)
    _serve(limiter, 1)
    clock.now = 10.0
    _serve(limiter, 5)
    limiter.on_rate_limited()  # level 5, capacity 4: the settle point already
    clock.now = 21.0
    _serve(limiter, 4)  # the window is full until 31 ...
    assert not limiter.try_acquire()
    assert limiter.next_free() == 30.0  # ... but the first probe adds a slot at 30
    clock.now = 30.0
    assert limiter.try_acquire()
    assert limiter.capacity == 5
    assert limiter.next_free() == 31.0  # the next probe is a period away: the window first


def test_a_429_in_the_first_period_is_not_taken_for_our_share() -> None:
    # A restarted process (or a resumed import) meets its predecessor's requests in the
    # server's window: the 429 says nothing about its share, so it regrows quickly.
    clock = FakeClock()
    limiter = SlidingWindowLimiter(RateLimit(10, 1.0), clock=clock)
    for _ in range(4):
        assert limiter.try_acquire()
        limiter.release()
    limiter.on_rate_limited()
    assert limiter.capacity == 3
    seen = []
    for second in range(1, 7):
        clock.now = float(second)
        limiter.next_free()
        seen.append(limiter.capacity)
    assert seen == [4, 5, 7, 9, 10, 10]  # +25% a quiet period, up to the limit


def test_recovery_never_exceeds_the_limit() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(RateLimit(3, 1.0), clock=clock)
    for _ in range(3):
        limiter.try_acquire()
        limiter.release()
    limiter.on_rate_limited()
    assert limiter.capacity == 2
    for t in range(1, 200):
        clock.now = float(t)
        limiter.next_free()
        assert 1 <= limiter.capacity <= 3
    assert limiter.capacity == 3


def test_the_last_429_after_the_first_period_sets_the_settle_point() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(RateLimit(100, 10.0), clock=clock)
    _serve(limiter, 100)
    limiter.on_rate_limited()  # in the first period: capacity 80, but no level kept
    clock.now = 10.0
    _serve(limiter, 50)
    limiter.on_rate_limited()  # 50 counted now: level 50, capacity 40
    assert limiter.capacity == 40
    clock.now = 25.0
    limiter.next_free()
    assert limiter.capacity == 45  # floor(0.9 * 50), not 90% of 100
    _serve(limiter, 30)
    limiter.on_rate_limited()  # a lower level (the other user spends more)
    assert limiter.capacity == 24
    clock.now = 40.0
    limiter.next_free()
    assert limiter.capacity == 27  # floor(0.9 * 30)


# -- limits ----------------------------------------------------------------------------------------


def test_default_limits_are_the_documented_ones() -> None:
    assert Limits(RateLimit(100, 60.0), RateLimit(10, 60.0), RateLimit(100, 60.0)) == DEFAULT_LIMITS
    per_second = DEFAULT_LIMITS.scaled(1 / 60)
    assert per_second.single.requests == 100
    assert per_second.batch.period == pytest.approx(1.0)


@pytest.mark.parametrize(("requests", "period"), [(0, 60.0), (-1, 60.0), (1, 0.0), (1, math.nan)])
def test_rate_limit_refuses_nonsense(requests: int, period: float) -> None:
    with pytest.raises(ValueError, match="requests >= 1 and period > 0"):
        RateLimit(requests, period)


# -- the demonstration that motivated it -------------------------------------------------------------

N = 100
PERIOD = 0.5
RUN = 0.6  # a bit more than one period: long enough for a second burst to begin


async def _admissions_token_bucket() -> list[float]:
    loop = asyncio.get_running_loop()
    bucket = AsyncLimiter(N, PERIOD)
    times: list[float] = []

    async def one() -> None:
        async with bucket:
            times.append(loop.time())

    tasks = [asyncio.create_task(one()) for _ in range(3 * N)]
    await asyncio.sleep(RUN)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return times


async def _admissions_sliding_window() -> list[float]:
    loop = asyncio.get_running_loop()
    limiter = SlidingWindowLimiter(RateLimit(N, PERIOD), clock=loop.time)
    times: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        times.append(loop.time())
        limiter.release()  # an instant response: the most the limiter can be asked for

    tasks = [asyncio.create_task(one()) for _ in range(3 * N)]
    await asyncio.sleep(RUN)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return times


async def test_token_bucket_lets_about_twice_the_limit_through_one_window_but_ours_exactly_n() -> (
    None
):
    bucket_times, window_times = await asyncio.gather(
        _admissions_token_bucket(), _admissions_sliding_window()
    )
    bucket_max = max_in_any_window(bucket_times, PERIOD)
    window_max = max_in_any_window(window_times, PERIOD)
    # aiolimiter.AsyncLimiter(100, 60), compressed: a burst of 100, then the bucket
    # drains at 100 per period, so one sliding window sees close to 200.
    # (199 on an idle machine; the bound leaves room for a loaded one.)
    assert bucket_max >= 1.5 * N, bucket_max
    # Ours: exactly N in the busiest window, never more, and it keeps admitting.
    assert window_max == N
    assert len(window_times) > N
