"""Batch bodies built in steps: the same bytes as in one go, and a loop that keeps
running between large events."""

from __future__ import annotations

import asyncio

import pytest

from aiofuul import Event
from aiofuul.wire.models import encode_batch, encode_batch_in_steps
from conftest import EVM


def _events(count: int, blob: int) -> list[Event]:
    return [Event("trade", EVM, dedup_id=f"e-{i}", args={"blob": "x" * blob}) for i in range(count)]


async def _turns_while(work: asyncio.Future[bytes]) -> tuple[bytes, int]:
    """Run ``work``, counting the loop turns another task gets meanwhile."""
    turns = 0

    async def tick() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    start = turns
    body = await work
    ticker.cancel()
    return body, turns - start


@pytest.mark.parametrize(("count", "blob"), [(0, 0), (1, 10), (100, 200), (7, 300_000)])
async def test_a_batch_built_in_steps_is_the_same_body(count: int, blob: int) -> None:
    events = _events(count, blob)
    assert await encode_batch_in_steps(events) == encode_batch(events)


async def test_a_batch_of_large_events_lets_the_loop_run_between_them() -> None:
    # 30 events of 1 MB: one encode call held the loop ~100 ms (a third of a second for
    # the 100 MB batch of the report); in steps, others run after every event or so.
    events = _events(30, 1_000_000)
    body, turns = await _turns_while(asyncio.ensure_future(encode_batch_in_steps(events)))
    assert body == encode_batch(events)
    assert turns >= 29


async def test_a_batch_of_ordinary_events_is_built_in_one_go() -> None:
    events = _events(100, 200)
    _, turns = await _turns_while(asyncio.ensure_future(encode_batch_in_steps(events)))
    assert turns <= 1
