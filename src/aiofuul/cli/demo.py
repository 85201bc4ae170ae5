"""``aiofuul demo``: the client against an in-process sandbox with the real limits
compressed in time, checked against what the sandbox stored."""

from __future__ import annotations

import argparse
import asyncio
import bisect
import hashlib
import itertools
import logging
import time
from dataclasses import dataclass

from ..client import FuulClient
from ..config import ClientConfig
from ..engine.limits import DEFAULT_LIMITS
from ..sandbox import Sandbox
from ..wire.models import MAX_BATCH_EVENTS, User
from ._api_minutes import InApiMinutes
from ._common import EXIT_FAILED, EXIT_OK, CLIError, add_time_scale_argument
from ._output import Progress, bar, fmt_duration

__all__ = ["DESCRIPTION", "HELP", "NAME", "configure", "run"]

#: 20,000 events need 18 windows of 1,100: 27 s with 1.5 s windows.
DEFAULT_TIME_SCALE = 0.025
DEFAULT_EVENTS = 20_000
#: ``--quick``: 3,000 events need 3 windows of 1,100: about 2 s with 1.2 s windows.
QUICK_EVENTS = 3_000
QUICK_TIME_SCALE = 0.02
_POLL = 0.01  # seconds between looks at the sandbox's store (the latency's resolution)
_NAMES = ("trade", "deposit", "swap", "stake")
_USERS = 500
_WINDOWS = 400  # sliding windows sampled for the sustained rate

_DESCRIPTION = f"""\
Start the sandbox (a real HTTP server behaving like the Fuul API) on a free loopback
port with the documented limits (100 requests/min single, 10/min batch of up to 100
events: a ceiling of 1,100 events/min) compressed in time, track --events events from
--producers concurrent tasks through FuulClient.track(), show live progress, and end
with a summary checked against the sandbox's store. No API key or network needed.

Exit 0 when every event was stored exactly once without a single 429; 1 otherwise.
With the defaults it takes about half a minute: --time-scale {DEFAULT_TIME_SCALE:g}
makes one API minute last {60 * DEFAULT_TIME_SCALE:g} s, and 20,000 events need 18 of them.
--quick takes a few seconds: {QUICK_EVENTS:,} events (unless --events is given) with one
API minute lasting {60 * QUICK_TIME_SCALE:g} s (unless --time-scale is given)."""


