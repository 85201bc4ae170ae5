"""track(): the background sender against the sandbox over loopback, periods compressed
to about one second. Each test is one promise of the track() issue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from aiofuul import (
    ClientStateError,
    Event,
    FuulClient,
    Limits,
    QueueFullError,
    RateLimit,
    RetryPolicy,
    UndeliveredError,
    User,
    ValidationError,
)
from aiofuul.sandbox import Faults, Sandbox
from conftest import API_KEY, EVM, FAST_LIMITS, HANG, fast_config, wait_until

Reported = list[tuple[list[Event], UndeliveredError]]


def recorder() -> tuple[Reported, Callable[[list[Event], UndeliveredError], None]]:
    seen: Reported = []
    return seen, lambda events, error: seen.append((events, error))


def assert_adds_up(fuul: FuulClient) -> None:
    s = fuul.stats()
    assert s.tracked == s.delivered + s.duplicates + s.rejected + s.failed + s.dropped + s.queued


@pytest.mark.slow
async def test_5000_events_from_50_producers_exactly_once_no_429_in_full_batches(
    sandbox: Sandbox,
) -> None:
    # How close to the ceiling this runs is a benchmark's question, measured as a ratio
    # (benchmarks/rate_limit.py); here, what does not depend on the machine's speed.
    period = FAST_LIMITS.single.period
    ceiling = FAST_LIMITS.single.requests + FAST_LIMITS.batch.requests * 100  # 1,100 a period
    total = 5000
    async with FuulClient(API_KEY, base_url=sandbox.url, config=fast_config()) as fuul:
        ids: list[str] = []

        async def producer(n: int) -> None:
            for i in range(100):
                ids.append(fuul.track("trade", EVM, args={"producer": n, "i": i}))
                if i % 10 == 0:
                    await asyncio.sleep(0)

        await asyncio.gather(*(producer(n) for n in range(50)))
        assert await fuul.flush(timeout=60)
        assert_adds_up(fuul)

    assert len(set(ids)) == total
    assert all(sandbox.stored_count(i) == 1 for i in ids)
    assert len(sandbox.stored_ids()) == total
    assert sandbox.count(status=429) == 0
    # Never more than the ceiling in any window of one period (arrivals, as the server
    # counts them) ...
    sent = sorted((r.at, r.events) for r in sandbox.requests if r.status == 201)
    assert max(sum(n for t, n in sent if at <= t < at + period) for at, _ in sent) <= ceiling
    # ... and, with a backlog of thousands, batch slots are spent on full batches.
    batches = [r.events for r in sandbox.requests if r.path.endswith("/batch")]
    assert batches and sum(batches) / len(batches) >= 90, batches


async def test_light_traffic_goes_out_at_once_on_the_single_endpoint(sandbox: Sandbox) -> None:
    # A linger of a minute: an event that waited for company would miss the deadline
    # below, however slow the machine (the deadline only catches that).
    config = fast_config(linger=60.0)
    async with FuulClient(API_KEY, base_url=sandbox.url, config=config) as client:
        for i in range(30):
            dedup_id = client.track("signup", EVM, args={"i": i})
            await wait_until(lambda: sandbox.stored_count(dedup_id) == 1, 20, dedup_id)  # noqa: B023
    assert sandbox.count(path="/api/v1/events/batch") == 0
    assert sandbox.count(path="/api/v1/events") == 30


@pytest.mark.slow
async def test_5xx_and_dropped_connections_lose_nothing(sandbox: Sandbox) -> None:
    sandbox.faults = Faults(error_rate=0.2, drop_rate=0.05, seed=7)
    seen, on_error = recorder()
    async with FuulClient(
        API_KEY, base_url=sandbox.url, config=fast_config(), on_error=on_error
    ) as fuul:
        ids = [fuul.track("trade", EVM, args={"i": i}) for i in range(1500)]
        assert await fuul.flush(timeout=30)
        stats = fuul.stats()
        assert_adds_up(fuul)
    assert seen == []
    assert stats.failed == stats.rejected == stats.dropped == 0
    assert stats.delivered + stats.duplicates == 1500
    assert all(sandbox.stored_count(i) == 1 for i in ids)
    assert sandbox.count(status=500) + sandbox.count(status=502) + sandbox.count(status=503) > 0
    assert sandbox.count(status=0) > 0  # some connections really were dropped


@pytest.mark.slow
@pytest.mark.parametrize("retry_after", ["seconds", "none"])
async def test_server_limits_below_the_clients_settle_without_loss(retry_after: str) -> None:
    # Another process spends half of the key: the server allows half of what we think.
    period = 0.5
    server = Limits(single=RateLimit(50, period), batch=RateLimit(5, period))
    client_limits = Limits(single=RateLimit(100, period), batch=RateLimit(10, period))
    async with Sandbox(limits=server, retry_after=retry_after) as sb:  # type: ignore[arg-type]
        seen, on_error = recorder()
        config = fast_config(limits=client_limits, linger=0.02)
        async with FuulClient(API_KEY, base_url=sb.url, config=config, on_error=on_error) as fuul:
            ids = [fuul.track("trade", EVM, args={"i": i}) for i in range(3300)]
            assert await fuul.flush(timeout=60)
            assert_adds_up(fuul)
        assert seen == []
        assert all(sb.stored_count(i) == 1 for i in ids)
        # Counted in requests, not seconds, so that a slow machine changes nothing.
        statuses = [r.status for r in sb.requests]
        first_half = statuses[: len(statuses) // 2].count(429)
        second_half = statuses[len(statuses) // 2 :].count(429)
        # Settling: the 429s come while the client learns, and (almost) stop after.
        assert second_half <= max(3, first_half // 2), (first_half, second_half)


async def test_one_bad_event_in_a_batch_does_not_sink_the_others() -> None:
    async with Sandbox(limits=FAST_LIMITS) as sb:  # the server checks formats ...
        seen, on_error = recorder()
        config = fast_config(check_identifier_format=False)  # ... the client does not
        async with FuulClient(API_KEY, base_url=sb.url, config=config, on_error=on_error) as fuul:
            bad_user = User("0xnot-an-address", "evm_address")
            ids = []
            for i in range(150):  # more than a batch, so a full batch leaves first
                ids.append(fuul.track("trade", bad_user if i == 3 else EVM, args={"i": i}))
            assert await fuul.flush(timeout=10)
            stats = fuul.stats()
    assert stats.rejected == 1 and stats.delivered == 149
    assert len(seen) == 1
    events, error = seen[0]
    assert [e.dedup_id for e in events] == [ids[3]]
    assert error.reason == "rejected"
    assert "user.identifier" in str(error.cause)
    assert all(sb.stored_count(i) == 1 for n, i in enumerate(ids) if n != 3)
    assert sb.stored_count(ids[3]) == 0


async def test_aclose_with_thousands_queued_and_a_slow_server_is_bounded() -> None:
    async with Sandbox(limits=FAST_LIMITS, faults=Faults(latency=0.3)) as sb:
        seen, on_error = recorder()
        fuul = FuulClient(API_KEY, base_url=sb.url, config=fast_config(), on_error=on_error)
        async with fuul:
            ids = [fuul.track("trade", EVM, args={"i": i}) for i in range(5000)]
            await wait_until(lambda: fuul.stats().in_flight > 0, what="requests in flight")
            # Delivering all 5,000 takes over four periods: a close bounded by its
            # timeout gives up on some (the deadline of wait_for only catches a hang).
            await asyncio.wait_for(fuul.aclose(timeout=0.5), HANG)
        stats = fuul.stats()
    assert stats.failed > 0
    assert stats.queued == 0 and stats.in_flight == 0
    reported = {e.dedup_id for events, _ in seen for e in events}
    assert all(error.reason == "shutdown" for _, error in seen)
    assert stats.failed == len(reported)
    assert stats.delivered + stats.failed == 5000
    assert all(sb.stored_count(i) == 1 or i in reported for i in ids)
    with pytest.raises(ClientStateError):
        fuul.track("trade", EVM)


async def test_fastapi_handlers_answer_while_the_server_answers_nothing() -> None:
    """track() in a handler never waits for the API: with a server that holds every
    request, all 300 handlers still answer (how fast track() is, is benchmarks/track_cost.py)."""
    fastapi = pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    from contextlib import asynccontextmanager

    async with Sandbox(limits=FAST_LIMITS, faults=Faults(hang_rate=1.0)) as sb:
        holder: dict[str, FuulClient] = {}

        @asynccontextmanager
        async def lifespan(app: object):  # type: ignore[no-untyped-def]
            async with FuulClient(API_KEY, base_url=sb.url, config=fast_config()) as fuul:
                holder["fuul"] = fuul
                yield

        app = fastapi.FastAPI(lifespan=lifespan)

        @app.post("/trade/{n}")
        async def trade(n: int) -> dict[str, str]:
            return {"dedup_id": holder["fuul"].track("trade", EVM, args={"n": n})}

        async with lifespan(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
                responses = await asyncio.gather(*(http.post(f"/trade/{n}") for n in range(300)))
                ids = [r.json()["dedup_id"] for r in responses]
                assert sb.stored_ids() == []  # every handler answered; the API none
                sb.faults.hang_rate = 0.0
                assert await holder["fuul"].flush(timeout=HANG)
    assert all(r.status_code == 200 for r in responses)
    assert all(sb.stored_count(i) == 1 for i in ids)


@pytest.mark.parametrize("policy", ["drop_new", "drop_old", "raise"])
async def test_queue_full_policies_count_and_report(policy: str) -> None:
    seen, on_error = recorder()
    # Nothing listens on this port: every event stays queued.
    config = fast_config(max_queue=10, queue_full=policy)
    fuul = FuulClient(
        API_KEY, base_url="http://127.0.0.1:9/api/v1/", config=config, on_error=on_error
    )
    async with fuul:
        ids = [fuul.track("trade", EVM, dedup_id=f"e{i}") for i in range(10)]
        if policy == "raise":
            with pytest.raises(QueueFullError):
                fuul.track("trade", EVM, dedup_id="e10")
            assert fuul.stats().tracked == 10
        else:
            fuul.track("trade", EVM, dedup_id="e10")
            stats = fuul.stats()
            assert stats.dropped == 1 and stats.tracked == 11
            assert not seen  # on_error runs on the loop, never inside track()
            await asyncio.sleep(0)
            dropped = seen[0][0][0].dedup_id
            assert dropped == ("e10" if policy == "drop_new" else ids[0])
            assert seen[0][1].reason == "dropped"
        assert_adds_up(fuul)
        await fuul.aclose(timeout=0.05)
    assert_adds_up(fuul)


@pytest.mark.slow
async def test_atrack_waits_for_room_instead_of_dropping(sandbox: Sandbox) -> None:
    config = fast_config(max_queue=5)
    async with FuulClient(API_KEY, base_url=sandbox.url, config=config) as fuul:
        ids = [await fuul.atrack("trade", EVM, args={"i": i}) for i in range(200)]
        assert await fuul.flush(timeout=10)
        assert fuul.stats().dropped == 0
    assert all(sandbox.stored_count(i) == 1 for i in ids)


async def test_track_validates_before_queueing(client: FuulClient) -> None:
    with pytest.raises(ValidationError) as info:
        client.track("trade", User("0x12", "evm_address"))
    assert info.value.field == "user.identifier"
    with pytest.raises(ValidationError, match="looks like seconds"):
        client.track("trade", EVM, timestamp=1763830000)
    with pytest.raises(ValidationError) as info:
        client.track("trade", EVM, args={"size": float("nan")})
    assert info.value.field == "args.size"
    assert client.stats().tracked == 0


async def test_track_fills_dedup_id_and_timestamp(sandbox: Sandbox, client: FuulClient) -> None:
    before = int(time.time() * 1000)
    first = client.track("trade", EVM)
    second = client.track("trade", EVM, dedup_id="mine-1", timestamp=1763830000123)
    assert first != second and second == "mine-1"
    assert await client.flush(timeout=5)
    stored = {e.dedup_id: e for e in sandbox.events}
    stamped = stored[first].timestamp
    assert stamped is not None and before <= stamped <= int(time.time() * 1000)
    assert stored["mine-1"].timestamp == 1763830000123


async def test_track_threadsafe_from_a_worker_thread(sandbox: Sandbox, client: FuulClient) -> None:
    def work() -> list[str]:
        return [client.track_threadsafe("trade", EVM, args={"i": i}) for i in range(300)]

    ids = await asyncio.to_thread(work)
    assert await client.flush(timeout=10)
    assert all(sandbox.stored_count(i) == 1 for i in ids)
    with pytest.raises(ValidationError):
        await asyncio.to_thread(lambda: client.track_threadsafe("", EVM))


async def test_flush_waits_only_for_what_was_tracked_before(sandbox: Sandbox) -> None:
    async with FuulClient(API_KEY, base_url=sandbox.url, config=fast_config(linger=30)) as fuul:
        ids = [fuul.track("trade", EVM, args={"i": i}) for i in range(250)]
        assert await fuul.flush(timeout=10)  # no lingering: partial batches leave at once
        assert all(sandbox.stored_count(i) == 1 for i in ids)
        assert fuul.stats().queued == 0


async def test_auth_failure_stops_and_reports_loudly(caplog: pytest.LogCaptureFixture) -> None:
    # A refused key pauses the lanes (it may be a gateway's moment): the events wait up
    # to the retry deadline, here half a second, then are reported as "stopped".
    retry = RetryPolicy(max_attempts=50, initial_backoff=0.05, max_backoff=0.2, max_elapsed=0.5)
    async with Sandbox(limits=FAST_LIMITS, keys={"good": {"send:trigger_event"}}) as sb:
        seen, on_error = recorder()
        async with FuulClient(
            "wrong", base_url=sb.url, config=fast_config(retry=retry), on_error=on_error
        ) as fuul:
            for i in range(120):
                fuul.track("trade", EVM, args={"i": i})
            assert await fuul.flush(timeout=5)
            stats = fuul.stats()
    assert stats.failed == 120 and stats.delivered == 0
    assert {error.reason for _, error in seen} == {"stopped"}
    assert sum(len(events) for events, _ in seen) == 120
    # It paused instead of hammering: the first wave, then one probe at a time per lane,
    # backing off (a few per lane in half a second, never a burst).
    assert sb.count(status=401) <= fast_config().max_in_flight + 16
    paused = [r for r in caplog.records if "lane paused" in r.getMessage()]
    assert paused and all(r.levelname == "ERROR" and "401" in r.getMessage() for r in paused)
    assert len(paused) <= 2  # once per lane, not per request
    assert not any("wrong" in r.getMessage() for r in caplog.records)


async def test_a_second_event_loop_gets_a_clear_error(client: FuulClient) -> None:
    client.track("trade", EVM)

    def other_loop() -> None:
        async def use() -> None:
            client.track("trade", EVM)

        asyncio.run(use())

    with pytest.raises(ClientStateError, match="another event loop"):
        await asyncio.to_thread(other_loop)


def test_track_outside_a_loop_gets_a_clear_error() -> None:
    fuul = FuulClient(API_KEY, base_url="http://127.0.0.1:9/api/v1/")
    with pytest.raises(ClientStateError, match="no running event loop"):
        fuul.track("trade", EVM)


async def test_a_forked_child_gets_a_clear_error(client: FuulClient) -> None:
    import os

    client.track("trade", EVM)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what track() did, and leave at once
        try:
            client.track("trade", EVM)
            os.write(write, b"no error")
        except ClientStateError:
            os.write(write, b"ClientStateError")
        except BaseException as exc:
            os.write(write, type(exc).__name__.encode())
        os._exit(0)
    os.close(write)
    await asyncio.to_thread(os.waitpid, pid, 0)
    assert os.read(read, 100) == b"ClientStateError"
    os.close(read)


def test_events_left_when_the_loop_ends_are_reported() -> None:
    seen, on_error = recorder()

    async def forget_to_close() -> FuulClient:
        fuul = FuulClient(
            API_KEY, base_url="http://127.0.0.1:9/api/v1/", config=fast_config(), on_error=on_error
        )
        for i in range(7):
            fuul.track("trade", EVM, args={"i": i})
        return fuul

    fuul = asyncio.run(forget_to_close())
    assert sum(len(events) for events, _ in seen) == 7
    # The loop's end closed the client, which tried until its retries ran out.
    assert {error.reason for _, error in seen} == {"retries_exhausted"}
    assert fuul.stats().failed == 7


async def test_track_copies_args_so_later_changes_do_not_leak(
    sandbox: Sandbox, client: FuulClient
) -> None:
    args: dict[str, object] = {"size": 0}
    ids = []
    for i in range(3):
        args["size"] = i
        ids.append(client.track("trade", EVM, args=args))
    args["size"] = float("nan")  # would be refused, had the queue kept the caller's dict
    assert await client.flush(timeout=5)
    stored = {e.dedup_id: e.args for e in sandbox.events}
    assert [stored[i] for i in ids] == [{"size": 0}, {"size": 1}, {"size": 2}]
