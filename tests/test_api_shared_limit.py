"""Two processes' clients (two clients here) reading with one key share each group's
limit through the Redis limiter, as the event lanes do: together they never 429."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from aiofuul import FuulClient, RateLimit, User
from aiofuul.sandbox import Sandbox
from conftest import API_KEY, FAST_LIMITS, fast_config

#: 8 leaderboard requests in any 0.4 s, for the server and each client alike.
LIMITS = replace(FAST_LIMITS, leaderboards=RateLimit(8, 0.4))


async def test_two_clients_share_the_leaderboards_limit_through_redis(redis_url: str) -> None:
    async with Sandbox(limits=LIMITS) as sb:
        for i in range(30):
            sb.state.set_referrer(
                User(f"u{i}@example.com", "email"), User(f"r{i}@example.com", "email")
            )
        config = fast_config(limits=LIMITS)

        async def walk() -> list[str | None]:
            async with FuulClient(
                API_KEY, base_url=sb.url, config=config, limiter=redis_url
            ) as fuul:
                return [r.address async for r in fuul.leaderboards.referred(page_size=2)]

        first, second = await asyncio.gather(walk(), walk())
        assert len(first) == len(second) == 30
        assert sb.count("leaderboard/referred", status=200) == 30
        assert sb.count("leaderboard/referred", status=429) == 0
