"""3. Rate-limit efficiency under overload.

The sandbox runs in a child process with the documented limits (100 single requests and
10 batch requests per key per period, counted by the sandbox in a strict sliding window
at arrival) and the period compressed to ``PERIOD`` seconds. The ceiling is then
100 + 10 x 100 = 1,100 events per period.

A producer offers ``OVERLOAD`` x the ceiling, evenly spread, for the whole run. The
sandbox records the arrival time and event count of every request. With ``t0`` the
arrival of the first request, period 0, ``[t0, t0+P)``, is the initial burst that every
limiter gets for free (empty windows); the steady state is periods 1..K, ``[t0+P,
t0+(K+1)P)``, and the figure is the events stored (201) in them divided by ``K x
1,100``. 429s are counted over the whole run.

Two clients, each against its own fresh sandbox:

- **aiofuul**: ``FuulClient`` with ``DEFAULT_LIMITS.scaled(P/60)`` and the default
  linger; ``track()`` each event.
- **naive**: what a user would write: ``aiolimiter.AsyncLimiter(100, P)`` in front of
  one ``aiohttp`` POST per event to ``/events``, 8 concurrent workers, no retries.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import _common as c
import aiohttp
from aiolimiter import AsyncLimiter

from aiofuul import DEFAULT_LIMITS, ClientConfig, FuulClient, User

TITLE = "3. Rate-limit efficiency (sandbox, strict sliding window)"
OVERLOAD = 3.0
CEILING = DEFAULT_LIMITS.single.requests + DEFAULT_LIMITS.batch.requests * 100


async def produce(period: float, until: float, emit: Callable[[int], None]) -> int:
    """Call ``emit(i)`` at ``OVERLOAD`` x the ceiling, evenly in time, until ``until``
    (loop time); returns how many were emitted."""
    loop = asyncio.get_running_loop()
    rate = OVERLOAD * CEILING / period
    start = loop.time()
    sent = 0
    tick = period / 100
    while (now := loop.time()) < until:
        due = int((now - start) * rate)
        while sent < due:
            emit(sent)
            sent += 1
        await asyncio.sleep(tick)
    return sent


async def run_aiofuul(url: str, period: float, duration: float) -> dict[str, Any]:
    config = ClientConfig(limits=DEFAULT_LIMITS.scaled(period / 60.0))
    fuul = FuulClient(c.API_KEY, base_url=url, config=config)
    await fuul.__aenter__()
    user = User(c.EVM_ADDRESS, "evm_address")
    loop = asyncio.get_running_loop()

    def emit(_: int) -> None:
        fuul.track(c.EVENT_NAME, user, args=c.ARGS)

    offered = await produce(period, loop.time() + duration, emit)
    stats = fuul.stats()
    await fuul.aclose(0)  # the backlog is not needed: it is the overload
    return {
        "offered": offered,
        "client_stats": {f: getattr(stats, f) for f in stats.__struct_fields__},
    }


async def run_naive(url: str, period: float, duration: float) -> dict[str, Any]:
    limiter = AsyncLimiter(100, period)
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    headers = {"Authorization": f"Bearer {c.API_KEY}", "Content-Type": "application/json"}
    statuses: dict[int, int] = {}

    def body_of(i: int) -> bytes:
        event = {
            "name": c.EVENT_NAME,
            "user": {"identifier": c.EVM_ADDRESS, "identifier_type": "evm_address"},
            "dedup_id": f"naive-{i}",
            "args": c.ARGS,
        }
        return json.dumps(event).encode()

    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            while True:
                body = await queue.get()
                async with limiter:
                    try:
                        async with session.post(url + "events", data=body, headers=headers) as r:
                            await r.read()
                            statuses[r.status] = statuses.get(r.status, 0) + 1
                    except aiohttp.ClientError:
                        statuses[0] = statuses.get(0, 0) + 1

        workers = [asyncio.create_task(worker()) for _ in range(8)]
        loop = asyncio.get_running_loop()
        offered = await produce(
            period, loop.time() + duration, lambda i: queue.put_nowait(body_of(i))
        )
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return {"offered": offered, "client_statuses": statuses}


def analyse(
    records: list[tuple[str, int, float, int]], period: float, windows: int
) -> dict[str, Any]:
    """Events stored per period after the first request, as fractions of the ceiling."""
    if not records:
        return {"steady_fraction": 0.0, "per_period": [], "status_429": 0, "requests": 0}
    t0 = min(r[2] for r in records)
    per_period = [0] * (windows + 1)
    for _path, status, at, events in records:
        k = int((at - t0) // period)
        if 200 <= status < 300 and 0 <= k <= windows:
            per_period[k] += events
    steady = per_period[1:]
    # The sustained rate, free of where the window edges fall: the time the limiter
    # takes per ceiling's worth of events, from the first request of the first
    # ceiling's worth to that of the last complete one.
    starts: list[float] = []
    stored = 0
    for _path, status, at, events in sorted(records, key=lambda r: r[2]):
        if 200 <= status < 300:
            if stored >= len(starts) * CEILING:
                starts.append(at)
            stored += events
    sustained = None
    if len(starts) >= 3:
        # The last start may begin an incomplete generation: use the ones before it.
        spans = len(starts) - 2
        sustained = spans * period / (starts[-2] - starts[0])
    return {
        "steady_fraction": sum(steady) / (windows * CEILING),
        "sustained_fraction": sustained,
        "generation_starts": [round(t - t0, 4) for t in starts],
        "per_period": per_period,
        "per_period_fraction": [n / CEILING for n in per_period],
        "status_429": sum(1 for r in records if r[1] == 429),
        "requests": len(records),
        "statuses": {str(s): sum(1 for r in records if r[1] == s) for s in {r[1] for r in records}},
    }


def measure(
    client: Callable[[str, float, float], Coroutine[Any, Any, dict[str, Any]]],
    period: float,
    windows: int,
) -> dict[str, Any]:
    # Long enough to cover period 0 and the K steady periods, plus a margin.
    duration = (windows + 1) * period + period / 4
    with c.SandboxProcess(limits=None, time_scale=period / 60.0, record=True) as sb:
        client_side = asyncio.run(client(sb.url, period, duration))
        records = sb.stop()
    return {**analyse(records, period, windows), **client_side}


def run(quick: bool) -> c.Report:
    period = 0.25 if quick else 1.0
    windows = 3 if quick else 6
    report = c.Report("rate_limit", TITLE, quick)
    ours = measure(run_aiofuul, period, windows)
    naive = measure(run_naive, period, windows)
    frac = ours["steady_fraction"]
    report.add(
        "aiofuul: delivered / ceiling (steady state)",
        frac * 100,
        "%",
        ">= 98%",
        frac >= 0.98,
        note=f"{windows} periods of {period:g} s after the initial burst; per period "
        + ", ".join(f"{x * 100:.1f}%" for x in ours["per_period_fraction"])
        + " (the first is the free burst)",
    )
    sustained = ours["sustained_fraction"]
    if sustained is not None:
        report.add(
            "aiofuul: sustained rate / ceiling",
            sustained * 100,
            "%",
            ">= 98%",
            sustained >= 0.98,
            note="P / mean time between successive ceilings' worth (1,100 events) of "
            "requests: the rate free of where the window edges fall",
        )
    report.add("aiofuul: 429 responses", ours["status_429"], "", "0", ours["status_429"] == 0)
    report.add(
        "naive AsyncLimiter(100, P): delivered / ceiling",
        naive["steady_fraction"] * 100,
        "%",
        note="one POST /events per event; per period "
        + ", ".join(f"{x * 100:.1f}%" for x in naive["per_period_fraction"]),
    )
    report.add("naive AsyncLimiter(100, P): 429 responses", naive["status_429"], "")
    report.details = {
        "period_s": period,
        "steady_periods": windows,
        "ceiling_events_per_period": CEILING,
        "offered_x_ceiling": OVERLOAD,
        "aiofuul": ours,
        "naive": naive,
    }
    return report


def main() -> None:
    ns = c.parse_args(__doc__ or "")
    run(ns.quick).finish(ns.out)


if __name__ == "__main__":
    main()
