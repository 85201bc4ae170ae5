"""The shared limiter's states: every Redis error is classified (down, busy, refused),
none is raised where a fallback works, a full Redis still serves it, and it logs one
line per real change of state, never a flap."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from redis import exceptions as rx

from aiofuul import FuulClient
from aiofuul.engine.limits import RateLimit, SlidingWindowLimiter
from aiofuul.engine.redis_limiter import RedisLimiter
from aiofuul.sandbox import Sandbox
from aiofuul.storage.redis_errors import (
    RedisBusyError,
    RedisDownError,
    RedisRefusedError,
    classify,
)
from conftest import EVM, RedisServer, fast_config
from redis_hostile import acl_server, admin, fill, hostile_server, make_room, url_of

WINDOWS = [("single", RateLimit(1000, 60.0))]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (rx.ConnectionError("Error 111 connecting"), RedisDownError),
        (rx.TimeoutError("Timeout reading from socket"), RedisDownError),
        (ConnectionResetError(104, "reset"), RedisDownError),
        (asyncio.TimeoutError(), RedisDownError),
        (rx.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), RedisBusyError),
        (rx.BusyLoadingError("Redis is loading the dataset in memory"), RedisBusyError),
        (rx.ReadOnlyError("You can't write against a read only replica."), RedisBusyError),
        (rx.ResponseError("BUSY Redis is busy running a script."), RedisBusyError),
        (rx.ResponseError("MISCONF Redis is configured to save RDB snapshots"), RedisBusyError),
        (rx.ConnectionError("max number of clients reached"), RedisBusyError),
        (rx.NoPermissionError("this user has no permissions to run the 'evalsha' command"), RedisRefusedError),
        (rx.AuthenticationError("invalid username-password pair"), RedisRefusedError),
        (rx.NoScriptError("No matching script."), RedisRefusedError),
        (rx.ResponseError("The user executing the script can't run this command"), RedisRefusedError),
        (rx.ResponseError("ERR unknown command 'evalsha'"), RedisRefusedError),
        (rx.ConnectionError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"), RedisRefusedError),
    ],
    ids=lambda x: x.__name__ if isinstance(x, type) else type(x).__name__,
)  # fmt: skip
def test_every_redis_error_is_classified(error: BaseException, kind: type[Exception]) -> None:
    problem = classify(error)
    assert type(problem) is kind and problem.__cause__ is error


@pytest.mark.parametrize(
    "error",
    [rx.ResponseError("WRONGTYPE Operation against a key"), TypeError("bad operand")],
    ids=["wrongtype", "type-error"],
)
def test_a_bug_is_not_classified(error: BaseException) -> None:
    assert classify(error) is None


class _Script:
    def __init__(self, answers: list[Any]):
        self.answers = answers

    async def __call__(self, keys: list[str], args: list[Any]) -> int:
        answer = self.answers.pop(0) if self.answers else 0
        if isinstance(answer, BaseException):
            raise answer
        return int(answer)


class _Redis:
    def __init__(self) -> None:
        self.acquire = _Script([])
        self.release = _Script([])
        self._next = iter([self.acquire, self.release])

    def register_script(self, source: str) -> _Script:
        return next(self._next)

    async def aclose(self) -> None:
        pass


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> _Redis:
    client = _Redis()
    monkeypatch.setattr(redis.asyncio.Redis, "from_pool", lambda *a, **k: client)
    return client


async def test_one_log_line_per_change_of_state_and_a_wait_is_no_recovery(
    fake: _Redis, caplog: pytest.LogCaptureFixture
) -> None:
    remote = RedisLimiter("redis://127.0.0.1:1/0", "sk_test_states", hold=1.0, retry_interval=0)
    local = SlidingWindowLimiter(WINDOWS[0][1])
    remote.watch(local)
    oom = rx.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")
    noperm = rx.NoPermissionError("this user has no permissions to run the 'evalsha' command")
    fake.acquire.answers = [oom, 250, oom, 250, oom, noperm, noperm, noperm, 0]
    with caplog.at_level(logging.WARNING, logger="aiofuul"):
        results = [await remote.acquire(WINDOWS) for _ in range(9)]
    # Never raised; a token only once a slot was really taken.
    assert results[:8] == [None] * 8 and results[8] is not None
    said = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in said] == [logging.WARNING, logging.ERROR, logging.WARNING]
    assert "cannot take writes for now" in said[0][1]
    assert "refuses us" in said[1][1] and "evalsha" in said[1][1]
    assert "reachable again" in said[2][1]
    assert local.capacity == 1000  # back to the full limit
    await remote.close()


async def test_release_refused_is_a_state_not_an_exception(fake: _Redis) -> None:
    remote = RedisLimiter("redis://127.0.0.1:1/0", "sk_test_release", hold=1.0)
    token = await remote.acquire(WINDOWS)
    fake.release.answers = [rx.NoPermissionError("no permissions to run the 'evalsha' command")]
    await remote.release(WINDOWS, token)
    assert remote.state == "refused" and remote.down
    await remote.close()


# -- a real, full redis-server ---------------------------------------------------------
@pytest.fixture
def full_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = hostile_server(tmp_path)
    fill(server)
    yield server
    server.stop()


async def test_a_full_redis_still_serves_the_limiter_without_a_flap(
    full_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Out of memory (maxmemory, noeviction): each script starts with a write Redis
    takes when full, so slots are taken and given back in Redis, and no line is logged
    (it was 127 pairs of unreachable/reachable lines)."""
    remote = RedisLimiter(full_redis.url, "sk_test_full_limiter", hold=1.0, retry_interval=0)
    with caplog.at_level(logging.WARNING, logger="aiofuul"):
        for _ in range(100):
            token = await remote.acquire(WINDOWS)
            assert token is not None
            await remote.release(WINDOWS, token)
    assert remote.state == "ok"
    assert not [r for r in caplog.records if "shared limiter" in r.getMessage()]
    make_room(full_redis)
    await remote.close()


