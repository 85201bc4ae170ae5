"""Another process on the same key: the server allows less than the client believes.

The first 429 on a lane stops further launches on it at once (requests in flight
aside) and lowers the lane's capacity below what was in use, so a burst settles under
the server's real limit instead of hammering it.
"""

from __future__ import annotations

import asyncio

import pytest

from aiofuul import FuulClient, Limits, RateLimit
from aiofuul.sandbox import RetryAfter, Sandbox
from conftest import API_KEY, EVM, fast_config

#: Half the documented limits, per second (the client believes in the full ones).
HALF = Limits(single=RateLimit(50, 1.0), batch=RateLimit(5, 1.0), status=RateLimit(50, 1.0))


@pytest.mark.slow
@pytest.mark.parametrize("retry_after", ["seconds", "none"])
async def test_a_burst_against_half_the_limits_draws_few_429s(retry_after: RetryAfter) -> None:
    async with (
        Sandbox(limits=HALF, retry_after=retry_after) as sb,
        FuulClient(API_KEY, base_url=sb.url, config=fast_config()) as fuul,
    ):
        # 1,500 events over about 2 s: 100 loop turns of 15 events.
        for turn in range(100):
            for _ in range(15):
                fuul.track("trade", EVM)
            await asyncio.sleep(0.02 if turn % 5 else 0.0)
        assert await fuul.flush(30)
        stats = fuul.stats()
    assert stats.delivered == 1500 and len(sb.events) == 1500
    total, refused = len(sb.requests), sb.count(status=429)
    assert refused / total < 0.10, (refused, total)
