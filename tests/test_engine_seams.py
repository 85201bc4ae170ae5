"""The engine's named seams: the observer API on the client (what metrics use), and the
backlog as the one owner of the queue (``max_queue`` applies to adopted events too)."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

import aiofuul
from aiofuul import ClientConfig, FuulClient, User
from aiofuul.engine.backlog import Backlog
from aiofuul.engine.ledger import Ledger
from aiofuul.engine.seams import Settlement
from aiofuul.testing import MockTransport, respond
from aiofuul.wire.models import Event

USER = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")
SRC = Path(aiofuul.__file__).parent


async def test_an_observer_hears_every_settlement_and_can_be_removed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = MockTransport(
        lambda request: respond(409) if request.json()["args"]["i"] == 1 else respond(201)
    )
    seen: list[tuple[Settlement, list[float]]] = []

    def observe(outcome: Settlement, waited: Sequence[float]) -> None:
        seen.append((outcome, list(waited)))

    def broken(outcome: Settlement, waited: Sequence[float]) -> None:
        raise RuntimeError("a broken observer")

    async with FuulClient("k", transport=transport, config=ClientConfig(linger=0.0)) as fuul:
        remove = fuul.add_observer(observe)
        fuul.add_observer(broken)
        for i in range(3):
            fuul.track("trade", USER, args={"i": i})
        assert await fuul.flush(10)
        assert sorted(outcome for outcome, _ in seen) == ["delivered", "delivered", "duplicates"]
        assert all(len(w) == 1 and w[0] >= 0 for _, w in seen)
        assert fuul.stats().delivered == 2  # the broken observer changed nothing
        remove()
        fuul.track("trade", USER, args={"i": 5})
        assert await fuul.flush(10)
        assert len(seen) == 3
    assert "a settlement observer raised" in caplog.text


async def test_adopted_events_meet_max_queue_like_tracked_ones() -> None:
    config = ClientConfig(max_queue=5, queue_full="raise")
    ledger = Ledger(None, None, config.max_queue)
    woken: list[int] = []
    backlog = Backlog(config, ledger, lambda: 0.0, lambda: woken.append(1))
    backlog.adopt(Event("trade", USER, f"a{i}") for i in range(8))
    await asyncio.sleep(0)  # drops are told on the next loop turn
    assert (len(backlog), ledger.tracked, ledger.dropped) == (5, 8, 3)
    assert woken


def _writes_to_backlog(tree: ast.AST) -> list[int]:
    """Lines assigning to an attribute of something named like the backlog."""
    lines = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and "backlog" in ast.unparse(target.value):
                lines.append(node.lineno)
            if isinstance(target, ast.Attribute) and ast.unparse(target.value).endswith(".queue"):
                lines.append(node.lineno)
    return lines


def test_only_the_backlog_writes_its_attributes() -> None:
    found = {
        path.name: lines
        for path in SRC.glob("*.py")
        if path.name != "backlog.py" and (lines := _writes_to_backlog(ast.parse(path.read_text())))
    }
    assert found == {}


def test_the_ledger_counts_without_setattr() -> None:
    assert "setattr(" not in (SRC / "engine" / "ledger.py").read_text()


def test_the_engine_package_is_only_its_glossary() -> None:
    tree = ast.parse((SRC / "engine" / "__init__.py").read_text())
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr)
    glossary = ast.get_docstring(tree) or ""
    for word in ("accept", "queue", "settle", "lane", "flight", "launch", "slot", "outcome"):
        assert f"\n{word}" in glossary, word
    for word in ("hand off", "adopt"):
        assert f"\n{word}\n" in glossary, word
