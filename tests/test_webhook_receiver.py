"""examples/webhook_receiver_fastapi.py served for real by uvicorn on loopback, end to
end: events tracked with a FuulClient -> the sandbox attributes them -> it POSTs
``reward.earned`` -> the receiver stores each movement once and handles it once, though
the sandbox retried after a planted 500 (before, or after, the receiver stored it)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import msgspec
import pytest
import pytest_asyncio

from aiofuul import FuulClient, User, webhooks
from aiofuul.sandbox import Sandbox, WebhookRetry
from conftest import API_KEY, FAST_LIMITS, fast_config, free_port

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "webhook_receiver_fastapi.py"
SECRET_PATH = "/fuul/hooks/3f9c2a7e5b1d4c8e"
RETRY = WebhookRetry(attempts=6, initial_backoff=0.01, max_backoff=0.05, timeout=5.0)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGI = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("webhook_receiver_fastapi", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # FastAPI resolves the module's annotations by name
    spec.loader.exec_module(module)
    return module


@dataclass
class Served:
    """The example's receiver on loopback: ``url``, the rewards its handler saw,
    its database, and ``faults``: what to do to the next requests ("before": answer
    500 without reaching the app; "after": let the app store it, then answer 500)."""

    url: str
    db: Path
    handled: list[webhooks.RewardEarned] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[str, int]]:
        with contextlib.closing(sqlite3.connect(self.db)) as db:
            return db.execute("SELECT key, done FROM inbox ORDER BY rowid").fetchall()


def _planting(app: ASGI, served: Served) -> ASGI:
    """``app`` with ``served.faults`` applied to HTTP requests, in order."""

    async def wrapped(
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        fault = served.faults.pop(0) if scope["type"] == "http" and served.faults else None
        if fault is None:
            return await app(scope, receive, send)
        start = {"type": "http.response.start", "status": 500, "headers": []}
        if fault == "before":
            await send(start)
            await send({"type": "http.response.body", "body": b"planted"})
            return None

        async def replaced(message: Message) -> None:  # "after": the app's answer is lost
            if message["type"] == "http.response.start":
                await send(start)
            elif not message.get("more_body"):
                await send({"type": "http.response.body", "body": b"planted"})

        return await app(scope, receive, replaced)

    return wrapped


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    state = Served(f"http://127.0.0.1:{port}{SECRET_PATH}", tmp_path / "rewards.db")

    async def handle(reward: webhooks.RewardEarned) -> None:
        state.handled.append(reward)

    app = _example().create_app(str(state.db), SECRET_PATH, handle)
    config = uvicorn.Config(_planting(app, state), lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 30
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield state
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition``; the generous deadline only fails on a real hang."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


USERS = [User(f"0x{n:040x}", "evm_address") for n in range(1, 6)]


@pytest.mark.parametrize("planted", ["before", "after"])
async def test_each_movement_is_stored_and_handled_once_despite_a_planted_500(
    served: Served, planted: str
) -> None:
    served.faults.append(planted)
    sb = Sandbox(limits=FAST_LIMITS, webhook_url=served.url, webhook_retry=RETRY)
    assert sb.webhooks is not None
    async with sb, FuulClient(API_KEY, base_url=sb.url, config=fast_config()) as fuul:
        for n in range(20):
            fuul.track("trade", USERS[n % len(USERS)], dedup_id=f"trade-{n}", args={"n": n})
        fuul.track("trade", USERS[0], dedup_id="trade-0")  # a repeat: no second payout
        assert await fuul.flush(timeout=30)
        await asyncio.wait_for(sb.webhooks.join(), 30)
        stored = len(sb.events)
    statuses = Counter(a.status for a in sb.webhooks.attempts)
    assert stored == 20 and statuses == {200: 20, 500: 1}  # the sandbox retried once
    assert (sb.webhooks.delivered, sb.webhooks.failed) == (20, 0)
    posted = {webhooks.parse(a.body).key for a in sb.webhooks.attempts}
    assert len(posted) == 20
    await _until(lambda: len(served.handled) >= 20, "the worker to handle every movement")
    rows = served.rows()
    assert len(rows) == 20 and {key for key, _ in rows} == posted  # stored once each
    await _until(lambda: all(done for _, done in served.rows()), "every row marked done")
    assert Counter(r.key for r in served.handled) == Counter(posted)  # handled once each


async def test_the_receiver_answers_bad_other_and_repeated_bodies(served: Served) -> None:
    movement = {
        "type": "point",
        "reason": "affiliate_payout",
        "status": "accepted",
        "user_identifier": USERS[0].identifier,
        "amount": 5,
    }
    reward = {"event_type": "reward.earned", "movement": movement}
    async with aiohttp.ClientSession() as http:

        async def post(payload: Any) -> tuple[int, Any]:
            kwargs = {"data": payload} if isinstance(payload, bytes) else {"json": payload}
            async with http.post(served.url, **kwargs) as response:
                return response.status, await response.json()

        first, again = await post(reward), await post(reward)
        assert first == (
            200,
            {"key": webhooks.parse(msgspec.json.encode(reward)).key, "duplicate": False},
        )
        assert again == (200, {"key": first[1]["key"], "duplicate": True})
        assert await post({"event_type": "reward.claimed"}) == (200, {"ignored": "reward.claimed"})
        status, answer = await post({"event_type": "reward.earned", "movement": {"type": "point"}})
        assert status == 400 and answer["error"].startswith("movement.reason")
        assert (await post(b"not json"))[0] == 400
        async with http.post(served.url.replace(SECRET_PATH, "/webhooks/fuul"), json=reward) as r:
            assert r.status == 404  # only the secret path takes webhooks
    await _until(lambda: len(served.handled) == 1, "the worker")
    assert len(served.rows()) == 1


# -- as the docs (docs/api/webhooks.md) run them: two real processes --------------


def _spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


async def _listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, f"{proc.args!r} exited with {proc.returncode}"
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        assert time.monotonic() < deadline, f"{proc.args!r} never listened on {port}"
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_the_documented_commands_end_to_end(tmp_path: Path) -> None:
    """``uvicorn ... webhook_receiver_fastapi:app`` and ``python -m aiofuul.sandbox
    --webhook-url``, configured only by the environment and the command line."""
    receiver_port, sandbox_port = free_port(), free_port()
    db = tmp_path / "rewards.db"
    env = {**os.environ, "FUUL_REWARDS_DB": str(db), "FUUL_WEBHOOK_PATH": SECRET_PATH}
    receiver = _spawn(
        ["uvicorn", "--app-dir", str(EXAMPLE.parent), "webhook_receiver_fastapi:app",
         "--host", "127.0.0.1", "--port", str(receiver_port)],
        env,
    )  # fmt: skip
    sandbox = _spawn(
        ["aiofuul.sandbox", "--port", str(sandbox_port), "--time-scale", "1/60",
         "--webhook-url", f"http://127.0.0.1:{receiver_port}{SECRET_PATH}"],
    )  # fmt: skip
    try:
        await _listening(receiver_port, receiver)
        await _listening(sandbox_port, sandbox)
        base = f"http://127.0.0.1:{sandbox_port}/api/v1/"
        async with FuulClient(API_KEY, base_url=base, config=fast_config()) as fuul:
            for n in range(10):
                fuul.track("deposit", USERS[n % len(USERS)], dedup_id=f"dep-{n}")
            assert await fuul.flush(timeout=30)

        def done() -> int:
            if not db.exists():
                return 0
            with contextlib.closing(sqlite3.connect(db)) as conn:
                return int(conn.execute("SELECT count(*) FROM inbox WHERE done = 1").fetchone()[0])

        await _until(lambda: done() >= 10, "ten movements handled by the receiver process")
        with contextlib.closing(sqlite3.connect(db)) as conn:
            assert conn.execute("SELECT count(*) FROM inbox").fetchone()[0] == 10
    finally:
        for proc in (sandbox, receiver):
            proc.terminate()
            _, err = proc.communicate(timeout=30)
            assert b"Traceback" not in err, err.decode(errors="replace")
