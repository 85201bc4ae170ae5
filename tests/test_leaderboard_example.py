"""examples/leaderboard_fastapi.py serves a leaderboard from the sandbox, cached: many
visitors, one request to Fuul."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import httpx
import pytest

from aiofuul.sandbox import Sandbox
from aiofuul.wire.models import Event
from conftest import EVM

EXAMPLE = Path(__file__).parent.parent / "examples" / "leaderboard_fastapi.py"


async def test_the_leaderboard_is_served_from_the_cache(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUUL_API_KEY", "k")
    monkeypatch.setenv("FUUL_BASE_URL", sandbox.url)
    sandbox.state.store_events(
        Event(name="trade", user=EVM, dedup_id=f"t{i}", args={"amount": 3}) for i in range(4)
    )
    spec = importlib.util.spec_from_file_location("leaderboard_fastapi", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    app = module.app
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            answers = [
                (await http.get("/leaderboard", params={"size": 5})).json() for _ in range(20)
            ]
    assert answers[0] == {
        "total": 1, "rows": [{"rank": 1, "address": EVM.identifier, "points": "12.0"}]
    }  # fmt: skip
    assert all(a == answers[0] for a in answers)
    assert sandbox.count("payouts/leaderboard/points") == 1
