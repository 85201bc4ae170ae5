"""A walk of 10,000 movements over the sandbox, with the limits compressed: every row
once, in order, and not one 429 (the client's lane keeps within the sandbox's limit).
How much memory the walk holds is measured in benchmarks/walk.py."""

from __future__ import annotations

from dataclasses import replace

from aiofuul import FuulClient, RateLimit
from aiofuul.sandbox import Sandbox
from aiofuul.wire.models import Event
from conftest import API_KEY, EVM, FAST_LIMITS, fast_config

ROWS = 10_000
#: 25 requests in any 0.25 s on the payouts lane, for the client and the server alike:
#: the walk's 100 pages must wait on the limiter several times.
LIMITS = replace(FAST_LIMITS, payouts=RateLimit(25, 0.25))


async def test_a_walk_of_10000_movements_sees_every_row_once_in_order_without_a_429() -> None:
    async with Sandbox(limits=LIMITS) as sb:
        sb.state.store_events(
            Event(name="trade", user=EVM, dedup_id=f"m{i:05d}", args={"amount": i})
            for i in range(ROWS)
        )
        config = fast_config(limits=LIMITS)
        async with FuulClient(API_KEY, base_url=sb.url, config=config) as fuul:
            seen = [
                m.dedup_id async for m in fuul.payouts.movements(EVM, type="point", page_size=100)
            ]
        assert seen == [f"m{i:05d}" for i in range(ROWS)]
        assert sb.count("payouts/movements", status=429) == 0
        assert sb.count("payouts/movements", status=200) == ROWS // 100
        assert fuul._lanes["payouts"].rate_limited == 0
