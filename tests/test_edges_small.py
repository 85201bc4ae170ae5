"""Small edges: the import checkpoint's permissions, one ``--time-scale`` for the
sandbox and the client, and large batch bodies built in steps."""

from __future__ import annotations

import argparse
import asyncio
import os
import stat
from pathlib import Path

import pytest

from aiofuul import DEFAULT_LIMITS, Event, FuulClient
from aiofuul.cli._checkpoint import Checkpoint, Fingerprint
from aiofuul.cli._common import add_client_arguments, limits_from_args
from aiofuul.models import encode_batch, encode_batch_in_steps
from aiofuul.sandbox.cli import add_sandbox_arguments, parse_time_scale, sandbox_from_args
from conftest import API_KEY, EVM, fast_config


def test_the_checkpoint_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "import.checkpoint"
    checkpoint = Checkpoint(input=Fingerprint("jsonl", 10, "ab" * 32))
    previous = os.umask(0o022)
    try:
        checkpoint.save(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        checkpoint.next_record = 5
        checkpoint.save(path)  # rewritten by replacing: the new file is private too
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        os.umask(previous)
    assert [p.name for p in tmp_path.iterdir()] == ["import.checkpoint"]
    assert Checkpoint.read(path) == checkpoint


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1/60", 1 / 60), ("1/60.0", 1 / 60), ("0.0167", 0.0167), ("0.5", 0.5), ("2", 2.0)],
)
def test_time_scale_takes_fractions_and_decimals(text: str, expected: float) -> None:
    assert parse_time_scale(text) == expected


@pytest.mark.parametrize("text", ["0", "-1", "1/0", "0/5", "x", "1/x", "inf", "nan", "1/2/3"])
def test_time_scale_refuses_what_is_not_a_positive_number(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_time_scale(text)


def _sandbox_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_sandbox_arguments(parser)
    return parser.parse_args(["--port", "0", *argv])


def _client_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_client_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize("text", ["1/60", "0.0167", "0.025"])
def test_the_sandbox_and_the_client_read_a_time_scale_alike(text: str) -> None:
    sandbox = sandbox_from_args(_sandbox_args("--time-scale", text))
    assert sandbox.limits == limits_from_args(_client_args("--time-scale", text))


@pytest.mark.slow
async def test_a_client_scaled_1_60_gets_no_429_from_a_sandbox_at_1_60() -> None:
    sandbox = sandbox_from_args(_sandbox_args("--time-scale", "1/60"))
    assert sandbox.limits == DEFAULT_LIMITS.scaled(1 / 60)
    config = fast_config(limits=DEFAULT_LIMITS.scaled(1 / 60))
    async with sandbox, FuulClient(API_KEY, base_url=sandbox.url, config=config) as fuul:
        # More than one window holds (100 single + 10 batches of 100 a second), so the
        # burst reuses slots a period after their first use: where periods that differ
        # by a rounding would draw 429s.
        for i in range(1200):
            fuul.track("trade", EVM, args={"i": i})
        assert await fuul.flush(timeout=10)
        stats = fuul.stats()
    assert stats.delivered == 1200
    assert stats.rate_limited_single == stats.rate_limited_batch == 0


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
