"""The fixtures aiofuul.testing offers users work as documented (loaded with
``-p aiofuul.testing`` in pyproject.toml, as a user may do with ``pytest_plugins``)."""

from __future__ import annotations

from aiofuul import FuulClient
from aiofuul.sandbox import Sandbox
from conftest import EVM


async def test_fuul_client_delivers_to_fuul_sandbox(
    fuul_client: FuulClient, fuul_sandbox: Sandbox
) -> None:
    dedup_id = fuul_client.track("trade", EVM, args={"size": 2})
    assert await fuul_client.flush(timeout=5)
    assert fuul_sandbox.stored_count(dedup_id) == 1
    assert await fuul_client.event_status(EVM, "trade")
