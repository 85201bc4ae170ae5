"""Shared fixtures: a sandbox on loopback with the documented limits compressed to
one period per second, and a client configured to match (fast retries, short linger)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from aiofuul import DEFAULT_LIMITS, ClientConfig, FuulClient, Limits, RetryPolicy, User
from aiofuul.sandbox import Sandbox

#: The documented limits with a one-second period: 100/s single, 10/s batch.
FAST_LIMITS: Limits = DEFAULT_LIMITS.scaled(1 / 60)
#: Retries measured in milliseconds, so failure tests stay fast.
FAST_RETRY = RetryPolicy(max_attempts=12, initial_backoff=0.01, max_backoff=0.2, max_elapsed=30.0)
API_KEY = "sk_test_0123456789abcdef"

EVM = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")


def fast_config(**changes: object) -> ClientConfig:
    """A ClientConfig for tests: compressed limits, fast retries, 2 s timeout."""
    base = ClientConfig(limits=FAST_LIMITS, retry=FAST_RETRY, timeout=2.0, linger=0.05)
    return base.with_(**changes) if changes else base


@pytest.fixture
def evm_user() -> User:
    return EVM


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """A sandbox with the compressed limits; tests may change ``sb.faults``/``sb.limits``."""
    async with Sandbox(limits=FAST_LIMITS) as sb:
        yield sb


@pytest_asyncio.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[FuulClient]:
    """A FuulClient pointed at ``sandbox`` with :func:`fast_config`."""
    async with FuulClient(API_KEY, base_url=sandbox.url, config=fast_config()) as fuul:
        yield fuul
