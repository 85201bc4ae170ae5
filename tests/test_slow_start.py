"""Slow start: on first contact and after a 429, a lane keeps 1, then 2, 4, 8 requests
in flight as answers come back, so a key another process has just spent costs this
client a request or two, not ``max_in_flight`` 429s; a key of its own still reaches
its ceiling (``benchmarks/rate_limit.py`` measures that).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiofuul import FuulClient, RateLimit
from aiofuul.engine.lanes import Lane
from aiofuul.sandbox import Sandbox
from conftest import API_KEY, EVM, FAST_LIMITS, FAST_RETRY, fast_config


async def until(condition: Callable[[], bool], what: str, deadline: float = 20.0) -> None:
    """Poll ``condition``; the deadline only fails on a real hang."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not condition():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def test_a_key_spent_elsewhere_costs_a_request_or_two_not_max_in_flight() -> None:
    # A long period, so that the window another client spent stays spent while this
    # client starts; the other client spends the whole single limit.
    limits = FAST_LIMITS.__class__(single=RateLimit(40, 2.0), batch=RateLimit(10, 60.0))
    async with Sandbox(limits=limits) as sb:
        config = fast_config(limits=limits, linger=30.0, max_in_flight=8)
        async with FuulClient(API_KEY, base_url=sb.url, config=fast_config(limits=limits)) as other:
            await asyncio.gather(*(other.send_event("trade", EVM) for _ in range(40)))
        assert sb.count("events", status=201) == 40
        async with FuulClient(API_KEY, base_url=sb.url, config=config) as fuul:
            ids = [fuul.track("trade", EVM, args={"i": i}) for i in range(30)]
            await until(lambda: fuul.stats().rate_limited_single >= 1, "the first 429")
            # Before any answer came back only one request had left; after the 429 the
            # lane starts again from one request.
            first_wave = fuul.stats().requests_single
            assert await fuul.flush(30)
            s = fuul.stats()
        assert first_wave <= 2
        assert s.delivered == 30 and set(ids) <= set(sb.stored_ids())
        # Without the slow start: max_in_flight 429s in the first wave alone.
        assert s.rate_limited_single <= 3 < config.max_in_flight


async def test_the_window_doubles_per_round_trip_and_restarts_after_a_429() -> None:
    now = 0.0
    lane = Lane("single", "POST", "events", RateLimit(100, 60.0), FAST_RETRY, clock=lambda: now)

    def round_trip() -> int:
        """Launch what the lane allows now, then answer them all; how many left."""
        n = 0
        while lane.launchable(now, n)[1] > 0:
            assert lane.try_acquire(now)
            n += 1
        for _ in range(n):
            lane.release()
            lane.on_answer(delivered=True)
        return n

    assert [round_trip() for _ in range(4)] == [1, 2, 4, 8]
    lane.on_rate_limited(after=0.0)
    now = 1000.0  # the window is long empty: only the slow start holds requests back
    assert [round_trip() for _ in range(3)] == [1, 2, 4]
