"""The sender cannot spin: whatever the shared limiter raises, requests are launched a
bounded number of times per backoff period, the failure is logged once (not per try),
and delivery resumes when the limiter gives slots again.

A real :class:`~aiofuul.engine.sender.Sender` on a fake clock, with a
:class:`~aiofuul.testing.MockTransport` that accepts everything and a fake shared
limiter; the test moves the clock and lets the loop run. No wall-clock bound.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest

from aiofuul import ClientConfig, Limits, RateLimit, RetryPolicy, User
from aiofuul.engine.lanes import make_lanes
from aiofuul.engine.limits import SlidingWindowLimiter
from aiofuul.engine.sender import Sender
from aiofuul.testing import MockTransport, respond
from aiofuul.wire.models import Event

USER = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")
MAX_BACKOFF = 1.0
RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=MAX_BACKOFF)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class RaisingLimiter:
    """A shared limiter that raises ``error`` on every acquire until :attr:`failing` is
    cleared (an ACL without @scripting, a bad URL option, a bug)."""

    down = False

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.failing = True
        self.tries = 0

    def watch(self, limiter: SlidingWindowLimiter) -> None:
        pass

    async def acquire(self, windows: list[tuple[str, RateLimit]]) -> str:
        self.tries += 1
        if self.failing:
            raise self.error
        return f"token-{self.tries}"

    async def release(self, windows: list[tuple[str, RateLimit]], token: str | None) -> None:
        pass


async def turn(times: int = 5) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("NOPERM this user has no permissions to run the 'evalsha' command"),
        TypeError("unexpected keyword argument 'bogus'"),
        ConnectionError(),
        ValueError(""),
    ],
    ids=["noperm", "bad-option", "connection", "empty-message"],
)
async def test_a_raising_shared_limiter_cannot_make_the_sender_spin(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aiofuul")
    clock = Clock()
    remote = RaisingLimiter(error)
    config = ClientConfig(limits=Limits(), retry=RETRY, linger=0.5)
    lanes = make_lanes(config.limits, config.retry, None, cast("Any", remote), clock)
    transport = MockTransport(lambda request: respond(201))
    sender = Sender(config, transport, lanes["single"], lanes["batch"], None, clock=clock)
    sender.start(asyncio.get_running_loop())
    try:
        for i in range(250):
            sender.enqueue(Event("trade", USER, f"e{i}", {"size": 1}))
        # 30 fake seconds in steps of 10 ms, the sender asked to look at every step.
        seconds, step = 30.0, 0.01
        for _ in range(int(seconds / step)):
            clock.now += step
            sender._dispatch(clock.now)
            await turn()
        # Per lane, each backoff period lets at most the requests that may wait for a
        # shared slot try once (max_in_flight // 2); a period is at least half its step,
        # the steps double from 0.01 s to MAX_BACKOFF (8 of them), then stay there.
        waiting = config.max_in_flight // 2
        periods = 8 + seconds / (MAX_BACKOFF / 2)
        assert 2 <= remote.tries <= 2 * waiting * (periods + 1)
        assert sender.stats().delivered == 0 and sender.stats().queued == 250
        failed = [r for r in caplog.records if "shared limiter failed" in r.getMessage()]
        assert 1 <= len(failed) <= 2  # once per lane for the whole spell, not per try
        assert not any("unexpectedly" in r.getMessage() for r in caplog.records)

        # The limiter works again: delivery resumes, said once per lane.
        remote.failing = False
        for _ in range(int(5 * MAX_BACKOFF / step)):
            clock.now += step
            sender._dispatch(clock.now)
            await turn()
            if sender.stats().delivered == 250:
                break
        assert sender.stats().delivered == 250
        back = [r for r in caplog.records if "gives slots again" in r.getMessage()]
        assert 1 <= len(back) <= 2
    finally:
        await sender.close(0)
        await turn()
