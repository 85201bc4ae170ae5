"""A fleet on one API key, sharing its limits and its backlog in Redis: worker processes
(tests/scripts/fleet_worker.py) killed, stopped, and Redis restarted under them; every
event a worker committed is stored once by the sandbox. Time is compressed: the
documented limits with a one-second period (a ceiling of 1,100 events a second)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio

from aiofuul import FuulClient
from aiofuul.sandbox import Sandbox
from conftest import FAST_LIMITS, RedisServer, fast_config, redis_log, wait_until

WORKER = Path(__file__).parent / "scripts" / "fleet_worker.py"
CEILING = FAST_LIMITS.single.requests + FAST_LIMITS.batch.requests * 100  # events/s


class Worker:
    """One worker process, its stdout read as it comes: ``committed`` ids, and its
    stats at the end."""

    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.committed: list[str] = []
        self.lines: list[str] = []
        self.stats: dict[str, Any] | None = None
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(
        cls, url: str, outbox: str, key: str, events: int, rate: float, limiter: str = ""
    ) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER), url, outbox, key, str(events), str(rate), limiter,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode().strip()
            if line.startswith("committed "):
                self.committed.extend(line.split()[1:])
            elif line.startswith("{"):
                self.stats = msgspec.json.decode(line)
            else:
                self.lines.append(line)

    async def wait_for(self, word: str, timeout: float = 30) -> None:
        await wait_until(lambda: word in self.lines or self.proc.returncode is not None, timeout)
        assert word in self.lines, f"worker ended with {self.proc.returncode}: {self.lines}"

    async def say(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word.encode() + b"\n")
        await self.proc.stdin.drain()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        os.kill(self.proc.pid, sig)

    async def end(self, timeout: float = 30) -> int:
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        await self._reader
        return code


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(limits=FAST_LIMITS) as sb:
        yield sb


def missing(sb: Sandbox, ids: list[str]) -> list[str]:
    return [i for i in ids if sb.stored_count(i) != 1]


@pytest.mark.slow
async def test_half_a_fleet_killed_mid_stream_loses_nothing_committed(
    redis_url: str, sandbox: Sandbox
) -> None:
    sb, key = sandbox, "sk_test_fleet_0001"
    outbox = redis_url + "?adopt_after=1"
    # 4 x 2,500 events offered at 4 x 1,250 a second: 4.5 times the ceiling.
    workers = [await Worker.start(sb.url, outbox, key, 2500, 1250, redis_url) for _ in range(4)]
    for w in workers:
        await w.wait_for("ready")
    for w in workers:
        await w.say("go")
    doomed, survivors = workers[:2], workers[2:]
    await wait_until(lambda: all(len(w.committed) >= 1000 for w in doomed), 20)
    for w in doomed:
        w.kill()
    killed_at = time.monotonic()
    for w in doomed:
        assert await w.end() == -signal.SIGKILL
    committed = [i for w in workers for i in w.committed]
    await wait_until(lambda: all(len(w.committed) == 2500 for w in survivors), 20)
    committed = [i for w in workers for i in w.committed]
    await wait_until(lambda: not missing(sb, committed), 60)
    for w in survivors:
        await w.say("stop")
        assert await w.end() == 0
    stats = [w.stats for w in survivors]
    assert all(s is not None for s in stats)

    assert missing(sb, committed) == []
    dead_committed = sum(len(w.committed) for w in doomed)
    adopted = sum(s["tracked"] for s in stats if s) - 2 * 2500
    assert adopted > 0, "the survivors adopted nothing"
    assert all(s and s["failed"] == s["dropped"] == 0 for s in stats), stats
    rate_limited = sb.count(status=429)
    assert rate_limited == 0, (rate_limited, redis_log(redis_url))

    # The fleet's rate while it had a backlog: events in accepted requests in each whole
    # period from the end of the first (a free burst) until less than a period's worth
    # was left to send (the tail cannot fill a period).
    sent = sorted((r.at, r.events) for r in sb.requests if r.method == "POST" and r.status == 201)
    first, total, done = sent[0][0], sum(n for _, n in sent), 0
    end = first
    for at, n in sent:
        done, end = done + n, at
        if done >= total - CEILING:
            break
    periods = [first + 1 + k for k in range(int(end - (first + 1)))]
    per_period = [sum(n for at, n in sent if t <= at < t + 1) / CEILING for t in periods]
    print(
        f"\nfleet: {len(committed)} committed ({dead_committed} by the 2 killed, "
        f"{adopted} adopted), {len(sb.stored_ids())} stored, {rate_limited} 429s; "
        f"share of the ceiling ({CEILING}/s) in each whole period with a backlog: "
        + ", ".join(f"{r:.1%}" for r in per_period)
        + f" (killed {killed_at - first:.1f} s after the first request)"
    )
    assert len(per_period) >= 3 and min(per_period) >= 0.98, per_period


@pytest.mark.slow
async def test_a_worker_stopped_with_a_backlog_hands_it_off_to_a_later_one(
    redis_url: str, sandbox: Sandbox
) -> None:
    sb, key = sandbox, "sk_test_sigterm_0002"
    outbox = redis_url + "?adopt_after=1"
    sb.faults.error_rate = 1.0  # nothing gets through: a backlog builds up
    first = await Worker.start(sb.url, outbox, key, 500, 2000)
    await first.wait_for("ready")
    await first.say("go")
    await first.wait_for("tracked")
    first.kill(signal.SIGTERM)
    assert await first.end() == 0
    stats = first.stats
    assert stats is not None
    assert stats["handed_off"] == 500 and stats["failed"] == 0, stats
    assert len(first.committed) == 500

    sb.faults.error_rate = 0.0
    later = await Worker.start(sb.url, outbox, key, 0, 1)
    await later.wait_for("ready", 20)  # its first flush delivers what it adopted
    assert missing(sb, first.committed) == []
    await later.say("go")
    await later.say("stop")
    assert await later.end() == 0
    assert later.stats is not None and later.stats["delivered"] == 500


@pytest.mark.slow
async def test_nothing_committed_before_a_redis_restart_is_lost(
    redis_server: RedisServer, sandbox: Sandbox
) -> None:
    sb, key = sandbox, "sk_test_restart_0003"
    outbox = redis_server.url + "?adopt_after=0.6"
    sb.faults.error_rate = 1.0  # the producer delivers nothing: the stream holds it all
    producer = await Worker.start(sb.url, outbox, key, 10**6, 1000)
    await producer.wait_for("ready")
    await producer.say("go")
    await wait_until(lambda: len(producer.committed) >= 500, 20)
    redis_server.stop(kill=True)  # only what reached the append-only file survives
    before = list(producer.committed)
    await asyncio.sleep(0.3)  # the producer goes on: its events wait in memory
    redis_server.start()
    await wait_until(lambda: len(producer.committed) >= len(before) + 500, 20)
    producer.kill()
    await producer.end()
    committed = list(producer.committed)

    sb.faults.error_rate = 0.0
    async with FuulClient(key, base_url=sb.url, config=fast_config(), outbox=outbox) as fuul:
        await wait_until(lambda: not missing(sb, committed), 30)
        assert fuul.stats().tracked >= len(committed)
    assert missing(sb, before) == []
