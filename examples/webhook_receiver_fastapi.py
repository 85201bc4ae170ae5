"""FastAPI: receive Fuul's ``reward.earned`` webhooks (needs fastapi and uvicorn).

    FUUL_WEBHOOK_PATH=/fuul/hooks/$(openssl rand -hex 16) FUUL_REWARDS_DB=rewards.db \\
        uvicorn --app-dir examples webhook_receiver_fastapi:app --port 8000

Try it against a local sandbox, which POSTs a webhook for each payout it makes:
``aiofuul sandbox --webhook-url http://127.0.0.1:8000/fuul/hooks/...``.

- It answers at once: the handler only parses the body and records the movement in an
  inbox (one ``INSERT OR IGNORE`` into SQLite), then answers 200. A background worker
  does the real work (:func:`handle_reward`: credit the user, notify...), so a slow
  database never makes Fuul time out and retry.
- It is idempotent by movement: Fuul retries on a non-2xx answer or a timeout, so one
  movement can arrive twice. The inbox's primary key is ``RewardEarned.key``, so each is
  stored once, and the worker handles each stored row once. A 200 is only sent once the
  row is committed: a crash after it loses nothing (the worker resumes pending rows).
- It checks no signature: Fuul publishes no signature scheme. Restrict the endpoint
  instead: a secret path (``FUUL_WEBHOOK_PATH``, long and random) and an allow-list of
  Fuul's source addresses at your proxy.

``create_app(db_path, path, handle)`` builds one (tests/test_webhook_receiver.py serves
it with uvicorn); ``app`` is the one configured from the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from aiofuul import WebhookError, webhooks

log = logging.getLogger("webhook_receiver")
Handler = Callable[[webhooks.RewardEarned], Awaitable[None]]
# How often the worker looks for rows a failed handler left pending.
RETRY_PENDING_EVERY = 30.0


async def handle_reward(reward: webhooks.RewardEarned) -> None:
    """The real work, once per movement: replace with yours. Every status arrives
    (``pending``, then maybe ``accepted`` or ``rejected``): credit only ``accepted``."""
    log.info(
        "%s %s %s %s to %s (%s)",
        reward.status, reward.amount, reward.currency.name if reward.currency else "?",
        reward.reason, reward.user_identifier, reward.key,
    )  # fmt: skip


class Inbox:
    """The movements received, one row per ``RewardEarned.key``; ``done`` once handled."""

    def __init__(self, path: str):
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS inbox (key TEXT PRIMARY KEY, body BLOB NOT NULL,"
            " done INTEGER NOT NULL DEFAULT 0)"
        )
        self.db.commit()

    def add(self, reward: webhooks.RewardEarned, body: bytes) -> bool:
        """Record a movement; False when it was already recorded (a retry)."""
        # The commit waits for one fsync (a few ms on a disk; a repeat costs no fsync):
        # that is the price of a 200 that survives a crash. With a networked database,
        # use its async driver here rather than block the loop.
        with self.db:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO inbox (key, body) VALUES (?, ?)", (reward.key, body)
            )
        return cursor.rowcount == 1

    def pending(self) -> list[tuple[str, bytes]]:
        return self.db.execute(
            "SELECT key, body FROM inbox WHERE done = 0 ORDER BY rowid"
        ).fetchall()

    def mark_done(self, key: str) -> None:
        with self.db:
            self.db.execute("UPDATE inbox SET done = 1 WHERE key = ?", (key,))


async def _work(inbox: Inbox, wake: asyncio.Event, handle: Handler) -> None:
    """Handle each pending row once, in arrival order; a row whose handler fails stays
    pending and is tried again later."""
    while True:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(wake.wait(), RETRY_PENDING_EVERY)
        wake.clear()
        for key, body in inbox.pending():
            try:
                await handle(webhooks.parse(body))
            except Exception:
                log.exception("handling movement %s failed; it stays pending", key)
                continue
            # A crash between the two lines handles this row again after a restart:
            # make the handler's own writes idempotent by reward.key too.
            inbox.mark_done(key)


def create_app(
    db_path: str, path: str = "/webhooks/fuul", handle: Handler = handle_reward
) -> FastAPI:
    """A receiver storing movements in SQLite at ``db_path``, served at ``path``."""
    state: dict[str, Inbox] = {}
    wake = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["inbox"] = inbox = Inbox(db_path)
        worker = asyncio.create_task(_work(inbox, wake, handle))
        wake.set()  # rows left pending by the last run
        try:
            yield
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            inbox.db.close()

    app = FastAPI(lifespan=lifespan)

    @app.post(path)
    async def receive(request: Request) -> Response:
        body = await request.body()
        try:
            reward = webhooks.parse(body)
        except WebhookError as exc:
            if exc.event_type is not None:
                # Another kind of webhook: retrying cannot make it one we know. Say yes.
                return JSONResponse({"ignored": exc.event_type})
            return JSONResponse({"error": str(exc)}, status_code=400)
        new = state["inbox"].add(reward, body)
        if new:
            wake.set()
        return JSONResponse({"key": reward.key, "duplicate": not new})

    return app


app = create_app(
    os.environ.get("FUUL_REWARDS_DB", "rewards.db"),
    os.environ.get("FUUL_WEBHOOK_PATH", "/webhooks/fuul"),
)
