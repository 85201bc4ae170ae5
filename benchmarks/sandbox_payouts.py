"""What the sandbox's payouts cost a load test: FuulState makes them lazily, so a send
does no payout work; with webhooks on, the sender catches the state up off the request
path, a moment after the sends.

Two measurements, each side by side in one run, rounds interleaved:

1. The request path: batches of 100 events POSTed one after the other to a sandbox
   with webhooks off, to one with webhooks on (POSTing to a receiver in a child
   process that answers 200 at once), and to one with webhooks on whose pipeline fails
   (the sender follows the state, nothing is paid or POSTed). Median milliseconds per
   batch request; with webhooks on, also the time until every webhook was delivered
   after the last send.
2. The catch-up itself: microseconds per stored event for ``sb.state.catch_up()``
   (every event paying its user and a referrer: two payouts), without a listener and
   with the webhook sender's (render, encode, schedule a POST).

Run: ``python benchmarks/sandbox_payouts.py`` (about 10 s; ``--quick``: 2 s).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import statistics
import subprocess
import sys
import time

import aiohttp
import msgspec

from aiofuul import Limits, RateLimit, User
from aiofuul.sandbox import Sandbox, WebhookRetry
from aiofuul.wire.models import Event

USERS = [User(f"0x{n:040x}", "evm_address") for n in range(1, 101)]
REFERRER = User("0x" + "f" * 40, "evm_address")
LIMITS = Limits(batch=RateLimit(10**6, 1.0))  # no 429 at any pace
RETRY = WebhookRetry(initial_backoff=0.01, max_backoff=0.05)


def _batch(prefix: str, n: int) -> bytes:
    events = [
        {"name": "trade", "user": {"identifier": USERS[i % 100].identifier,
                                   "identifier_type": "evm_address"},
         "dedup_id": f"{prefix}-{i}", "args": {"amount": i % 7 + 1}}
        for i in range(n)
    ]  # fmt: skip
    return msgspec.json.encode(events)


# The receiver runs in a child process, so that its work does not count as the sandbox's.
_RECEIVER = """
import asyncio, sys
from aiohttp import web

async def main() -> None:
    count = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal count
        await request.read()
        count += 1
        return web.Response(status=200)

    async def seen(request: web.Request) -> web.Response:
        return web.Response(text=str(count))

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/count", seen)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


class _Receiver:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _RECEIVER], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{port}/hook"

    async def count(self) -> int:
        async with (
            aiohttp.ClientSession() as http,
            http.get(self.url.replace("/hook", "/count")) as response,
        ):
            return int(await response.text())

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


async def _sends(sb: Sandbox, batches: int, tag: str) -> list[float]:
    for user in USERS[::2]:
        sb.state.set_referrer(user, REFERRER)
    times = []
    headers = {"Authorization": "Bearer bench", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for b in range(batches):
            body = _batch(f"{tag}-{b}", 100)
            start = time.perf_counter()
            async with http.post(sb.url + "events/batch", data=body) as response:
                await response.read()
                assert response.status == 201, response.status
            times.append(time.perf_counter() - start)
    return times


async def request_path(rounds: int, batches: int) -> None:
    rx = _Receiver()
    url = rx.url
    off: list[float] = []
    on: list[float] = []
    unpaid: list[float] = []
    drains: list[float] = []
    for r in range(rounds):
        async with Sandbox(limits=LIMITS) as sb:
            off += await _sends(sb, batches, f"off{r}")
            await asyncio.sleep(0.02)
            assert sb.state.payouts == []  # nobody read: nothing was paid
        async with Sandbox(limits=LIMITS, webhook_url=url, webhook_retry=RETRY) as sb:
            before = await rx.count()
            on += await _sends(sb, batches, f"on{r}")
            start = time.perf_counter()
            assert sb.webhooks is not None
            await sb.webhooks.join()
            drains.append(time.perf_counter() - start)
            delivered = await rx.count() - before
            assert delivered == sb.webhooks.delivered == len(sb.state.payouts)
        async with Sandbox(limits=LIMITS, webhook_url=url, webhook_retry=RETRY) as sb:
            sb.pipeline_status = "failed"  # the sender follows the state, nothing is POSTed
            unpaid += await _sends(sb, batches, f"unpaid{r}")
            assert sb.webhooks is not None
            await sb.webhooks.join()
            assert sb.webhooks.attempts == []
    rx.stop()
    m_off, m_on = statistics.median(off) * 1e3, statistics.median(on) * 1e3
    m_unpaid = statistics.median(unpaid) * 1e3
    webhooks = batches * 100 * 3 // 2  # half the users have a referrer
    print(f"batch of 100 events, median request: webhooks off {m_off:.2f} ms, "
          f"on {m_on:.2f} ms, ratio on/off {m_on / m_off:.2f}x")  # fmt: skip
    print(f"  webhooks on but nothing paid (pipeline failed): {m_unpaid:.2f} ms, ratio "
          f"{m_unpaid / m_off:.2f}x: the rest is the sandbox's loop POSTing the webhooks")  # fmt: skip
    print(f"  with webhooks on, {webhooks} webhooks delivered "
          f"{statistics.median(drains) * 1e3:.0f} ms (median) after the last send")  # fmt: skip


async def catch_up_cost(events: int, rounds: int) -> None:
    results: dict[str, list[float]] = {"no listener": [], "webhook sender": []}
    # Closing drops the unsent POSTs, on purpose: no need to hear about it.
    logging.getLogger("aiofuul.sandbox.webhooks").setLevel(logging.ERROR)
    rx = _Receiver()
    url = rx.url
    for r in range(rounds):
        for case in results:
            hooked = case == "webhook sender"
            sb = Sandbox(limits=LIMITS, webhook_url=url if hooked else None, webhook_retry=RETRY)
            async with sb:
                for user in USERS:
                    sb.state.set_referrer(user, REFERRER)
                sb.state.store_events(
                    Event(name="trade", user=USERS[i % 100], dedup_id=f"{r}-{i}",
                          args={"amount": i % 7 + 1})
                    for i in range(events)
                )  # fmt: skip
                gc.collect()
                start = time.perf_counter()
                sb.state.catch_up()
                results[case].append((time.perf_counter() - start) / events * 1e6)
                assert len(sb.state.payouts) == 2 * events
                if sb.webhooks is not None:
                    await sb.webhooks.close()  # the POSTs are not what is measured here
    rx.stop()
    bare, hooked = (statistics.median(v) for v in results.values())
    print(f"catch_up of {events} stored events (2 payouts each), per event: "
          f"no listener {bare:.1f} us, with the webhook sender {hooked:.1f} us, "
          f"ratio {hooked / bare:.2f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (rough figures)")
    quick = parser.parse_args().quick
    asyncio.run(request_path(rounds=1 if quick else 3, batches=10 if quick else 40))
    asyncio.run(catch_up_cost(events=2_000 if quick else 20_000, rounds=1 if quick else 3))


if __name__ == "__main__":
    main()
