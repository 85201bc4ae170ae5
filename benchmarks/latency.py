"""6. Latency from ``track()`` to the sandbox's 201, under light load.

The sandbox runs in a child process with every limit lifted (so no limiter delays
anything and what is measured is the client's own delay), and records each request's
arrival (``time.monotonic()``, one clock for all processes on Linux).

Two streams, each one event every ``SPACING`` seconds, interleaved (one tick of
``SPACING / 2`` for each in turn) over the same seconds:

- **aiofuul**: ``fuul.track()`` with the default config (the sender sends light traffic
  at once, one ``POST /events`` per event); latency = time the 201 for that event was
  read by the client (the transport's response returning) minus the time of the
  ``track()`` call;
- **bare**: the same body (``encode_event`` of the same event shape) POSTed with a plain
  ``aiohttp`` keep-alive session; latency = response read minus call.

Also shown: the one-way part, sandbox arrival minus the call, for both. Figures are
p50 and p99 over all events of each stream.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import _common as c
import aiohttp
import msgspec

from aiofuul import ClientConfig, Event, FuulClient, Limits, RateLimit, User
from aiofuul.wire.models import encode_event

TITLE = "6. Latency track() -> 201, light load"
SPACING = 0.020
LIFTED = Limits(single=RateLimit(10**9, 1), batch=RateLimit(10**9, 1), status=RateLimit(10**9, 1))


class _Ids(msgspec.Struct):
    dedup_id: str


_decode_id = msgspec.json.Decoder(_Ids).decode


async def measure(url: str, number: int) -> dict[str, Any]:
    user = User(c.EVM_ADDRESS, "evm_address")
    tracked: dict[str, float] = {}  # dedup id -> monotonic time of track()
    answered: dict[str, float] = {}  # dedup id -> monotonic time its 201 was read
    bare_sent: dict[str, float] = {}
    bare_answered: dict[str, float] = {}

    fuul = FuulClient(c.API_KEY, base_url=url, config=ClientConfig(limits=LIFTED))
    transport = fuul._transport
    request = transport.request

    async def timed_request(method: str, path: str, **kwargs: Any) -> Any:
        # Record when each response is back in the client, by the dedup id it carried.
        response = await request(method, path, **kwargs)
        now = time.monotonic()
        body = kwargs.get("body")
        if body is not None and path == "events" and response.status == 201:
            answered[_decode_id(body).dedup_id] = now
        return response

    transport.request = timed_request  # type: ignore[method-assign]
    headers = {"Authorization": f"Bearer {c.API_KEY}", "Content-Type": "application/json"}

    async def bare(session: aiohttp.ClientSession, dedup_id: str) -> None:
        body = encode_event(Event(c.EVENT_NAME, user, dedup_id, c.ARGS, int(time.time() * 1000)))
        sent = time.monotonic()
        async with session.post(url + "events", data=body, headers=headers) as r:
            await r.read()
            if r.status == 201:
                bare_answered[dedup_id] = time.monotonic()
        bare_sent[dedup_id] = sent

    async with fuul, aiohttp.ClientSession() as session:
        # Warm-up: open both keep-alive connections.
        fuul.track(c.EVENT_NAME, user, args=c.ARGS, dedup_id="warm-fuul")
        await bare(session, "warm-bare")
        await fuul.flush()
        tracked.clear()
        answered.clear()
        bare_sent.clear()
        bare_answered.clear()

        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []
        start = loop.time()
        for i in range(2 * number):
            await asyncio.sleep(max(0.0, start + i * SPACING / 2 - loop.time()))
            if i % 2 == 0:
                t = time.monotonic()
                tracked[fuul.track(c.EVENT_NAME, user, args=c.ARGS)] = t
            else:
                tasks.append(asyncio.create_task(bare(session, f"bare-{i}")))
        await asyncio.gather(*tasks)
        await fuul.flush(timeout=30)
        stats = fuul.stats()
    return {
        "tracked": tracked,
        "answered": answered,
        "bare_sent": bare_sent,
        "bare_answered": bare_answered,
        "stats": {f: getattr(stats, f) for f in stats.__struct_fields__},
    }


def run(quick: bool) -> c.Report:
    number = 50 if quick else 300
    report = c.Report("latency", TITLE, quick)
    with c.SandboxProcess(limits=(c.LIFTED, c.LIFTED, c.LIFTED), record=True) as sb:
        data = asyncio.run(measure(sb.url, number))
        records = sb.stop()
    tracked, answered = data["tracked"], data["answered"]
    bare_sent, bare_answered = data["bare_sent"], data["bare_answered"]
    if len(answered) != len(tracked) or len(bare_answered) != len(bare_sent):
        raise RuntimeError(
            f"missing answers: aiofuul {len(answered)}/{len(tracked)}, "
            f"bare {len(bare_answered)}/{len(bare_sent)}"
        )
    ms = 1000.0
    rtt_fuul = [(answered[k] - t) * ms for k, t in tracked.items()]
    rtt_bare = [(bare_answered[k] - t) * ms for k, t in bare_sent.items()]
    # One-way: the sandbox's arrival times, matched to the streams by order (each
    # stream's requests arrive in the order they were made: one at a time, 20 ms apart).
    first = min(min(tracked.values()), min(bare_sent.values()))
    arrivals = sorted(r[2] for r in records if r[0].endswith("/events") and r[2] >= first)
    calls = sorted([(t, True) for t in tracked.values()] + [(t, False) for t in bare_sent.values()])
    one_fuul: list[float] = []
    one_bare: list[float] = []
    # Each call's request is the first arrival after it not yet claimed by a call.
    j = 0
    for t, is_fuul in calls:
        while j < len(arrivals) and arrivals[j] < t:
            j += 1
        if j < len(arrivals):
            (one_fuul if is_fuul else one_bare).append((arrivals[j] - t) * ms)
            j += 1

    p = c.percentile
    report.add("aiofuul track() -> 201 read, p50", p(rtt_fuul, 50), "ms")
    report.add("aiofuul track() -> 201 read, p99", p(rtt_fuul, 99), "ms")
    report.add("bare aiohttp POST round trip, p50", p(rtt_bare, 50), "ms")
    report.add("bare aiohttp POST round trip, p99", p(rtt_bare, 99), "ms")
    diff99 = p(rtt_fuul, 99) - p(rtt_bare, 99)
    report.add("p99 difference (aiofuul - bare)", diff99, "ms", "<= 5 ms", diff99 <= 5.0)
    report.add("p50 difference (aiofuul - bare)", p(rtt_fuul, 50) - p(rtt_bare, 50), "ms")
    report.add(
        "one way, call -> sandbox arrival, p50 aiofuul / bare",
        f"{p(one_fuul, 50):.2f} / {p(one_bare, 50):.2f} ms",
    )
    report.details = {
        "events_per_stream": number,
        "spacing_s": SPACING,
        "rtt_ms": {"aiofuul": rtt_fuul, "bare": rtt_bare},
        "one_way_ms": {"aiofuul": one_fuul, "bare": one_bare},
        "percentiles_ms": {
            name: {q: p(v, q) for q in (50, 90, 99, 100)}
            for name, v in (("aiofuul", rtt_fuul), ("bare", rtt_bare))
        },
        "client_stats": data["stats"],
    }
    return report


def main() -> None:
    ns = c.parse_args(__doc__ or "")
    run(ns.quick).finish(ns.out)


if __name__ == "__main__":
    main()
