"""A worker process for the outbox crash test.

``produce URL DB``: tracks events forever into a client with an outbox, and after each
group is committed prints its dedup ids (one line, space separated) so the test knows
what was durable when it kills this process with SIGKILL.
``deliver URL DB``: opens a client on the same outbox, delivers what it holds, exits.
"""

from __future__ import annotations

import asyncio
import sys

from aiofuul import DEFAULT_LIMITS, ClientConfig, FuulClient, RetryPolicy, User

USER = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")
CONFIG = ClientConfig(
    limits=DEFAULT_LIMITS.scaled(1 / 60),
    retry=RetryPolicy(initial_backoff=0.01, max_backoff=0.2, max_attempts=20),
    linger=0.05,
    timeout=2.0,
)


async def produce(url: str, db: str) -> None:
    async with FuulClient("outbox-test-key", base_url=url, config=CONFIG, outbox=db) as fuul:
        n = 0
        while True:
            ids = [fuul.track("trade", USER, args={"n": n + i}) for i in range(50)]
            n += 50
            await fuul._outbox.commit()  # type: ignore[union-attr]
            print(" ".join(ids), flush=True)
            await asyncio.sleep(0.01)


async def deliver(url: str, db: str) -> None:
    async with FuulClient("outbox-test-key", base_url=url, config=CONFIG, outbox=db) as fuul:
        ok = await fuul.flush(timeout=60)
        print(f"flushed={ok} delivered={fuul.stats().delivered}", flush=True)


if __name__ == "__main__":
    mode, url, db = sys.argv[1:4]
    asyncio.run(produce(url, db) if mode == "produce" else deliver(url, db))