NAME = "demo"
HELP = "see the client at the rate limit, against an in-process sandbox"
DESCRIPTION = _DESCRIPTION


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``aiofuul demo``."""
    parser.add_argument(
        "--events",
        type=int,
        default=None,
        metavar="N",
        help=f"events to track ({DEFAULT_EVENTS}; {QUICK_EVENTS} with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a run of a few seconds: {QUICK_EVENTS:,} events, 1 API minute = "
        f"{60 * QUICK_TIME_SCALE:g} s",
    )
    parser.add_argument(
        "--producers", type=int, default=8, metavar="N", help="concurrent tracking tasks (8)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="offered load as a fraction of the ceiling (0.9: producers track at 90%% of "
        "1,100 events/min); 0 (default): track everything at once",
    )
    add_time_scale_argument(parser, DEFAULT_TIME_SCALE)
    parser.add_argument("--quiet", "-q", action="store_true", help="no live progress")
    parser.set_defaults(run=run)


def run(ns: argparse.Namespace) -> int:
    """Run the demo; 0 when everything was delivered exactly once without a 429."""
    if ns.events is None:
        ns.events = QUICK_EVENTS if ns.quick else DEFAULT_EVENTS
    if ns.quick and ns.time_scale == DEFAULT_TIME_SCALE:  # not given: the quick one
        ns.time_scale = QUICK_TIME_SCALE
    if ns.events < 1 or ns.producers < 1 or ns.rate < 0:
        raise CLIError("--events and --producers must be at least 1, --rate at least 0")
    return asyncio.run(_Demo(ns).run())


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


@dataclass
class _Result:
    lost: int
    stored_twice: int
    sent_twice: int
    rate_limited: int


class _Demo:
    def __init__(self, ns: argparse.Namespace):
        self.n: int = ns.events
        self.producers: int = ns.producers
        self.offered: float = ns.rate
        self.scale: float = ns.time_scale
        self.minute = 60.0 * self.scale  # one API minute, in seconds
        self.limits = DEFAULT_LIMITS.scaled(self.scale)
        self.ceiling = (
            self.limits.events_per_second(MAX_BATCH_EVENTS) * self.minute
        )  # events per API minute
        self.progress = Progress(ns.quiet, interval=2.0)
        self.tracked_at = [0.0] * self.n
        self.stored_at = [0.0] * self.n
        self.seen = 0
        self.requests_seen = 0
        self.accepted: list[tuple[float, int]] = []  # (arrival, events) of 2xx requests
        self.users = [
            User("0x" + hashlib.sha256(b"user%d" % i).hexdigest()[:40], "evm_address")
            for i in range(_USERS)
        ]

    # -- the load ---------------------------------------------------------------------
    async def _produce(self, fuul: FuulClient, k: int, t0: float) -> None:
        per_second = self.offered * self.ceiling / self.minute
        for i in range(k, self.n, self.producers):
            if per_second:
                delay = t0 + i / per_second - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif i % 1000 < self.producers:
                await asyncio.sleep(0)  # let the sender and the progress line run
            self.tracked_at[i] = time.monotonic()
            fuul.track(
                _NAMES[i % len(_NAMES)],
                self.users[i % _USERS],
                dedup_id=f"demo-{i:07d}",
                args={"size": (i % 97) / 4, "chain_id": 1},
            )

    # -- watching the store -------------------------------------------------------------
    def _observe(self, sb: Sandbox) -> None:
        """Note when each event appeared in the sandbox's store (polled: each time is
        late by up to one poll interval, more when the loop was busy), and the arrival
        time and size of each request the sandbox accepted (its own clock: exact)."""
        now = time.monotonic()
        events = sb.events
        for event in events[self.seen :]:
            self.stored_at[int(event.dedup_id[5:])] = now
        self.seen = len(events)
        requests = sb.requests
        for request in requests[self.requests_seen :]:
            if 200 <= request.status < 300:
                self.accepted.append((request.at, request.events))
        self.requests_seen = len(requests)

    def _last_minute(self, now: float) -> int:
        """Events in the requests the sandbox accepted in the last API minute: what the
        limits cap at the ceiling."""
        since = now - self.minute
        return sum(n for at, n in self.accepted if at > since)

    def _show(self, fuul: FuulClient, sb: Sandbox, t0: float, force: bool = False) -> None:
        st = fuul.stats()
        self.progress.update(
            f"demo {bar(st.delivered / self.n, 20)} {st.delivered:,}/{self.n:,} delivered | "
            f"{st.queued:,} queued | requests {st.requests_single:,} single "
            f"{st.requests_batch:,} batch | 429s {sb.count(status=429)} | "
            f"{self._last_minute(time.monotonic()):,}/{self.ceiling:,.0f} events in the last "
            f"minute | {fmt_duration(time.monotonic() - t0)}",
            force,
        )

    async def _watch(self, fuul: FuulClient, sb: Sandbox, t0: float) -> None:
        shown = 0.0
        while True:
            self._observe(sb)
            if time.monotonic() - shown >= 0.25:
                self._show(fuul, sb, t0)
                shown = time.monotonic()
            await asyncio.sleep(_POLL)

    # -- the run ------------------------------------------------------------------------------
    async def run(self) -> int:
        config = ClientConfig(limits=self.limits, max_queue=max(self.n, 100_000), close_timeout=2)
        minutes = InApiMinutes(self.scale)
        logging.getLogger("aiofuul").addFilter(minutes)
        try:
            return await self._run(config)
        finally:
            logging.getLogger("aiofuul").removeFilter(minutes)

    async def _run(self, config: ClientConfig) -> int:
        async with (
            Sandbox(limits=self.limits) as sb,
            FuulClient("demo-key", base_url=sb.url, config=config) as fuul,
        ):
            if not self.progress.quiet:
                self.progress.message(
                    f"aiofuul demo: sandbox at {sb.url}; {self.n:,} events from {self.producers} "
                    f"producers; 1 API minute = {self.minute:g} s (--time-scale {self.scale:g})"
                )
            t0 = time.monotonic()
            watcher = asyncio.ensure_future(self._watch(fuul, sb, t0))
            try:
                await asyncio.gather(*(self._produce(fuul, k, t0) for k in range(self.producers)))
                # Generous: twice the ideal time at the ceiling, plus slack.
                await fuul.flush(2 * self.n / self.ceiling * self.minute + 30)
                self._observe(sb)
                self._show(fuul, sb, t0, force=True)
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
                self.progress.done()
            wall = time.monotonic() - t0
            result = self._check(sb)
            self._summary(fuul, result, wall)
        bad = result.lost or result.stored_twice or result.sent_twice or result.rate_limited
        return EXIT_FAILED if bad else EXIT_OK

    def _check(self, sb: Sandbox) -> _Result:
        """Exactly once, by the sandbox's store: every tracked id stored, none twice,
        and none even received twice (a resend the server's dedup had to catch)."""
        stored = sb.stored_ids()
        unique = set(stored)
        ids = [f"demo-{i:07d}" for i in range(self.n)]
        return _Result(
            lost=sum(1 for d in ids if d not in unique),
            stored_twice=len(stored) - len(unique),
            sent_twice=sum(1 for d in ids if sb.seen_count(d) > 1),
            rate_limited=sb.count(status=429),
        )

    def _sustained(self) -> float | None:
        """Mean events accepted per sliding API minute (by the sandbox's arrival times),
        over the windows that fit in the run; None if the run was shorter than one."""
        # Recorded when answered, so only nearly in arrival order.
        accepted = sorted(self.accepted)
        if not accepted:
            return None
        times = [at for at, _ in accepted]
        totals = list(itertools.accumulate((n for _, n in accepted), initial=0))
        first, last = times[0], times[-1] - self.minute
        if last <= first:
            return None
        counts = []
        for k in range(_WINDOWS + 1):
            start = first + (last - first) * k / _WINDOWS
            lo = bisect.bisect_left(times, start)
            hi = bisect.bisect_left(times, start + self.minute)
            counts.append(totals[hi] - totals[lo])
        return sum(counts) / len(counts)

    def _summary(self, fuul: FuulClient, r: _Result, wall: float) -> None:
        st = fuul.stats()
        latencies = sorted(s - t for s, t in zip(self.stored_at, self.tracked_at, strict=True) if s)
        p50, p99 = _quantile(latencies, 0.5), _quantile(latencies, 0.99)
        full = 1 / self.scale  # seconds at full scale per second here
        sustained = self._sustained()
        if sustained is None:
            rate = "n/a (the run was shorter than one API minute: use more --events)"
        else:
            rate = (
                f"{sustained:,.0f}/min, {sustained / self.ceiling:.1%} of the "
                f"{self.ceiling:,.0f}/min ceiling (mean over sliding 1-minute windows, by request arrival at the sandbox)"
            )
        load = (
            "every event was tracked at once, so this is mostly time queued behind the others"
            if not self.offered
            else f"producers tracked at {self.offered:.0%} of the ceiling"
        )
        rows = [
            (
                "delivered exactly once",
                f"{self.n - r.lost:,} of {self.n:,} (checked against the sandbox's store)",
            ),
            ("lost", f"{r.lost:,}"),
            ("duplicated", f"{r.stored_twice + r.sent_twice:,} (stored twice, or received twice)"),
            ("requests, single lane", f"{st.requests_single:,}"),
            (
                "requests, batch lane",
                f"{st.requests_batch:,} (mean {st.mean_batch_size:.1f} events per batch)",
            ),
            ("429 responses", f"{r.rate_limited:,}"),
            ("sustained rate", rate),
            (
                "latency, track to stored",
                f"p50 {fmt_duration(p50)}, p99 {fmt_duration(p99)} "
                f"(at full scale: {fmt_duration(p50 * full)}, {fmt_duration(p99 * full)}); {load}",
            ),
            ("wall time", fmt_duration(wall)),
        ]
        self._print(rows, r)

    def _print(self, rows: list[tuple[str, str]], r: _Result) -> None:
        limits = self.limits
        print(
            f"\naiofuul demo: {self.n:,} events, {self.producers} producers, limits "
            f"{limits.single.requests}/min single + {limits.batch.requests}/min batch of "
            f"{MAX_BATCH_EVENTS} = {self.ceiling:,.0f} events/min; 1 min = {self.minute:g} s\n"
        )
        width = max(len(label) for label, _ in rows)
        for label, value in rows:
            print(f"  {label:<{width}}  {value}")
        problems = r.lost + r.stored_twice + r.sent_twice + r.rate_limited
        if problems:
            print(
                f"\nFAILED: {r.lost:,} lost, {r.stored_twice + r.sent_twice:,} duplicated, {r.rate_limited:,} 429s"
            )
        else:
            print("\nOK: every event stored exactly once, and not a single 429")
