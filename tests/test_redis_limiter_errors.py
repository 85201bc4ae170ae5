"""The shared limiter falls back only when Redis is unreachable; an error Redis answers
for a bug is raised, and a flushed script cache (NOSCRIPT) is not an error at all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio
from redis import exceptions as rx

from aiofuul.engine.limits import RateLimit, SlidingWindowLimiter
from aiofuul.engine.redis_limiter import RedisLimiter

WINDOWS = [("single", RateLimit(100, 60.0))]


class FakeScript:
    """A registered script that fails as told (or returns ``result``)."""

    def __init__(self, owner: FakeRedis):
        self.owner = owner

    async def __call__(self, keys: list[str], args: list[Any]) -> int:
        self.owner.calls += 1
        if self.owner.error is not None:
            raise self.owner.error
        return 0


class FakeRedis:
    """Stands in for ``redis.asyncio.Redis``: the methods RedisLimiter uses."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.calls = 0

    def register_script(self, source: str) -> FakeScript:
        return FakeScript(self)

    async def aclose(self) -> None:
        pass


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRedis:
    client = FakeRedis()
    monkeypatch.setattr(redis.asyncio.Redis, "from_pool", lambda *args, **kwargs: client)
    return client


def _limiter() -> tuple[RedisLimiter, SlidingWindowLimiter]:
    remote = RedisLimiter("redis://127.0.0.1:1/0", "sk_test_key", hold=1.0)
    local = SlidingWindowLimiter(WINDOWS[0][1])
    remote.watch(local)
    return remote, local


UNREACHABLE = [
    rx.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    rx.TimeoutError("Timeout reading from socket"),
    rx.BusyLoadingError("Redis is loading the dataset in memory"),
    rx.ReadOnlyError("You can't write against a read only replica."),
    rx.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
    ConnectionResetError(104, "Connection reset by peer"),
    asyncio.TimeoutError(),
]


@pytest.mark.parametrize("error", UNREACHABLE, ids=lambda e: type(e).__name__)
async def test_unreachable_redis_falls_back_to_the_local_fraction(
    fake: FakeRedis, error: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    remote, local = _limiter()
    assert await remote.acquire(WINDOWS) is not None
    fake.error = error
    assert await remote.acquire(WINDOWS) is None
    assert remote.down
    assert local.capacity == 25  # a quarter of 100
    assert "shared limiter unreachable" in caplog.text
    # Within retry_interval, Redis is not asked again.
    calls = fake.calls
    assert await remote.acquire(WINDOWS) is None
    assert fake.calls == calls
    await remote.close()


@pytest.mark.parametrize(
    "error",
    [
        rx.ResponseError("ERR Error running script: user_script:3: bad argument"),
        rx.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        TypeError("unsupported operand"),
    ],
    ids=["script-error", "wrongtype", "type-error"],
)
async def test_a_bug_is_raised_not_taken_for_an_outage(
    fake: FakeRedis, error: BaseException
) -> None:
    remote, local = _limiter()
    fake.error = error
    with pytest.raises(type(error)):
        await remote.acquire(WINDOWS)
    assert not remote.down
    assert local.capacity == 100
    await remote.close()


async def test_release_falls_back_on_outage_and_raises_on_a_bug(fake: FakeRedis) -> None:
    remote, _ = _limiter()
    token = await remote.acquire(WINDOWS)
    fake.error = rx.ConnectionError("Connection closed by server.")
    await remote.release(WINDOWS, token)  # the slot just stays held until its hold ends
    assert remote.down

    fake.error = None
    remote, _ = _limiter()
    token = await remote.acquire(WINDOWS)
    assert token is not None
    fake.error = rx.ResponseError("ERR wrong number of arguments")
    with pytest.raises(rx.ResponseError):
        await remote.release(WINDOWS, token)
    assert not remote.down


# -- a real server: NOSCRIPT after the script cache is emptied --------------------------
@pytest_asyncio.fixture
async def admin(redis_url: str) -> AsyncIterator[Any]:
    client = redis.asyncio.from_url(redis_url)
    yield client
    await client.aclose()


async def test_a_flushed_script_cache_is_not_an_outage(redis_url: str, admin: Any) -> None:
    remote = RedisLimiter(redis_url, "sk_test_noscript", hold=1.0)
    try:
        first = await remote.acquire(WINDOWS)
        assert first is not None
        await remote.release(WINDOWS, first)
        await admin.script_flush()  # what a Redis restart does to the cache
        second = await remote.acquire(WINDOWS)
        assert second is not None
        await admin.script_flush()
        await remote.release(WINDOWS, second)
        assert not remote.down
    finally:
        await remote.close()
