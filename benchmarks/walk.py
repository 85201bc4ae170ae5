"""Memory of a walk over a long list: ``async for row in fuul.payouts.movements(user)``
holds one page at a time, so what it holds does not grow with the list.

A sandbox in a child process (so that only the client's memory is measured here) holds
N movements of one user, with limits compressed to 100 requests a tenth of a second.
The client walks them in pages of 100, counting rows without keeping them, and
``tracemalloc`` reports the peak of Python allocations during the walk above what was
held before it (the client warmed up by a first page). For contrast, the same list
collected into a Python list (what a walk that holds every page would cost).

Run: ``python benchmarks/walk.py`` (prints a table and the ratios; about 10 s).
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import tracemalloc

from aiofuul import DEFAULT_LIMITS, ClientConfig, FuulClient, User

USER = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")
LIMITS = DEFAULT_LIMITS.scaled(1 / 600)
SIZES = (1_000, 10_000, 50_000)

_CHILD = """
import asyncio, sys
from aiofuul import DEFAULT_LIMITS, User
from aiofuul.wire.models import Event
from aiofuul.sandbox import Sandbox

async def main(n: int) -> None:
    user = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")
    async with Sandbox(limits=DEFAULT_LIMITS.scaled(1 / 600)) as sb:
        sb.state.store_events(
            Event(name="trade", user=user, dedup_id=f"m{i:06d}", args={"amount": i})
            for i in range(n)
        )
        sb.state.catch_up()
        print(sb.url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main(int(sys.argv[1])))
"""


async def measure(url: str, keep: bool) -> tuple[int, int]:
    """(rows, peak bytes above the warmed-up client) of one walk."""
    config = ClientConfig(limits=LIMITS)
    async with FuulClient("bench", base_url=url, config=config) as fuul:
        await fuul.payouts.movements(USER, type="point", page_size=100)  # warm up
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        movements = fuul.payouts.movements(USER, type="point", page_size=100)
        if keep:
            rows = len([m async for m in movements])
        else:
            rows = 0
            async for _ in movements:
                rows += 1
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    return rows, peak


def main() -> None:
    results: dict[tuple[int, bool], int] = {}
    for size in SIZES:
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(size)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert child.stdout is not None
        assert child.stdin is not None
        url = child.stdout.readline().strip()
        try:
            for keep in (False, True):
                rows, peak = asyncio.run(measure(url, keep))
                assert rows == size, (rows, size)
                results[size, keep] = peak
        finally:
            child.stdin.close()
            child.wait(30)
    small = SIZES[0]
    print(f"{'rows':>8} {'walk peak':>12} {'x 1k':>6} {'collected peak':>15} {'x 1k':>6}")
    for size in SIZES:
        walk, kept = results[size, False], results[size, True]
        print(
            f"{size:>8} {walk / 1024:>10.0f}KB {walk / results[small, False]:>6.2f}"
            f" {kept / 1024:>13.0f}KB {kept / results[small, True]:>6.2f}"
        )
    print(
        f"walk of {SIZES[-1]} rows holds {results[SIZES[-1], False] / results[small, False]:.2f}x"
        f" what a walk of {small} holds (flat is 1.0); collecting them holds"
        f" {results[SIZES[-1], True] / results[SIZES[-1], False]:.1f}x the walk's peak"
    )


if __name__ == "__main__":
    main()
