"""One ``--time-scale`` for the sandbox and the client: how it is read, and that a
client and a sandbox scaled alike never disagree (no 429)."""

from __future__ import annotations

import argparse

import pytest

from aiofuul import DEFAULT_LIMITS, FuulClient
from aiofuul.cli._common import add_client_arguments, limits_from_args
from aiofuul.sandbox.cli import add_sandbox_arguments, parse_time_scale, sandbox_from_args
from conftest import API_KEY, EVM, fast_config


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
