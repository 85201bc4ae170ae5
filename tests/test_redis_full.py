"""A full Redis (``maxmemory`` reached, ``noeviction``) does not wedge the outbox:
``track()`` goes on from memory with one warning, delivered entries leave Redis even
while it is full, what waited is written once there is room, and another client still
heartbeats and adopts."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from aiofuul import FuulClient
from aiofuul.engine.redis_limiter import key_hash
from aiofuul.sandbox import Sandbox
from aiofuul.storage.redis_outbox import outbox_keys
from conftest import EVM, RedisServer, fast_config
from redis_hostile import admin, fill, hostile_server, make_room, until


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    server = hostile_server(tmp_path)
    yield server
    server.stop()


def _xlen(server: RedisServer, key: str) -> int:
    with admin(server) as client:
        return int(client.xlen(outbox_keys(key_hash(key)).stream))


def _said(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def test_a_full_redis_keeps_track_working_and_frees_what_was_delivered(
    server: RedisServer, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    key = "sk_test_full_outbox_1"
    sandbox.faults.error_rate = 1.0  # kept queued, so that they are written
    with caplog.at_level(logging.WARNING, logger="aiofuul"):
        async with FuulClient(key, base_url=sandbox.url, config=fast_config(),
                              outbox=server.url) as fuul:  # fmt: skip
            ids = [fuul.track("trade", EVM, args={"i": i}) for i in range(40)]
            await fuul.flush(timeout=0)
            assert _xlen(server, key) == 40
            fill(server)
            ids += [fuul.track("trade", EVM, args={"i": i}) for i in range(40, 80)]
            await until(lambda: fuul.stats().outbox_down)
            # Delivered now: the 40 written leave the full Redis, the others memory.
            sandbox.faults.error_rate = 0.0
            assert await fuul.flush(timeout=20)
            await until(lambda: _xlen(server, key) == 0)
            assert fuul.stats().outbox_down  # still full: nothing new can be written
            make_room(server)
            await until(lambda: not fuul.stats().outbox_down)
            sandbox.faults.error_rate = 1.0
            ids += [fuul.track("trade", EVM, args={"i": i}) for i in range(80, 90)]
            await fuul.flush(timeout=0)
            assert _xlen(server, key) == 10  # written again once there was room
            sandbox.faults.error_rate = 0.0
            assert await fuul.flush(timeout=20)
    assert all(sandbox.stored_count(i) == 1 for i in ids)
    assert _xlen(server, key) == 0
    full = _said(caplog, "shared outbox full")
    assert len(full) == 1 and "OutOfMemoryError" in full[0], full
    assert len(_said(caplog, "shared outbox reachable again")) == 1


async def test_another_client_heartbeats_and_adopts_from_a_full_redis(
    server: RedisServer, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    key = "sk_test_full_outbox_2"
    url = server.url + "?adopt_after=0.6"
    sandbox.faults.error_rate = 1.0
    first = FuulClient(key, base_url=sandbox.url, config=fast_config(), outbox=url)
    async with first:
        ids = [first.track("trade", EVM, args={"i": i}) for i in range(30)]
        await first.flush(timeout=0)
        fill(server)
        await first.aclose(0.2)  # handed off: they stay in the (full) stream
    assert first.stats().handed_off == 30
    assert _xlen(server, key) == 30
    sandbox.faults.error_rate = 0.0
    with caplog.at_level(logging.WARNING, logger="aiofuul"):
        async with FuulClient(key, base_url=sandbox.url, config=fast_config(),
                              outbox=url) as second:  # fmt: skip
            outbox = second._outbox
            assert outbox is not None
            beat = outbox.keys.alive + outbox.consumer  # type: ignore[attr-defined]
            with admin(server) as client:
                await until(lambda: client.exists(beat))  # it beats, though Redis is full
            await until(lambda: sandbox_has(sandbox, ids))
            await until(lambda: _xlen(server, key) == 0)
    assert all(sandbox.stored_count(i) == 1 for i in ids)
    assert _said(caplog, "adopted 30 event(s)")
    with pytest.raises(redis.exceptions.OutOfMemoryError), admin(server) as client:
        client.set("still-full", b"x")  # it was full all along
    make_room(server)


def sandbox_has(sandbox: Sandbox, ids: list[str]) -> bool:
    return all(sandbox.stored_count(i) == 1 for i in ids)
