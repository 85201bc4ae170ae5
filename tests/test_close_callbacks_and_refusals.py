"""No event lost at the edges: cancelled shutdowns, wrong loops, close races, callbacks
that track again, async callbacks, transient refusals. Each test failed before its fix."""

from __future__ import annotations

import asyncio
import logging
import re
import threading

import pytest

from aiofuul import ClientStateError, Event, FuulClient, Limits, RetryPolicy, UndeliveredError
from aiofuul.sandbox import Faults, Sandbox
from conftest import API_KEY, EVM, fast_config, wait_until


def accounted(fuul: FuulClient) -> None:
    s = fuul.stats()
    assert s.tracked == s.delivered + s.duplicates + s.rejected + s.failed + s.dropped + s.queued


# -- 1. a cancelled aclose() still settles every event -----------------------------------
async def test_cancelled_aclose_reports_the_events_in_flight(sandbox: Sandbox) -> None:
    sandbox.faults = Faults(latency=5.0)
    reported: list[str] = []

    def on_error(events: list[Event], error: UndeliveredError) -> None:
        reported.extend(e.dedup_id for e in events if error.reason == "shutdown")

    fuul = FuulClient(API_KEY, base_url=sandbox.url, config=fast_config(), on_error=on_error)
    await fuul.start()
    ids = [fuul.track("trade", EVM) for _ in range(30)]
    await wait_until(lambda: fuul.stats().in_flight > 0, what="requests in flight")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(fuul.aclose(), 0.3)
    await asyncio.sleep(0)
    s = fuul.stats()
    assert s.queued == 0 and s.in_flight == 0
    assert sorted(reported) == sorted(ids)
    accounted(fuul)


# -- 2. aclose() on another loop changes nothing -----------------------------------------
def test_aclose_on_another_loop_is_refused_before_anything_changes(sandbox_url: str) -> None:
    async def start() -> FuulClient:
        fuul = FuulClient(API_KEY, base_url=sandbox_url, config=fast_config())
        await fuul.start()
        fuul.track("trade", EVM)
        return fuul

    loop = asyncio.new_event_loop()
    try:
        fuul = loop.run_until_complete(start())
        with pytest.raises(ClientStateError, match="event loop this FuulClient belongs to"):
            asyncio.run(fuul.aclose())
        assert fuul.stats().queued == 1
        loop.run_until_complete(fuul.aclose())  # the right loop: still works
        assert fuul.stats().delivered == 1
    finally:
        loop.close()


@pytest.fixture
def sandbox_url() -> object:
    """A sandbox on a loop in a thread of its own, for tests that run several loops."""
    ready = threading.Event()
    box: dict[str, object] = {}

    def serve() -> None:
        loop = asyncio.new_event_loop()
        sb = Sandbox()
        loop.run_until_complete(sb.start())
        box["sb"], box["loop"] = sb, loop
        ready.set()
        loop.run_forever()
        loop.run_until_complete(sb.stop())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(5)
    sb = box["sb"]
    assert isinstance(sb, Sandbox)
    yield sb.url
    loop = box["loop"]
    assert isinstance(loop, asyncio.AbstractEventLoop)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


# -- 3. track_threadsafe() racing aclose() -----------------------------------------------
async def test_track_threadsafe_racing_aclose_is_refused_or_reported(sandbox: Sandbox) -> None:
    settled: list[str] = []

    def on_error(events: list[Event], error: UndeliveredError) -> None:
        settled.extend(e.dedup_id for e in events)

    fuul = FuulClient(API_KEY, base_url=sandbox.url, config=fast_config(), on_error=on_error)
    await fuul.start()
    # The thread passes the client's checks, then the close runs to its end before the
    # thread hands its event over: the worst interleaving, forced.
    checked, closed = threading.Event(), threading.Event()
    make = fuul._events.make

    def slow_make(*args: object, **kwargs: object) -> Event:
        checked.set()
        closed.wait(5)
        return make(*args, **kwargs)  # type: ignore[arg-type]

    fuul._events.make = slow_make  # type: ignore[method-assign]
    outcome: list[object] = []

    def producer() -> None:
        try:
            outcome.append(fuul.track_threadsafe("trade", EVM))
        except ClientStateError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=producer)
    thread.start()
    await asyncio.to_thread(checked.wait, 5)
    await fuul.aclose(1.0)
    closed.set()
    await asyncio.to_thread(thread.join, 5)
    for _ in range(5):
        await asyncio.sleep(0)
    (result,) = outcome
    if isinstance(result, str):  # accepted: then it must be reported
        assert settled == [result]
    accounted(fuul)
    assert fuul.stats().queued == 0


