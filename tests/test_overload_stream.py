"""A steady stream above the key's ceiling: track() does not wake a sender
that can do nothing, the user cache keeps frequent users, and overload is said once
with its numbers."""

from __future__ import annotations

import asyncio
import logging
import math

import pytest

from aiofuul import ClientConfig, FuulClient, Limits, RateLimit, User
from aiofuul.engine.events import _KNOWN_USERS, EventFactory
from aiofuul.engine.scheduler import LaneState, QueueState, events_to_wake
from aiofuul.sandbox import Sandbox
from conftest import API_KEY, EVM, FAST_RETRY, wait_until

NOW = 100.0


def lane(free: int, next_free: float = NOW) -> LaneState:
    return LaneState(True, free, next_free)


@pytest.mark.parametrize(
    ("queue", "single", "batch", "more", "wait"),
    [
        # Idle, slots free: the first event goes at once.
        (QueueState(0), lane(5), lane(1), 1, math.inf),
        # Every slot taken: nothing any event could change before a single slot frees.
        (QueueState(500, oldest=NOW - 1), lane(0, NOW + 3), lane(0, NOW + 9), 0, 3.0),
        # The in-flight budget spent: only an answer changes that.
        (QueueState(3, in_flight=8, oldest=NOW), lane(5), lane(1), 0, math.inf),
        # Singles spent, a batch slot free, 30 events lingering: the 100th fills it, and
        # the sender wakes anyway when a single slot frees.
        (QueueState(30, oldest=NOW - 1), lane(0, NOW + 3), lane(1), 70, 3.0),
        # The same, the queue empty: one event is not worth the batch slot before the
        # single slot frees, but the 100th is.
        (QueueState(0), lane(0, NOW + 0.5), lane(1), 100, 0.5),
        # Lanes paused by a 429, the queue empty: decide() sees nothing to wait for, yet
        # the sender must wake when the pause ends, in case events came meanwhile.
        (QueueState(0), lane(0, NOW + 30), lane(0, NOW + 30), 0, 30.0),
    ],
)
def test_how_many_events_would_change_the_decision(
    queue: QueueState, single: LaneState, batch: LaneState, more: int, wait: float
) -> None:
    assert events_to_wake(queue, single, batch, NOW) == (more, wait)


TIGHT = Limits(single=RateLimit(2, 1.0), batch=RateLimit(1, 1.0), status=RateLimit(100, 1.0))


async def test_a_stream_over_spent_limits_does_not_wake_the_sender(sandbox: Sandbox) -> None:
    config = ClientConfig(limits=TIGHT, retry=FAST_RETRY, linger=0.05, max_queue=100_000)
    async with FuulClient(API_KEY, base_url=sandbox.url, config=config) as fuul:
        for _ in range(300):  # spends the singles and the batch slot of this second
            fuul.track("trade", EVM)
        await wait_until(lambda: sandbox.count(status=201) == 3, what="2 singles and a batch")
        sender = fuul._sender
        passes = 0
        dispatch = sender._dispatch

        def counting(now: float) -> float:
            nonlocal passes
            passes += 1
            return dispatch(now)

        sender._dispatch = counting  # type: ignore[method-assign]
        for _ in range(3_000):  # one event per loop iteration, as a service tracks
            fuul.track("trade", EVM)
            await asyncio.sleep(0)
        # Each of these wakes is an answer or a slot freeing, not an event: a few.
        assert passes < 30, passes
        assert fuul.stats().queued >= 3_000
        sender.queue._queue.clear()  # not the point here: do not wait to deliver
        await fuul.aclose(timeout=0.2)


async def test_the_first_event_after_idle_is_sent_at_once(sandbox: Sandbox) -> None:
    # A linger of a minute: an event that waited for it would miss the deadline below.
    config = ClientConfig(limits=TIGHT, retry=FAST_RETRY, linger=60.0)
    async with FuulClient(API_KEY, base_url=sandbox.url, config=config) as fuul:
        await asyncio.sleep(0.05)  # the scenario: the sender is asleep, nothing queued
        fuul.track("trade", EVM)
        await wait_until(lambda: fuul.stats().delivered == 1, 20, "the delivery")


def test_the_user_cache_keeps_its_frequent_users() -> None:
    factory = EventFactory(check_format=True, strict=False)
    hot = User("0x" + "ab" * 20, "evm_address")
    factory.make("trade", hot, None, None, None, {}, stamp=False)
    for i in range(2 * _KNOWN_USERS):
        factory.make(
            "trade", User(f"user-{i}@example.com", "email"), None, None, None, {}, stamp=False
        )
        if i % 100 == 0:
            factory.make("trade", hot, None, None, None, {}, stamp=False)
    assert len(factory._known_users) == _KNOWN_USERS
    assert hot in factory._known_users  # used all along: never evicted
    assert User("user-0@example.com", "email") not in factory._known_users  # least recent: gone


@pytest.mark.slow
async def test_overload_is_warned_of_once_with_its_numbers(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    # A ceiling of 2 + 1 x 10 = 12 events per 0.24 s period: 50/s; events arrive at ~400/s.
    limits = Limits(single=RateLimit(2, 0.24), batch=RateLimit(1, 0.24), status=RateLimit(100, 1.0))
    config = ClientConfig(limits=limits, max_batch=10, linger=0.01, max_queue=100_000)
    caplog.set_level(logging.WARNING, logger="aiofuul")
    async with FuulClient(API_KEY, base_url=sandbox.url, config=config) as fuul:
        for _ in range(40):
            for _ in range(8):
                fuul.track("trade", EVM)
            await asyncio.sleep(0.02)
        rate = fuul.stats().arrival_rate
        assert 100 < rate < math.inf, rate
        fuul._sender.queue._queue.clear()
        await fuul.aclose(timeout=0.2)
    warnings = [
        r.getMessage() for r in caplog.records if "faster than the API key" in r.getMessage()
    ]
    assert len(warnings) == 1, warnings
    assert "ceiling of 3000/min" in warnings[0]
    assert "max_queue (100000)" in warnings[0]
