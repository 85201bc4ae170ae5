"""5. Memory per queued event, with 100,000 events queued.

A client whose sender cannot deliver (its base URL is a loopback port where nothing
listens, and the loop never gets control while the events are tracked) queues 100,000
events; the growth of the process is divided by the number of events. Each
measurement runs in a fresh child process, so freed memory of an earlier run cannot
be reused (which would hide the growth of RSS):

- ``tracemalloc``: bytes allocated by Python and still held after the calls (a full GC
  first), the precise figure;
- ``RSS``: growth of the resident set (``/proc/self/statm``, or psutil), which also
  counts allocator overhead and free space in pymalloc's arenas.

Two payloads:

- **realistic**: every event gets its own user (a fresh ``User`` of a fresh address
  string) and its own args dict, as a call site ``fuul.track("trade", User(addr,
  "evm_address"), args={"pair": pair, "size": size})`` produces; everything the event
  holds counts, since only the queue keeps it alive;
- **client overhead**: one ``User`` and one args dict shared by all events; only what
  aiofuul adds per event counts (the ``Event``, its queue entry, the generated dedup id,
  the timestamp).

The RSS figures are medians over three child processes (tracemalloc's are exact).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import tracemalloc
from typing import Any

import _common as c

from aiofuul import ClientConfig, FuulClient, User

TITLE = "5. Memory per queued event"
BASE = 0x52908400098527886E0F7030069857D2E4169EE7


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return int(psutil.Process().memory_info().rss)


async def child(payload: str, method: str, number: int) -> dict[str, Any]:
    errors = c.watch_logs()
    fuul = FuulClient(c.API_KEY, base_url=c.DEAD_URL, config=ClientConfig(max_queue=10**7))
    await fuul.__aenter__()
    track = fuul.track
    shared_user = User(c.EVM_ADDRESS, "evm_address")
    shared_args = c.ARGS
    # Warm up the code paths (and the loop's first allocations) before the baseline.
    for _ in range(100):
        track("trade", shared_user, args=shared_args)
    tracked = fuul.stats().tracked

    if method == "tracemalloc":
        tracemalloc.start()
    gc.collect()
    before = tracemalloc.get_traced_memory()[0] if method == "tracemalloc" else _rss()
    if payload == "realistic":
        for i in range(number):
            track(
                "trade",
                User(f"0x{BASE + i:040x}", "evm_address"),
                args={"pair": "ETH/USDC", "size": 2.5 + i},
            )
    else:
        for _ in range(number):
            track("trade", shared_user, args=shared_args)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if method == "tracemalloc" else _rss()
    if method == "tracemalloc":
        tracemalloc.stop()
    stats = fuul.stats()
    queued = stats.tracked - tracked
    c.require(
        queued == number and not stats.dropped and not stats.delivered,
        f"expected {number} events queued and nothing sent: {stats}",
    )
    await fuul.aclose(0)  # nothing is sent: the queue is abandoned
    return {
        "bytes_per_event": (after - before) / number,
        "queued": queued,
        "errors": errors.messages,
    }


def run(quick: bool) -> c.Report:
    report = c.Report("memory", TITLE, quick)
    number = 20_000 if quick else 100_000
    # tracemalloc's count is deterministic (the same to the byte run after run) and
    # slow to take; RSS moves with the allocator's arenas: medians over 3 processes.
    repeats = {"tracemalloc": 1, "rss": 1 if quick else 3}
    results: dict[str, list[float]] = {}
    for method in ("tracemalloc", "rss"):
        for _ in range(repeats[method]):
            for payload in ("realistic", "overhead"):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", payload, method, str(number)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                result = json.loads(out.stdout.strip().splitlines()[-1])
                for text, count in result["errors"].items():
                    report.errors.messages[text] = report.errors.messages.get(text, 0) + count
                results.setdefault(f"{payload}/{method}", []).append(result["bytes_per_event"])
    med = {k: c.median(v) for k, v in results.items()}
    tm = med["realistic/tracemalloc"]
    report.add(
        "realistic payload, tracemalloc",
        tm,
        "B/event",
        "<= 500 B",
        tm <= 500,
        note="own User, address string and args dict per event",
    )
    rss = med["realistic/rss"]
    report.add("realistic payload, RSS", rss, "B/event", "<= 500 B", rss <= 500)
    over = med["overhead/tracemalloc"]
    report.add(
        "client overhead only, tracemalloc",
        over,
        "B/event",
        "<= 500 B",
        over <= 500,
        note="user and args shared by all events",
    )
    over_rss = med["overhead/rss"]
    report.add("client overhead only, RSS", over_rss, "B/event", "<= 500 B", over_rss <= 500)
    report.details = {
        "events_queued": number,
        "child_processes_per_figure": repeats,
        "samples_bytes_per_event": results,
        "median_bytes_per_event": med,
    }
    return report


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        payload, method, number = sys.argv[2], sys.argv[3], int(sys.argv[4])
        print(json.dumps(asyncio.run(child(payload, method, number))))
        return
    ns = c.parse_args(__doc__ or "")
    run(ns.quick).finish(ns.out)


if __name__ == "__main__":
    main()
