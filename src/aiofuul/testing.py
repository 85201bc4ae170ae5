"""pytest fixtures for testing code that uses aiofuul, against a real sandbox server.

Enable them in your ``conftest.py``::

    pytest_plugins = ["aiofuul.testing"]

and use them in async tests (pytest-asyncio)::

    async def test_signup_is_tracked(fuul_sandbox):
        await my_app.signup("alice@example.com", fuul_base_url=fuul_sandbox.url)
        assert fuul_sandbox.stored_count("signup-alice") == 1

    async def test_trade(fuul_client, fuul_sandbox):
        dedup_id = fuul_client.track("trade", user, args={"size": 2})
        await fuul_client.flush()
        assert fuul_sandbox.stored_count(dedup_id) == 1

``fuul_sandbox`` is a started :class:`aiofuul.sandbox.Sandbox` that accepts any API
key, with the documented rate limits and no faults; change ``fuul_sandbox.faults`` or
``fuul_sandbox.limits`` in the test to make it misbehave. It is stopped after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from .client import FuulClient
from .sandbox import Sandbox

__all__ = ["fuul_client", "fuul_sandbox"]


@pytest_asyncio.fixture
async def fuul_sandbox() -> AsyncIterator[Sandbox]:
    """A started sandbox Fuul API on loopback (``fuul_sandbox.url``), stopped after the test."""
    async with Sandbox() as sb:
        yield sb


@pytest_asyncio.fixture
async def fuul_client(fuul_sandbox: Sandbox) -> AsyncIterator[FuulClient]:
    """A :class:`~aiofuul.FuulClient` pointed at ``fuul_sandbox``, closed after the test
    (closing delivers what is queued, so the sandbox's store is complete by then)."""
    async with FuulClient("sandbox-test-key", base_url=fuul_sandbox.url) as fuul:
        yield fuul
