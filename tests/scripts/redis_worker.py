"""A worker process for the shared-limiter test:
``redis_worker.py URL REDIS_URL EVENTS_PER_PERIOD PERIODS``.

Starts a client on the shared limiter, prints ``ready``, waits for a line on stdin,
then tracks EVENTS_PER_PERIOD events every period (in 20 steps) for PERIODS periods,
flushes, and prints its stats as JSON.
"""

from __future__ import annotations

import asyncio
import sys

import msgspec

from aiofuul import DEFAULT_LIMITS, ClientConfig, FuulClient, RetryPolicy, User

USER = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")


PERIOD = DEFAULT_LIMITS.scaled(1 / 60).single.period


async def main(url: str, redis_url: str, per_period: int, periods: int) -> None:
    config = ClientConfig(
        limits=DEFAULT_LIMITS.scaled(1 / 60),
        retry=RetryPolicy(initial_backoff=0.01, max_backoff=0.2),
        timeout=2.0,
    )
    async with FuulClient("shared-key", base_url=url, config=config, limiter=redis_url) as fuul:
        await fuul.event_status(USER, "warm-up")  # connects to the sandbox and to Redis
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        step = per_period // 20
        for i in range(20 * periods):
            for j in range(step):
                fuul.track("trade", USER, args={"i": i, "j": j})
            await asyncio.sleep(PERIOD / 20)
        await fuul.flush(timeout=120)
        print(msgspec.json.encode(fuul.stats()).decode(), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
