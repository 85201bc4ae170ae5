"""A key the API refuses (401 bad key, 403 missing scope), against the sandbox.

A key that never worked is said at once, in one ERROR naming its problem (never its
value); a key revoked mid-stream pauses the lanes, which probe, while the events wait
without being charged attempts (only ``max_elapsed`` reports them). Direct calls on a
refused lane raise at once, and ``flush()`` without a timeout stops waiting after the
retry policy's ``max_attempts`` refusals in a row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from aiofuul import (
    AuthenticationError,
    FuulClient,
    PermissionDeniedError,
    RetryPolicy,
    UndeliveredError,
)
from aiofuul.sandbox import Sandbox
from aiofuul.wire.models import Event
from conftest import EVM, FAST_LIMITS, fast_config

GOOD = "sk_good_0123456789"
BAD = "sk_bad_9876543210"
# Attempts would run out in a fraction of a second; max_elapsed is far away.
PATIENT = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05, max_elapsed=60.0)


async def until(condition: Callable[[], bool], what: str, deadline: float = 20.0) -> None:
    """Poll ``condition``; the deadline only fails on a real hang."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not condition():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "refused" in r.getMessage() and r.levelname == "ERROR"]


async def test_a_key_that_never_worked_is_said_once_and_its_events_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiofuul")
    errors: list[UndeliveredError] = []
    async with Sandbox(limits=FAST_LIMITS, keys={GOOD: ["service_role"]}) as sb:
        config = fast_config(retry=PATIENT)
        fuul = FuulClient(
            BAD, base_url=sb.url, config=config, on_error=lambda e, err: errors.append(err)
        )
        async with fuul:
            for i in range(30):
                fuul.track("trade", EVM, args={"i": i})
            # Many more refusals than max_attempts: the events are not charged for them.
            await until(lambda: sb.count(status=401) >= 4 * PATIENT.max_attempts, "probes")
            s = fuul.stats()
            assert (s.failed, s.queued) == (0, 30)
            await fuul.aclose(0.1)
    said = refusals(caplog)
    assert len(said) == 1, [r.getMessage() for r in said]
    text = said[0].getMessage()
    assert "401" in text and "from the first request" in text and "FUUL_API_KEY" in text
    assert BAD not in caplog.text
    assert {e.reason for e in errors} == {"shutdown"}


async def test_a_key_without_the_scope_is_named_by_the_scope(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiofuul")
    sb = Sandbox(limits=FAST_LIMITS, keys={GOOD: ["send:tracking_event"]})
    async with sb, FuulClient(GOOD, base_url=sb.url, config=fast_config(retry=PATIENT)) as fuul:
        fuul.track("trade", EVM)
        await until(lambda: sb.count(status=403) >= 2 * PATIENT.max_attempts, "probes")
        assert fuul.stats().failed == 0
        await fuul.aclose(0.1)
    said = refusals(caplog)
    assert len(said) == 1
    assert "lacks the send:trigger_event scope" in said[0].getMessage()
    assert GOOD not in caplog.text


async def test_a_key_revoked_mid_stream_keeps_its_backlog_until_it_comes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiofuul")
    async with Sandbox(limits=FAST_LIMITS, keys={GOOD: ["service_role"]}) as sb:
        async with FuulClient(GOOD, base_url=sb.url, config=fast_config(retry=PATIENT)) as fuul:
            before = [fuul.track("trade", EVM, args={"i": i}) for i in range(10)]
            assert await fuul.flush(10)
            sb._keys = {}  # revoked
            during = [fuul.track("trade", EVM, args={"i": i}) for i in range(300)]
            await until(lambda: sb.count(status=401) >= 4 * PATIENT.max_attempts, "probes")
            s = fuul.stats()
            assert s.failed == 0 and s.queued == 300  # a backlog is not burnt by probes
            sb._keys = None  # any key works again
            assert await fuul.flush(20)
            assert fuul.stats().delivered == 310
        assert set(sb.stored_ids()) == set(before + during)
    said = refusals(caplog)
    assert len(said) == 1 and "accepted until now" in said[0].getMessage()
    assert any("lane resumed" in r.getMessage() for r in caplog.records)


async def test_flush_without_a_timeout_is_bounded_by_the_retry_policy() -> None:
    sb = Sandbox(limits=FAST_LIMITS, keys={GOOD: ["service_role"]})
    async with sb, FuulClient(BAD, base_url=sb.url, config=fast_config(retry=PATIENT)) as fuul:
        for _ in range(5):
            fuul.track("trade", EVM)
        # Would wait max_elapsed (60 s) for the events to be reported; returns once the
        # key was refused max_attempts times in a row, the events still queued.
        assert await asyncio.wait_for(fuul.flush(), 30) is False
        assert sb.count(status=401) >= PATIENT.max_attempts
        assert fuul.stats().queued == 5
        await fuul.aclose(0.1)


class FrozenClock:
    """A clock that never moves: a lane's backoff never ends by itself."""

    def __call__(self) -> float:
        return 1000.0


async def test_direct_calls_on_a_refused_lane_raise_at_once() -> None:
    async with Sandbox(limits=FAST_LIMITS, keys={GOOD: ["service_role"]}) as sb:
        fuul = FuulClient(BAD, base_url=sb.url, config=fast_config(), clock=FrozenClock())
        async with fuul:
            fuul.track("trade", EVM)
            await until(lambda: sb.count(status=401) >= 1, "the first refusal")
            # The lanes are refused and, on a clock that never moves, never probe again.
            # A direct call does not wait for that backoff: it is sent and raises.
            with pytest.raises(AuthenticationError):
                await asyncio.wait_for(fuul.send_event("trade", EVM), 20)
            batch = [Event("trade", EVM, "d-1")]
            with pytest.raises(AuthenticationError):
                await asyncio.wait_for(fuul.send_batch(batch), 20)
            await fuul.aclose(0.1)


async def test_direct_call_with_a_missing_scope_names_it() -> None:
    sb = Sandbox(limits=FAST_LIMITS, keys={GOOD: ["send:tracking_event"]})
    async with sb, FuulClient(GOOD, base_url=sb.url, config=fast_config()) as fuul:
        with pytest.raises(PermissionDeniedError) as info:
            await fuul.send_event("trade", EVM)
        assert info.value.needed_scope == "send:trigger_event"
