"""Server faults, one at a time and then all at once, against the sandbox over loopback.

Every test ends with :func:`chaos_support.assert_accounted`: each accepted event stored
exactly once or reported through ``on_error``, ``stats()`` adding up, no dedup id
invented or changed on a retry, and the sender task still alive. Where the staged
outage ends before the retry policy gives up, nothing at all may be reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

import msgspec
import pytest
from chaos_support import (
    PATIENT_RETRY,
    ChaosProxy,
    Ledger,
    Watcher,
    assert_accounted,
    assert_adds_up,
    produce,
    running,
    sender_alive,
)

from aiofuul import (
    Event,
    FuulClient,
    FuulError,
    Limits,
    RateLimit,
    RetryPolicy,
    ServerError,
    UndeliveredError,
    User,
)
from aiofuul.sandbox import Faults, Sandbox
from conftest import API_KEY, EVM, FAST_LIMITS, HANG, fast_config, wait_until

#: The chaos tier: minutes of faults in all; `nox -s quick` leaves it out.
pytestmark = pytest.mark.slow

STATUSES_5XX = (500, 502, 503, 504)


async def test_5xx_storm_then_recovery_delivers_everything_exactly_once() -> None:
    """A storm of 500/502/503/504 (HTML and JSON bodies) while events are tracked and
    direct calls are made; when it ends, every event is delivered once."""
    ledger = Ledger()
    storm = Faults(error_rate=1.0, error_statuses=STATUSES_5XX, seed=1)
    async with running(ledger, Sandbox(limits=FAST_LIMITS, faults=storm), retry=PATIENT_RETRY) as (
        sb,
        fuul,
    ):
        watcher = Watcher(fuul)
        direct_single = asyncio.create_task(fuul.send_event("deposit", EVM, dedup_id="direct-1"))
        batch = [Event("deposit", EVM, f"direct-b{i}") for i in range(20)]
        direct_batch = asyncio.create_task(fuul.send_batch(batch))
        await produce(fuul, ledger, EVM, tasks=5, per_task=60, pause=0.01)
        await wait_until(lambda: sum(sb.count(status=s) for s in STATUSES_5XX) > 5)

        assert sb.count(status=0) == 0 and sum(sb.count(status=s) for s in STATUSES_5XX) > 5
        assert sb.stored_ids() == []
        assert not direct_single.done() and not direct_batch.done()
        assert_adds_up(fuul)
        assert sender_alive(fuul)

        sb.faults.error_rate = 0.0
        assert await fuul.flush(timeout=10)
        assert (await direct_single).dedup_id == "direct-1"
        assert (await direct_batch).ingested == 20
        others = ["direct-1", *(e.dedup_id for e in batch)]
        assert all(sb.stored_count(i) == 1 for i in others)
        assert_accounted(fuul, sb, ledger, all_delivered=True, others=others, watcher=watcher)
        assert fuul.stats().retries > 0


async def test_5xx_storm_longer_than_the_retry_policy_reports_every_event() -> None:
    """When the policy gives up first, every event reaches ``on_error`` as
    ``retries_exhausted`` with the last ``ServerError``, none is stored, and the sender
    keeps working for the events tracked after the storm."""
    ledger = Ledger()
    brief = RetryPolicy(max_attempts=3, initial_backoff=0.005, max_backoff=0.02)
    storm = Faults(error_rate=1.0, error_statuses=STATUSES_5XX, seed=2)
    async with running(ledger, Sandbox(limits=FAST_LIMITS, faults=storm), retry=brief) as (
        sb,
        fuul,
    ):
        watcher = Watcher(fuul)
        await produce(fuul, ledger, EVM, tasks=4, per_task=50, pause=0.005)
        assert await fuul.flush(timeout=10)
        assert_accounted(fuul, sb, ledger, all_delivered=False, watcher=watcher)
        s = fuul.stats()
        assert s.failed == 200 and s.delivered == 0
        assert set(ledger.reasons.values()) == {"retries_exhausted"}
        assert all(isinstance(e.cause, ServerError) for e in ledger.errors)
        with pytest.raises(ServerError):
            await fuul.send_event("deposit", EVM)

        sb.faults.error_rate = 0.0
        after = [ledger.track(fuul, EVM) for _ in range(30)]
        assert await fuul.flush(timeout=10)
        assert all(sb.stored_count(i) == 1 for i in after)
        assert_accounted(fuul, sb, ledger, all_delivered=False)


async def test_connection_resets_before_after_store_and_mid_body() -> None:
    """Connections closed without an answer (before and after the events were stored,
    from the sandbox) and responses cut mid-body (headers and half the body, then a
    reset, from a proxy): nothing lost, nothing stored twice; events stored before the
    reset come back as duplicates on the retry."""
    ledger = Ledger()
    resets = Faults(drop_rate=0.25, drop_after_store=0.5, seed=3)
    async with (
        Sandbox(limits=FAST_LIMITS, faults=resets) as sb,
        ChaosProxy(sb, cut_rate=0.25, seed=3) as proxy,
        FuulClient(
            API_KEY,
            base_url=proxy.url,
            config=fast_config(retry=PATIENT_RETRY),
            on_error=ledger.on_error,
        ) as fuul,
    ):
        watcher = Watcher(fuul)
        # Spread out, so that many requests (single and batch) meet the faults.
        await produce(fuul, ledger, EVM, tasks=6, per_task=60, every=3, pause=0.01)
        for dedup_id in ("direct-1", "direct-2", "direct-3"):
            await fuul.send_event("deposit", EVM, dedup_id=dedup_id)
        assert await fuul.flush(timeout=15)
        others = ["direct-1", "direct-2", "direct-3"]
        assert_accounted(fuul, sb, ledger, all_delivered=True, others=others, watcher=watcher)
        assert all(sb.stored_count(i) == 1 for i in others)
        assert proxy.resets > 0 and sb.count(status=0) > 0
        # A cut after the store, then a retry: the server knew the dedup id.
        assert fuul.stats().duplicates > 0


async def test_responses_that_never_come_time_out_and_are_retried() -> None:
    """30% of requests hang forever; the client gives up on each after its 0.2 s timeout
    and tries again: everything is delivered, once."""
    ledger = Ledger()
    async with running(
        ledger,
        Sandbox(limits=FAST_LIMITS, faults=Faults(hang_rate=0.3, seed=4)),
        retry=PATIENT_RETRY,
        timeout=0.2,
    ) as (sb, fuul):
        watcher = Watcher(fuul)
        await produce(fuul, ledger, EVM, tasks=4, per_task=50, every=2, pause=0.01)
        assert await fuul.flush(timeout=15)
        assert_accounted(fuul, sb, ledger, all_delivered=True, watcher=watcher)
        assert sb.count(status=0) > 0  # hung requests are recorded without a status


async def test_answers_slower_than_the_timeout_stored_then_the_retry_is_a_duplicate() -> None:
    """The server stores at once but its answers take 0.3 s (a slow proxy), the client
    waits 0.2 s: events are stored after the client gave up. Its retries find the dedup
    ids known (409, or skipped in a batch): counted as duplicates, stored once, none
    reported."""
    ledger = Ledger()
    async with (
        Sandbox(limits=FAST_LIMITS) as sb,
        ChaosProxy(sb, answer_delay=0.3) as proxy,
        FuulClient(
            API_KEY,
            base_url=proxy.url,
            config=fast_config(retry=PATIENT_RETRY, timeout=0.2),
            on_error=ledger.on_error,
        ) as fuul,
    ):
        watcher = Watcher(fuul)
        await produce(fuul, ledger, EVM, tasks=2, per_task=20, every=2, pause=0.01)
        await wait_until(lambda: len(sb.stored_ids()) > 0, what="a store")
        assert fuul.stats().delivered == 0  # every answer came after the client gave up
        proxy.answer_delay = 0.0
        assert await fuul.flush(timeout=10)
        assert_accounted(fuul, sb, ledger, all_delivered=True, watcher=watcher)
        assert fuul.stats().duplicates > 0


def sent_events(sb: Sandbox) -> list[dict[str, object]]:
    """Every event of every send request the sandbox received (``record_bodies=True``),
    in arrival order, resends included."""
    events: list[dict[str, object]] = []
    for r in sb.requests:
        if r.method != "POST" or r.body is None:
            continue
        decoded = msgspec.json.decode(r.body)
        events.extend(decoded if isinstance(decoded, list) else [decoded])
    return events


def assert_resent_unchanged(sb: Sandbox) -> int:
    """Each dedup id was sent with the same event every time; returns how many were sent
    more than once."""
    first: dict[object, dict[str, object]] = {}
    sends: Counter[object] = Counter()
    for event in sent_events(sb):
        dedup_id = event["dedup_id"]
        sends[dedup_id] += 1
        assert first.setdefault(dedup_id, event) == event, dedup_id
    return sum(1 for n in sends.values() if n > 1)


async def test_unreadable_2xx_bodies_are_resent_with_the_same_dedup_ids_and_stored_once() -> None:
    """Half the successes are answered with an HTML page or truncated JSON under a 2xx
    (the events were stored): not the API's answer, so the client resends with the same
    dedup ids; the server skips the known ones, and each event is stored once, none
    lost, none reported."""
    ledger = Ledger()
    garbage = Faults(garbage_rate=0.5, seed=5)
    sandbox = Sandbox(limits=FAST_LIMITS, faults=garbage, record_bodies=True)
    async with running(ledger, sandbox, retry=PATIENT_RETRY) as (sb, fuul):
        watcher = Watcher(fuul)
        await produce(fuul, ledger, EVM, tasks=5, per_task=40, pause=0.005)
        single = await fuul.send_event("deposit", EVM, dedup_id="direct-1")
        assert single.dedup_id == "direct-1"
        batch = [Event("deposit", EVM, f"direct-b{i}") for i in range(10)]
        result = await fuul.send_batch(batch)
        assert result.ingested + result.skipped == 10
        assert await fuul.flush(timeout=10)
        assert_adds_up(fuul)
        # The status query's answer IS its body: an unreadable one is retried, not guessed.
        assert await fuul.event_status(EVM, "trade") is True
        others = ["direct-1", *(e.dedup_id for e in batch)]
        assert_accounted(fuul, sb, ledger, all_delivered=True, others=others, watcher=watcher)
        assert all(sb.stored_count(i) == 1 for i in others)
        s = fuul.stats()
        assert s.failed == 0 and s.delivered + s.duplicates == s.tracked == 200, s
        # Resent, and the server knew the ids it had stored before the garbage.
        assert s.retries > 0 and s.duplicates > 0, s
        assert assert_resent_unchanged(sb) > 0
        # Every request the client made reached the sandbox (no proxy, no drops).
        assert (
            sb.count("events") == s.requests_single and sb.count("events/batch") == s.requests_batch
        )


async def test_2xx_garbage_with_nothing_stored_loses_nothing() -> None:
    """Half the sends are answered 201 with garbage WITHOUT being stored (a proxy that
    answered for a server that never saw the request): had the client taken the 2xx as
    proof, those events would be lost. Resent until a readable answer, every event is
    stored exactly once, and none is a duplicate (nothing was stored before)."""
    ledger = Ledger()
    lost = Faults(garbage_rate=0.5, garbage_stores=False, seed=8)
    sandbox = Sandbox(limits=FAST_LIMITS, faults=lost, record_bodies=True)
    async with running(ledger, sandbox, retry=PATIENT_RETRY) as (sb, fuul):
        watcher = Watcher(fuul)
        producing = asyncio.create_task(
            produce(fuul, ledger, EVM, tasks=5, per_task=100, every=5, pause=0.005)
        )
        singles = [await fuul.send_event("deposit", EVM, dedup_id=f"direct-{i}") for i in range(3)]
        batches = [[Event("deposit", EVM, f"direct-b{j}-{i}") for i in range(10)] for j in range(2)]
        results = [await fuul.send_batch(b) for b in batches]
        await producing
        assert await fuul.flush(timeout=20)
        assert_adds_up(fuul)
        # Nothing was stored before a readable answer: never a duplicate.
        assert [r.duplicate for r in singles] == [False] * 3
        assert [(r.ingested, r.skipped) for r in results] == [(10, 0)] * 2
        others = [r.dedup_id for r in singles] + [e.dedup_id for b in batches for e in b]
        assert_accounted(fuul, sb, ledger, all_delivered=True, others=others, watcher=watcher)
        assert all(sb.stored_count(i) == 1 for i in [*ledger.accepted, *others])
        s = fuul.stats()
        assert s.tracked == s.delivered == 500, s
        assert s.failed == s.duplicates == s.rejected == s.dropped == 0, s
        assert s.retries > 0, s
        assert assert_resent_unchanged(sb) > 0
        assert sorted(sb.stored_ids()) == sorted([*ledger.accepted, *others])


@pytest.mark.parametrize("retry_after", ["seconds", "none"])
async def test_429_flood_from_a_server_far_below_the_client_settles(retry_after: str) -> None:
    """The server allows 5 single and 1 batch request per 0.5 s; the client believes in
    100 and 10 per second. Every event is still delivered exactly once, and the client's
    capacity settles: 429s come in the first burst, then stop."""
    ledger = Ledger()
    slow = Limits(single=RateLimit(5, 0.5), batch=RateLimit(1, 0.5), status=RateLimit(5, 0.5))
    async with running(
        ledger, Sandbox(limits=slow, retry_after=retry_after), retry=PATIENT_RETRY
    ) as (sb, fuul):  # type: ignore[arg-type]
        watcher = Watcher(fuul)
        for _ in range(250):  # three batches' worth at once
            ledger.track(fuul, EVM)
        assert await fuul.flush(timeout=10)
        burst = fuul.stats()
        assert burst.rate_limited_single + burst.rate_limited_batch > 0

        # Then 50 events/s for 4 s: count the 429s of each second.
        windows = []
        for _ in range(4):
            before = fuul.stats()
            for _ in range(10):
                for _ in range(5):
                    ledger.track(fuul, EVM)
                await asyncio.sleep(0.1)
            after = fuul.stats()
            windows.append(
                after.rate_limited_single
                + after.rate_limited_batch
                - before.rate_limited_single
                - before.rate_limited_batch
            )
        assert await fuul.flush(timeout=10)
        assert_accounted(fuul, sb, ledger, all_delivered=True, watcher=watcher)
        # Settling: each 429 lowers the capacity; the recovery climbs back to 90% of the
        # lowest level that drew one, so the clusters shrink (measured: 4, 3, 2, 1; on a
        # loaded machine the burst may absorb the first: 0, 4, 0, 1). Few in all, and at
        # most 2 in the last second, whatever the machine's speed.
        assert windows[-1] <= 2 and sum(windows) <= 10, windows
        assert sum(windows) <= 15, windows
        total = fuul.stats()
        assert sb.count(status=429) == total.rate_limited_single + total.rate_limited_batch


async def test_server_restart_same_port_events_tracked_while_down_are_delivered() -> None:
    """The server goes away (port closed, requests in flight cut) and comes back on the
    same port a second later; events tracked meanwhile are delivered, once."""
    ledger = Ledger()
    async with running(
        ledger, Sandbox(limits=FAST_LIMITS, faults=Faults(latency=0.02)), retry=PATIENT_RETRY
    ) as (sb, fuul):
        watcher = Watcher(fuul)
        port = sb.port
        producing = asyncio.create_task(
            produce(fuul, ledger, EVM, tasks=3, per_task=150, every=3, pause=0.02)
        )
        await wait_until(lambda: len(sb.stored_ids()) > 0, what="deliveries before the stop")
        await sb.stop()
        down_at = len(ledger.accepted)
        # Tracked while it is down, whether or not the producers (paced, but fast on an
        # idle machine and slow on a loaded one) are still at it.
        for _ in range(30):
            ledger.track(fuul, EVM)
        await asyncio.sleep(1.0)
        assert len(ledger.accepted) >= down_at + 30  # tracking went on while it was down
        assert fuul.stats().queued > 0 and sender_alive(fuul)
        await sb.start()
        assert sb.port == port and sb.url == fuul.base_url
        await producing
        assert await fuul.flush(timeout=15)
        assert_accounted(fuul, sb, ledger, all_delivered=True, watcher=watcher)


async def test_everything_at_once() -> None:
    """5xx (HTML and JSON), resets before/after store and mid-body, hangs, garbage 2xx,
    429s from a server below the client's limits, and a restart, while tasks, a thread
    and direct calls all send. When the weather clears, every tracked event is stored
    exactly once; every direct call either succeeded (and its event is stored once) or
    raised a FuulError."""
    ledger = Ledger()
    weather = Faults(
        error_rate=0.15,
        error_statuses=(*STATUSES_5XX, 408),
        latency=0.005,
        drop_rate=0.1,
        drop_after_store=0.5,
        garbage_rate=0.1,
        hang_rate=0.05,
        seed=7,
    )
    tight = Limits(single=RateLimit(20, 0.5), batch=RateLimit(2, 0.5), status=RateLimit(20, 0.5))
    direct_ok: list[str] = []
    direct_tried: list[str] = []

    async with (
        Sandbox(limits=tight, faults=weather) as sb,
        ChaosProxy(sb, cut_rate=0.1, seed=7) as proxy,
        FuulClient(
            API_KEY,
            base_url=proxy.url,
            config=fast_config(retry=PATIENT_RETRY, timeout=0.3),
            on_error=ledger.on_error,
        ) as fuul,
    ):
        watcher = Watcher(fuul)
        loop = asyncio.get_running_loop()

        def thread_producer() -> None:
            for i in range(150):
                ledger.track_threadsafe(fuul, EVM, "from-thread", args={"i": i})
                time.sleep(0.004)

        async def direct_caller() -> None:
            for i in range(15):
                dedup_id = f"direct-{i}"
                direct_tried.append(dedup_id)
                with contextlib.suppress(FuulError):
                    await fuul.send_event("deposit", EVM, dedup_id=dedup_id)
                    direct_ok.append(dedup_id)
                await asyncio.sleep(0.02)

        thread = loop.run_in_executor(None, thread_producer)
        calls = asyncio.create_task(direct_caller())
        producing = asyncio.create_task(
            produce(fuul, ledger, EVM, tasks=8, per_task=60, every=3, pause=0.01)
        )
        await wait_until(lambda: len(sb.stored_ids()) > 0, what="deliveries before the stop")
        await sb.stop()
        await asyncio.sleep(0.4)  # the scenario: the server is away a while
        await sb.start()
        await asyncio.gather(producing, calls, thread)
        # The thread's last events reach the loop through call_soon_threadsafe.
        await wait_until(lambda: fuul.stats().tracked == len(ledger.accepted))
        assert_adds_up(fuul)
        assert sender_alive(fuul)

        sb.faults = Faults()
        proxy.cut_rate = 0.0
        assert await fuul.flush(timeout=20)
        assert_accounted(fuul, sb, ledger, all_delivered=True, others=direct_tried, watcher=watcher)
        assert all(sb.stored_count(i) == 1 for i in direct_ok)
        assert all(sb.stored_count(i) <= 1 for i in direct_tried)
        s = fuul.stats()
        assert s.retries > 0 and sb.count(status=429) > 0 and proxy.resets > 0


async def test_close_during_an_outage_reports_every_event_and_is_bounded() -> None:
    """Every request hangs; ``aclose(0.5)`` gives up in time and reports what it could
    not deliver as ``shutdown`` (or ``retries_exhausted``): nothing silently lost."""
    ledger = Ledger()
    async with Sandbox(limits=FAST_LIMITS, faults=Faults(hang_rate=1.0)) as sb:
        fuul = FuulClient(
            API_KEY,
            base_url=sb.url,
            config=fast_config(retry=PATIENT_RETRY, timeout=5.0),
            on_error=ledger.on_error,
        )
        async with fuul:
            watcher = Watcher(fuul)  # through the close too
            await produce(fuul, ledger, EVM, tasks=3, per_task=40, pause=0.005)
            await wait_until(lambda: fuul.stats().in_flight > 0, what="requests in flight")
            # Bounded by its timeout, not by the hung requests (a minute of retries):
            # the deadline only catches a close that waits for them.
            await asyncio.wait_for(fuul.aclose(0.5), HANG)
        assert_accounted(fuul, sb, ledger, all_delivered=False, alive=False, watcher=watcher)
        assert len(ledger.reported) == 120
        assert set(ledger.reasons.values()) <= {"shutdown", "retries_exhausted"}
        assert all(isinstance(e, UndeliveredError) for e in ledger.errors)
        assert sb.stored_ids() == []


async def test_in_flight_never_exceeds_queued(sandbox: Sandbox) -> None:
    """Stats promises ``queued`` includes ``in_flight``. Read from ``on_error`` (called
    while the events are settled), the snapshot has the event settled but still in
    flight. (The chaos runs above see it too, by sampling, a few times a second.)"""
    snapshots = []

    def on_error(events: list[Event], error: UndeliveredError) -> None:
        snapshots.append(fuul.stats())

    lax = fast_config(check_identifier_format=False)  # the server's check is on: a 400
    async with FuulClient(API_KEY, base_url=sandbox.url, config=lax, on_error=on_error) as fuul:
        fuul.track("trade", User("not-an-evm-address", "evm_address"))
        assert await fuul.flush(timeout=5)
    assert snapshots
    assert all(s.in_flight <= s.queued for s in snapshots), snapshots
