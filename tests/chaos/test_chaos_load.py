"""Load: 200,000 events through ``track()`` from 20 tasks and through
``track_threadsafe()`` from a second thread, with the rate limits lifted on both sides.
None may be lost, and the memory the run took must be given back after ``flush()``."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import tracemalloc

import pytest
from chaos_support import UNLIMITED, Ledger, sender_alive

from aiofuul import ClientConfig, FuulClient
from aiofuul.sandbox import Sandbox
from conftest import API_KEY, EVM, FAST_RETRY, wait_until

#: The chaos tier: minutes of faults in all; `nox -s quick` leaves it out.
pytestmark = pytest.mark.slow

TOTAL = 200_000
TASKS = 20
FROM_THREAD = 10_000
PER_TASK = (TOTAL - FROM_THREAD) // TASKS
#: What the run may leave allocated once everything is delivered and the test dropped
#: its own references: the client keeps no per-event state, so what remains is
#: bookkeeping of bounded size (the limiters' windows of release times, aiohttp's
#: connection pool, interned strings, free lists). Measured: ~0.2 MB.
SLACK_BYTES = 2 << 20


async def test_200k_events_from_20_tasks_and_a_thread_none_lost_memory_back_to_baseline() -> None:
    ledger = Ledger()
    config = ClientConfig(
        limits=UNLIMITED,
        retry=FAST_RETRY,
        max_queue=300_000,
        max_in_flight=8,
        linger=0.05,
        timeout=30.0,
    )
    async with (
        Sandbox(limits=UNLIMITED) as sb,
        FuulClient(API_KEY, base_url=sb.url, config=config, on_error=ledger.on_error) as fuul,
    ):
        # Warm up (session, connection pool, the user cache, lazily built internals), so
        # the baseline is a client that has already worked.
        warm = [fuul.track("warm-up", EVM, args={"i": i}) for i in range(300)]
        assert await fuul.flush(timeout=10)
        gc.collect()
        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            started = time.perf_counter()
            per_task: list[list[str]] = [[] for _ in range(TASKS)]
            from_thread: list[str] = []

            async def producer(n: int) -> None:
                out = per_task[n]
                for i in range(PER_TASK):
                    out.append(fuul.track("trade", EVM, args={"producer": n, "i": i}))
                    if i % 100 == 99:
                        await asyncio.sleep(0)

            def thread_producer() -> None:
                for i in range(FROM_THREAD):
                    from_thread.append(fuul.track_threadsafe("trade", EVM, args={"thread": i}))

            thread = threading.Thread(target=thread_producer, name="chaos-thread-producer")
            thread.start()
            await asyncio.gather(*(producer(n) for n in range(TASKS)))
            await asyncio.to_thread(thread.join)
            tracked_in = time.perf_counter() - started
            # The thread's last events reach the loop through call_soon_threadsafe.
            await wait_until(lambda: fuul.stats().tracked >= TOTAL + len(warm))
            assert await fuul.flush(timeout=60)
            elapsed = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1]

            s = fuul.stats()
            assert s.tracked == TOTAL + len(warm)
            assert s.delivered == s.tracked and s.queued == 0, s
            assert not ledger.reported
            assert sender_alive(fuul)
            stored = set(sb.stored_ids())
            assert len(sb.stored_ids()) == len(stored) == s.tracked
            ids = [i for out in per_task for i in out] + from_thread + warm
            assert len(set(ids)) == len(ids) == s.tracked
            assert stored == set(ids)
            print(
                f"\n200k load: tracked in {tracked_in:.1f} s, delivered in {elapsed:.1f} s "
                f"({TOTAL / elapsed:,.0f} events/s under tracemalloc), "
                f"{s.requests_batch} batches of {s.mean_batch_size:.1f}, "
                f"{s.requests_single} single requests, peak {peak / 1e6:.0f} MB"
            )

            # Drop the test's own references and the sandbox's copy of every event.
            del ids, stored
            per_task.clear()
            from_thread.clear()
            sb.reset()
            gc.collect()
            leftover = tracemalloc.get_traced_memory()[0] - baseline
            if leftover >= SLACK_BYTES:
                top = tracemalloc.take_snapshot().statistics("lineno")[:10]
                detail = "\n".join(str(stat) for stat in top)
            else:
                detail = ""
        finally:
            tracemalloc.stop()
        print(f"left allocated after flush: {leftover / 1e6:.2f} MB")
        assert leftover < SLACK_BYTES, detail
        # The client still works after the load.
        last = fuul.track("after-the-load", EVM)
        assert await fuul.flush(timeout=10)
        assert sb.stored_count(last) == 1
