"""Serve a leaderboard from FastAPI, cached for a minute.

Fuul computes leaderboards with a lag of up to an hour, so a minute of cache costs
nothing and keeps the page within the leaderboards' rate limit (100 requests a minute
by default) however many visitors come: one request per minute and board size, and
concurrent visitors of an expired entry wait for the same request (no stampede).

    FUUL_API_KEY=... uvicorn examples.leaderboard_fastapi:app
    # against a local sandbox: aiofuul sandbox, then FUUL_BASE_URL=http://127.0.0.1:PORT/api/v1/
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Query, Request

from aiofuul import FuulClient

TTL = 60.0  # seconds


class TTLCache:
    """Answers by key for ``ttl`` seconds; one fetch at a time per key."""

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._entries: dict[Any, tuple[float, Any]] = {}
        self._locks: dict[Any, asyncio.Lock] = {}

    async def get(self, key: Any, fetch: Callable[[], Awaitable[Any]]) -> Any:
        entry = self._entries.get(key)
        if entry is not None and time.monotonic() - entry[0] < self.ttl:
            return entry[1]
        async with self._locks.setdefault(key, asyncio.Lock()):
            entry = self._entries.get(key)  # filled while we waited?
            if entry is None or time.monotonic() - entry[0] >= self.ttl:
                entry = self._entries[key] = (time.monotonic(), await fetch())
            return entry[1]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with FuulClient() as fuul:  # key from FUUL_API_KEY
        app.state.fuul = fuul
        app.state.cache = TTLCache(TTL)
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/leaderboard")
async def leaderboard(request: Request, size: int = Query(10, ge=1, le=100)) -> dict[str, Any]:
    fuul: FuulClient = request.app.state.fuul

    async def fetch() -> dict[str, Any]:
        page = await fuul.leaderboards.points(page_size=size)
        return {
            "total": page.total,
            "rows": [
                {"rank": r.rank, "address": r.address, "points": str(r.total_amount)}
                for r in page.items
            ],
        }

    result: dict[str, Any] = await request.app.state.cache.get(("points", size), fetch)
    return result
