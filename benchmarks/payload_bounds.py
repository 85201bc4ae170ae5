"""10. Large payloads and the event loop: how long the loop is held by the largest
payloads the client takes, and by one it refuses.

A probe task sleeps 1 ms again and again on the client's loop and records how late it
wakes, and how much CPU the thread spent meanwhile: the lateness the thread spent
working (the lesser of the two) is how long something held the loop; the rest is the
machine's noise (another process had the core), shown beside it, with an idle loop's
as the floor. Each figure is the median over rounds of the round's longest hold; the
bar is 50 ms. Measured, side by side in one run:

- ``track()`` with ``args`` the client must walk in full, at the caps (64 KiB, 10,000
  values), shaped to make the walk as slow as it gets (tiny list items, tiny entries);
- ``track()`` with a list of 1,000,000 ints (refused: it cannot fit; before, it was
  walked for about 440 ms and queued);
- a client delivering 500 of the largest events a ``track()`` takes (80 KiB encoded
  each, so 5 batches of about 6.6 MB) to a sandbox in another process: the batch
  building, encoding and sending, with no 413 (a batch can never exceed the server's
  8 MiB cap; before, 100 MB of batches held the loop 840 ms and were refused).

    python benchmarks/payload_bounds.py [--quick]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import _common as c

from aiofuul import DEFAULT_LIMITS, ClientConfig, FuulClient, User, ValidationError
from aiofuul.wire.models import MAX_BATCH_EVENTS, MAX_REQUEST_BYTES
from aiofuul.wire.payload import MAX_ARGS_BYTES, MAX_ITEMS, check_args

TITLE = "10. Large payloads: longest loop hold"
BAR_MS = 50.0
USER = User(c.EVM_ADDRESS, "evm_address")


class LagProbe:
    """Sleeps ``interval`` on the loop, again and again, keeping the worst lateness
    (``worst``, wall clock) and the worst lateness the thread spent on the CPU
    (``worst_held``: the loop was busy, not the machine)."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.worst = self.worst_held = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            start, cpu = time.perf_counter(), time.thread_time()
            await asyncio.sleep(self.interval)
            late = time.perf_counter() - start - self.interval
            held = min(late, time.thread_time() - cpu)
            self.worst = max(self.worst, late)
            self.worst_held = max(self.worst_held, held)

    async def __aenter__(self) -> LagProbe:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0.01)  # running, and its first wakes behind it
        self.worst = self.worst_held = 0.0
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.sleep(0.01)  # one more wake, to see a hold that just ended
        assert self._task is not None
        self._task.cancel()


def _accepted(args: dict[str, Any]) -> bool:
    try:
        check_args(args)
    except ValidationError:
        return False
    return True


def _fill(make: Callable[[int], Any]) -> dict[str, Any]:
    """``{"xs": make(n)}`` with the largest ``n`` that validation still accepts (within
    MAX_ARGS_BYTES and MAX_ITEMS)."""
    lo, hi = 1, MAX_ARGS_BYTES
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _accepted({"xs": make(mid)}):
            lo = mid
        else:
            hi = mid - 1
    return {"xs": make(lo)}


#: ``args`` at the cap whose walk is as slow as it gets: many tiny items.
WORST_ARGS: dict[str, Callable[[], dict[str, Any]]] = {
    "list of ints (0)": lambda: _fill(lambda n: [0] * n),
    "list of empty strings": lambda: _fill(lambda n: [""] * n),
    "list of empty lists": lambda: _fill(lambda n: [[] for _ in range(n)]),
    "dict of tiny entries": lambda: _fill(lambda n: {f"{i:x}": 0 for i in range(n)}),
}


def _add(report: c.Report, metric: str, holds: list[float], walls: list[float], note: str) -> None:
    hold, wall = c.median(holds) * 1e3, c.median(walls) * 1e3
    report.add(metric, hold, "ms", f"<= {BAR_MS:g} ms", hold <= BAR_MS,
               note=f"{note}; wall-clock lateness {wall:.1f} ms")  # fmt: skip
    report.details[metric] = {
        "held_ms": [h * 1e3 for h in holds],
        "late_ms": [w * 1e3 for w in walls],
    }


