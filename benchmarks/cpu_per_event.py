"""4. Client CPU per delivered event, at full batches.

The sandbox runs in another process (``python -m aiofuul.sandbox`` with every limit
lifted to 10**9 requests a second), so that its CPU is not the client's. The client's
limits are lifted the same way. Each round tracks N events in a tight loop (the sender
cannot run until the loop gets control, so all N are queued first), then ``await
fuul.flush()`` delivers them: N / 100 full batch requests, 8 in flight (the default).

Measured in the client process (``time.process_time``, all its threads): CPU
microseconds per delivered event, split into the ``track()`` part and the sending part
(encoding, HTTP, bookkeeping), and events per second (wall clock, track + flush). The
sandbox's own CPU per event is shown for scale, and so is a floor: the same batch
requests (bodies encoded beforehand) sent with plain ``aiohttp``, same concurrency,
interleaved with aiofuul's rounds. The goal is a ratio: aiofuul's whole CPU per event
(track and send) at most twice the floor's, each round's ratio taken in that round. A warm-up round (connections opened,
code paths warm) precedes the measured rounds; figures are medians over rounds.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import _common as c
import aiohttp

from aiofuul import ClientConfig, Event, FuulClient, Limits, RateLimit, User
from aiofuul.wire.models import encode_batch

TITLE = "4. Client CPU per delivered event (full batches)"
LIFTED = Limits(single=RateLimit(10**9, 1), batch=RateLimit(10**9, 1), status=RateLimit(10**9, 1))


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


async def bare_round(
    session: aiohttp.ClientSession, url: str, bodies: list[bytes], concurrency: int
) -> tuple[float, float]:
    """POST pre-encoded batch bodies with plain aiohttp, ``concurrency`` at a time;
    returns (CPU seconds, wall seconds)."""
    headers = {"Authorization": f"Bearer {c.API_KEY}", "Content-Type": "application/json"}
    todo = iter(bodies)

    async def worker() -> None:
        for body in todo:
            async with session.post(url + "events/batch", data=body, headers=headers) as r:
                await r.read()
                if r.status != 201:
                    raise RuntimeError(f"bare POST: HTTP {r.status}")

    wall0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - cpu0, time.perf_counter() - wall0


def batch_bodies(number: int, tag: str) -> list[bytes]:
    user = User(c.EVM_ADDRESS, "evm_address")
    events = [
        Event(c.EVENT_NAME, user, f"{tag}-{i}", c.ARGS, 1_700_000_000_000 + i)
        for i in range(number)
    ]
    return [encode_batch(events[i : i + 100]) for i in range(0, number, 100)]


async def measure(url: str, server_pid: int, number: int, rounds: int) -> list[dict[str, Any]]:
    config = ClientConfig(limits=LIFTED, max_queue=10 * number)
    user = User(c.EVM_ADDRESS, "evm_address")
    name, args = c.EVENT_NAME, c.ARGS
    out: list[dict[str, Any]] = []
    async with (
        FuulClient(c.API_KEY, base_url=url, config=config) as fuul,
        aiohttp.ClientSession() as session,
    ):
        track = fuul.track
        for r in range(rounds + 1):  # round 0 is the warm-up
            before = fuul.stats()
            server0 = _cpu_of(server_pid)
            wall0, cpu0 = time.perf_counter(), time.process_time()
            for _ in range(number):
                track(name, user, args=args)
            wall1, cpu1 = time.perf_counter(), time.process_time()
            done = await fuul.flush(timeout=120)
            wall2, cpu2 = time.perf_counter(), time.process_time()
            server1 = _cpu_of(server_pid)
            after = fuul.stats()
            delivered = after.delivered - before.delivered
            batches = after.requests_batch - before.requests_batch
            singles = after.requests_single - before.requests_single
            if not done or delivered != number:
                raise RuntimeError(f"round {r}: delivered {delivered} of {number}: {after}")
            # The same requests with plain aiohttp, bodies encoded beforehand: the floor.
            bodies = batch_bodies(number, f"bare{r}")
            bare_cpu, bare_wall = await bare_round(session, url, bodies, config.max_in_flight)
            if r == 0:
                continue
            out.append(
                {
                    "track_us": (cpu1 - cpu0) / number * 1e6,
                    "send_us": (cpu2 - cpu1) / number * 1e6,
                    "total_us": (cpu2 - cpu0) / number * 1e6,
                    "events_per_s": number / (wall2 - wall0),
                    "send_events_per_s": number / (wall2 - wall1),
                    "server_us": (server1 - server0) / number * 1e6,
                    "bare_us": bare_cpu / number * 1e6,
                    # Paired in the round, so a noisy neighbour moves both sides.
                    "ratio": (cpu2 - cpu0) / bare_cpu,
                    "bare_events_per_s": number / bare_wall,
                    "batch_requests": batches,
                    "single_requests": singles,
                    "mean_batch": delivered / batches if batches else 0.0,
                }
            )
    return out


def run(quick: bool) -> c.Report:
    number = 10_000 if quick else 100_000
    rounds = 2 if quick else 5
    report = c.Report("cpu_per_event", TITLE, quick)
    with c.SandboxProcess(limits=(c.LIFTED, c.LIFTED, c.LIFTED)) as sb:
        samples = asyncio.run(measure(sb.url, sb.pid, number, rounds))
    med = {k: c.median([s[k] for s in samples]) for k in samples[0]}
    total, ratio = med["total_us"], med["ratio"]
    report.add(
        "client CPU per delivered event",
        total,
        "us",
        note=f"track() {c.fmt(med['track_us'], 'us')} + sending "
        f"{c.fmt(med['send_us'], 'us')} (medians of the parts)",
    )
    report.add("of which track()", med["track_us"], "us")
    report.add("of which sending (encode, HTTP, bookkeeping)", med["send_us"], "us")
    report.add(
        "floor: plain aiohttp POSTs of the same bodies",
        med["bare_us"],
        "us",
        note="pre-encoded 100-event bodies, same concurrency, no queue, no limiter: "
        "what the HTTP client alone costs per event",
    )
    report.add(
        "aiofuul (track + send) / plain aiohttp",
        ratio,
        "x",
        "<= 2x",
        ratio <= 2.0,
        note="median of each round's ratio; the absolute figures move with the machine's "
        "load, the ratio much less",
    )
    report.add(
        "aiofuul sending above that floor",
        med["send_us"] - med["bare_us"],
        "us",
        note="encoding, scheduling, limiter and bookkeeping",
    )
    report.add("events per second (track + flush)", med["events_per_s"], "events/s")
    report.add(
        "sandbox CPU per event (other process)",
        med["server_us"],
        "us",
        note="for scale: parsing, validating and storing on the server side",
    )
    report.add("mean batch size", med["mean_batch"], "events")
    report.details = {
        "events_per_round": number,
        "rounds": rounds,
        "samples": samples,
        "medians": med,
        "timing": "time.process_time() of the client process; wall clock for events/s",
    }
    return report


def main() -> None:
    ns = c.parse_args(__doc__ or "")
    run(ns.quick).finish(ns.out)


if __name__ == "__main__":
    main()