async def test_a_client_on_a_full_redis_delivers_at_the_shared_limits(
    full_redis: RedisServer, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="aiofuul"):
        async with FuulClient(
            "sk_test_full_client", base_url=sandbox.url, config=fast_config(),
            limiter=full_redis.url,
        ) as fuul:  # fmt: skip
            ids = [fuul.track("trade", EVM, args={"i": i}) for i in range(30)]
            assert await fuul.flush(timeout=20)
            assert not fuul.stats().shared_limiter_down
    assert all(sandbox.stored_count(i) == 1 for i in ids)
    assert not [r for r in caplog.records if "shared limiter" in r.getMessage()]


async def test_a_client_used_without_start_on_an_acl_without_scripting_never_spins(
    tmp_path: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """The hostile run's reproducer: no start(), track() first, a user without
    @scripting. It was 76,056 tracebacks in 12 s and 10/10 events lost; now the local
    limits stand in, Redis is asked once per retry_interval, one error line says why."""
    server = acl_server(tmp_path)
    try:
        url = url_of(server, "noscript", "pw")
        fuul = FuulClient("sk_test_noscript_lazy", base_url=sandbox.url, config=fast_config(),
                          limiter=url)  # fmt: skip
        with caplog.at_level(logging.WARNING, logger="aiofuul"):
            ids = [fuul.track("trade", EVM, args={"i": i}) for i in range(10)]
            assert await fuul.flush(timeout=20)
            assert fuul.stats().shared_limiter_down
            await fuul.aclose()
        with admin(server) as client:
            calls = client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
        assert calls <= 3, calls  # once, then not before retry_interval (5 s)
    finally:
        server.stop()
    assert all(sandbox.stored_count(i) == 1 for i in ids)
    said = [r.getMessage() for r in caplog.records if "shared limiter" in r.getMessage()]
    assert len(said) == 1 and "evalsha" in said[0], said