async def _hold(
    fuul: FuulClient, args: dict[str, Any] | None, rounds: int
) -> tuple[list[float], list[float], str]:
    """The longest loop hold of ``track(args=args)`` in each round, and what it did
    (None: no call at all, the floor)."""
    holds, walls, outcome = [], [], "no call: the floor"
    for _ in range(rounds):
        async with LagProbe() as probe:
            await asyncio.sleep(0.005)
            if args is not None:
                try:
                    fuul.track(c.EVENT_NAME, USER, args=args)
                    outcome = "accepted"
                except ValidationError as exc:
                    outcome = f"refused: {exc.rule[:60]}..."
            await asyncio.sleep(0.005)
        holds.append(probe.worst_held)
        walls.append(probe.worst)
    return holds, walls, outcome


async def _walks(report: c.Report, rounds: int) -> None:
    config = ClientConfig(max_queue=1_000_000)
    async with FuulClient(c.API_KEY, base_url=c.DEAD_URL, config=config) as fuul:
        cases: dict[str, dict[str, Any] | None] = {"idle loop (floor)": None}
        cases.update({f"track() args at the cap: {k}": make() for k, make in WORST_ARGS.items()})
        cases["track() args of 1,000,000 ints"] = {"xs": list(range(1_000_000))}
        for label, args in cases.items():
            _add(report, label, *await _hold(fuul, args, rounds))
        await fuul.aclose(0)


async def _delivery(report: c.Report, events: int, rounds: int) -> None:
    args = _fill(lambda n: "x" * n)
    holds, walls, requests, elapsed = [], [], [], 0.0
    with c.SandboxProcess(record=True) as sandbox:
        # The documented limits, one minute compressed to a second: full batches.
        limits = DEFAULT_LIMITS.scaled(1 / 60)
        config = ClientConfig(limits=limits, check_identifier_format=False, linger=0.01)
        async with FuulClient(c.API_KEY, base_url=sandbox.url, config=config) as fuul:
            for r in range(rounds):
                async with LagProbe() as probe:
                    start = time.perf_counter()
                    for i in range(events):
                        fuul.track(c.EVENT_NAME, USER, dedup_id=f"{r}-{i:0>190}", args=args)
                        if i % 20 == 19:
                            await asyncio.sleep(0)  # an app tracking in a stream, not a burst
                    c.require(await fuul.flush(120), "not delivered within 120 s")
                    elapsed += time.perf_counter() - start
                holds.append(probe.worst_held)
                walls.append(probe.worst)
            stats = fuul.stats()
        requests = sandbox.stop()
    full = sum(1 for r in requests if r[3] == MAX_BATCH_EVENTS)
    c.require(stats.delivered == events * rounds, f"delivered {stats.delivered}")
    too_large = sum(1 for r in requests if r[1] == 413)
    largest = max(r[3] for r in requests)
    _add(report, f"deliver {events} events of 80 KiB, {rounds} rounds", holds, walls,
         f"{elapsed / rounds:.2f} s a round; {len(requests)} requests, {full} of them full "
         f"batches of {MAX_BATCH_EVENTS} (the largest: {largest})")  # fmt: skip
    report.add("requests answered 413", too_large, "", "0", too_large == 0)
    report.details["delivery"] = {
        "events": events * rounds,
        "requests": len(requests),
        "batch_sizes": sorted({r[3] for r in requests}),
        "max_request_bytes": MAX_REQUEST_BYTES,
        "seconds": elapsed,
    }


def run(quick: bool) -> c.Report:
    report = c.Report("payload_bounds", TITLE, quick)
    asyncio.run(_walks(report, 3 if quick else 9))
    asyncio.run(_delivery(report, 200 if quick else 500, 3 if quick else 5))
    report.details["bar_ms"] = BAR_MS
    report.details["max_args_bytes"] = MAX_ARGS_BYTES
    report.details["max_items"] = MAX_ITEMS
    return report


def main() -> None:
    ns = c.parse_args(__doc__ or "")
    run(ns.quick).finish(ns.out)


if __name__ == "__main__":
    main()
