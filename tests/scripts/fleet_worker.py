"""A worker process of the Redis outbox tests:
``fleet_worker.py URL OUTBOX KEY EVENTS RATE [LIMITER]``.

Starts a client on the shared outbox OUTBOX (and the shared limiter LIMITER, if
given), prints ``ready``, waits for ``go`` on stdin, then tracks EVENTS events at RATE
a second, in groups of 50. After each group it waits for the outbox's write and, if
Redis took it, prints ``committed ID ...``: those events are durable. Then it prints
``tracked`` and waits for ``stop`` on stdin, or SIGTERM (which also ends the tracking),
closes the client (``close_timeout`` 0.5 s) and prints its stats as JSON.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import msgspec

from aiofuul import DEFAULT_LIMITS, ClientConfig, FuulClient, RetryPolicy, User

USER = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")
CONFIG = ClientConfig(
    limits=DEFAULT_LIMITS.scaled(1 / 60),
    retry=RetryPolicy(initial_backoff=0.01, max_backoff=0.2, max_attempts=50, max_elapsed=60),
    linger=0.05,
    timeout=1.0,
    close_timeout=0.5,
)
GROUP = 50


async def main(url: str, outbox: str, key: str, events: int, rate: float, limiter: str) -> None:
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    fuul = FuulClient(key, base_url=url, config=CONFIG, outbox=outbox, limiter=limiter or None)
    async with fuul:
        await fuul.flush()  # the outbox is open, its leftovers adopted and sent
        print("ready", flush=True)
        await stdin.readline()
        journal = fuul._outbox
        assert journal is not None
        started = loop.time()
        for n in range(0, events, GROUP):
            if stopped.is_set():
                break
            ids = [fuul.track("trade", USER, args={"n": n + i}) for i in range(GROUP)]
            await journal.commit()
            if not journal.down:
                print("committed " + " ".join(ids), flush=True)
            await asyncio.sleep(max(0.0, started + (n + GROUP) / rate - loop.time()))
        print("tracked", flush=True)
        line = asyncio.ensure_future(stdin.readline())
        signal_ = asyncio.ensure_future(stopped.wait())
        await asyncio.wait({line, signal_}, return_when=asyncio.FIRST_COMPLETED)
        line.cancel()
        signal_.cancel()
    print(msgspec.json.encode(fuul.stats()).decode(), flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    limiter = args[5] if len(args) > 5 else ""
    asyncio.run(main(args[0], args[1], args[2], int(args[3]), float(args[4]), limiter))