# -- 4. on_error that tracks again --------------------------------------------------------
async def test_on_error_that_tracks_again_runs_outside_track(sandbox: Sandbox) -> None:
    depth = deepest = 0
    calls = reported = 0

    async with FuulClient(
        API_KEY,
        base_url=sandbox.url,
        config=fast_config(max_queue=2, linger=10.0),
    ) as fuul:

        def on_error(events: list[Event], error: UndeliveredError) -> None:
            nonlocal depth, deepest, calls, reported
            calls += 1
            reported += len(events)
            depth += 1
            deepest = max(deepest, depth)
            try:
                if calls < 50:
                    fuul.track("again", EVM)  # the queue is full: dropped again
            finally:
                depth -= 1

        fuul._sender.ledger.on_error = on_error
        for _ in range(5):
            fuul.track("trade", EVM)
        await wait_until(lambda: reported >= 3, what="the drops reported")
        accounted(fuul)
        assert await fuul.flush(5)
    assert reported >= 3  # the drops of one loop turn come in one call
    assert deepest == 1  # never run inside another call's stack (nor inside track())
    accounted(fuul)


# -- 5. async def on_error is awaited -----------------------------------------------------
async def test_async_on_error_is_awaited(sandbox: Sandbox) -> None:
    seen: list[str] = []

    async def on_error(events: list[Event], error: UndeliveredError) -> None:
        await asyncio.sleep(0)
        seen.extend(e.dedup_id for e in events)

    config = fast_config(max_queue=1, linger=10.0)
    async with FuulClient(API_KEY, base_url=sandbox.url, config=config, on_error=on_error) as fuul:
        fuul.track("trade", EVM)
        dropped = fuul.track("trade", EVM)
    assert seen == [dropped]


async def test_shutdown_log_names_the_lost_dedup_ids(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="aiofuul")
    sandbox.faults = Faults(latency=5.0)
    fuul = FuulClient(API_KEY, base_url=sandbox.url, config=fast_config())
    await fuul.start()
    ids = [fuul.track("trade", EVM, dedup_id=f"lost-{i}") for i in range(150)]
    await fuul.aclose(0.2)
    named = set(re.findall(r"lost-\d+", caplog.text))
    assert len(named) == 100  # the first hundred lost, by name
    assert "not listed" in caplog.text or "more" in caplog.text
    assert "pass on_error=" in caplog.text  # where to get every one
    assert len(ids) == 150 and fuul.stats().failed == 150


# -- 6. a transient 401/403/404 pauses the lane; it does not kill it ---------------------
async def test_a_transient_401_pauses_the_lanes_and_they_resume(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiofuul")
    async with Sandbox(keys={"other": ["service_role"]}) as sb:
        # Attempts do not run out in this test: under load, a probe event's jittered
        # backoffs (0.01 s and up) could spend 12 of them within the 0.3 s below.
        retry = RetryPolicy(max_attempts=1000, initial_backoff=0.01, max_backoff=0.2)
        config = fast_config(limits=Limits().scaled(1 / 60), retry=retry)
        async with FuulClient(API_KEY, base_url=sb.url, config=config) as fuul:
            first = [fuul.track("trade", EVM) for _ in range(20)]
            # Refused: the lanes pause and probe; a probe (a request after the first
            # wave) is refused too.
            await wait_until(lambda: sb.count(status=401) > config.max_in_flight, what="a probe")
            assert fuul.stats().failed == 0  # waiting, not failed
            sb._keys = None  # the gateway is back: every key works again
            later = [fuul.track("trade", EVM) for _ in range(20)]
            assert await fuul.flush(10)
            s = fuul.stats()
        assert s.delivered == 40 and s.failed == 0
        assert set(sb.stored_ids()) == set(first + later)
    paused = [r for r in caplog.records if "lane paused" in r.getMessage()]
    resumed = [r for r in caplog.records if "lane resumed" in r.getMessage()]
    assert 1 <= len(paused) <= 2 and 1 <= len(resumed) <= 2  # once per change, per lane
    # The first wave (max_in_flight requests) left before any answer; after it, each
    # lane probes one request at a time, backing off: a dozen at most before it resumed.
    refused = [r for r in sb.requests if r.status == 401]
    assert len(refused) <= config.max_in_flight + 12


async def test_a_lasting_401_reports_events_past_the_retry_deadline() -> None:
    retry = RetryPolicy(max_attempts=100, initial_backoff=0.01, max_backoff=0.05, max_elapsed=0.5)
    errors: list[UndeliveredError] = []
    async with Sandbox(keys={"other": ["service_role"]}) as sb:
        config = fast_config(retry=retry)
        async with FuulClient(
            API_KEY, base_url=sb.url, config=config, on_error=lambda e, err: errors.append(err)
        ) as fuul:
            for _ in range(5):
                fuul.track("trade", EVM)
            assert await fuul.flush(5)
            s = fuul.stats()
    assert s.failed == 5
    assert {e.reason for e in errors} == {"stopped"}
    assert "401" in str(errors[0])
