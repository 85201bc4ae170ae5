"""The shared limiter: many processes, one API key, one set of limits, in Redis."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio

from aiofuul import FuulClient
from aiofuul.sandbox import Sandbox
from conftest import API_KEY, EVM, FAST_LIMITS, fast_config, free_port, redis_log

WORKER = Path(__file__).parent / "scripts" / "redis_worker.py"


@pytest_asyncio.fixture
async def strict_sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(limits=FAST_LIMITS) as sb:
        yield sb


@pytest.mark.slow
async def test_four_processes_share_one_limit_without_429s(
    redis_url: str, strict_sandbox: Sandbox
) -> None:
    sb = strict_sandbox
    period = FAST_LIMITS.single.period
    ceiling = FAST_LIMITS.single.requests + FAST_LIMITS.batch.requests * 100
    # Together the workers offer twice the key's ceiling for 7 periods.
    workers, per_period, periods = 4, 560, 7  # 28 events every 20th of a period
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            sb.url,
            redis_url,
            str(per_period),
            str(periods),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(workers)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"ready"
    await asyncio.sleep(period)  # the warm-up queries leave the window
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    outputs = [await asyncio.wait_for(proc.communicate(), 120) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    stats = [msgspec.json.decode(out.strip().splitlines()[-1]) for out, _ in outputs]

    total = workers * per_period * periods
    assert sum(s["delivered"] + s["duplicates"] for s in stats) == total, stats
    # A worker cut off from Redis falls back to a fraction of the limit, which cannot
    # know what the others sent: a 429 is then possible, and this says why.
    assert not any(b"unreachable" in err for _, err in outputs), (outputs, redis_log(redis_url))
    if sb.count(status=429):
        t0 = min(r.at for r in sb.requests)
        timeline = [
            (round(r.at - t0, 3), r.path, r.status) for r in sb.requests if r.method == "POST"
        ]
        raise AssertionError(f"429s; POSTs (s from start, path, status): {timeline}; {outputs}")
    assert len(sb.stored_ids()) == total
    # The steady state: from the end of the second period (the first is a free burst,
    # and the backlogs take another to build up) for four periods, while every worker
    # still has a backlog.
    sent = [r for r in sb.requests if r.method == "POST" and r.status == 201]
    start = min(r.at for r in sent) + 2 * period
    steady = sum(r.events for r in sent if start <= r.at < start + 4 * period)
    assert steady / (4 * ceiling) >= 0.95, f"{steady} events in 4 periods of {ceiling}"


async def test_redis_down_falls_back_to_a_safe_fraction(
    strict_sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    config = fast_config()
    with caplog.at_level(logging.WARNING, logger="aiofuul"):
        async with FuulClient(
            API_KEY, base_url=strict_sandbox.url, config=config, limiter=dead
        ) as fuul:
            ids = [fuul.track("trade", EVM, args={"i": i}) for i in range(60)]
            assert await fuul.flush(timeout=20)
            assert fuul.stats().shared_limiter_down
            assert fuul._lanes["single"].limiter.capacity == FAST_LIMITS.single.requests // 4
    assert all(strict_sandbox.stored_count(i) == 1 for i in ids)
    assert any("shared limiter unreachable" in r.getMessage() for r in caplog.records)
