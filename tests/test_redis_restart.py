"""A Redis restarted without persistence: ``handed_off`` only for the events Redis is
known to hold at close (the rest are reported undelivered), and a stream that vanished
is noticed and logged once with what it held, a dead client's backlog included."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import aiofuul.storage._redis_outbox_held
from aiofuul import FuulClient, UndeliveredError
from aiofuul.engine.redis_limiter import key_hash
from aiofuul.sandbox import Sandbox
from aiofuul.storage.redis_outbox import RedisOutbox, outbox_keys
from aiofuul.wire.models import Event
from conftest import EVM, RedisServer, fast_config
from redis_hostile import admin, hostile_server, until


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    server = hostile_server(tmp_path)  # no AOF, no RDB: a restart forgets everything
    yield server
    server.stop()


def _restart(server: RedisServer) -> None:
    server.stop()
    server.start()


async def test_only_what_redis_holds_is_handed_off_at_close(
    server: RedisServer, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    reasons: dict[str, int] = {}

    def on_error(events: list[Event], error: UndeliveredError) -> None:
        reasons[error.reason] = reasons.get(error.reason, 0) + len(events)

    sandbox.faults.error_rate = 1.0  # nothing is delivered: all is queued at close
    fuul = FuulClient("sk_test_restart_1", base_url=sandbox.url, config=fast_config(),
                      outbox=server.url, on_error=on_error)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="aiofuul"):
        async with fuul:
            for i in range(40):
                fuul.track("trade", EVM, args={"i": i})
            await fuul.flush(timeout=0)  # written
            _restart(server)  # ... and forgotten
            for i in range(40, 50):
                fuul.track("trade", EVM, args={"i": i})
            await fuul.flush(timeout=0)  # written to the stream made anew
            await fuul.aclose(0.2)
    stats = fuul.stats()
    assert stats.handed_off == 10, stats
    assert stats.failed == 40 and stats.queued == 0, stats
    assert reasons == {"handed_off": 10, "shutdown": 40}
    gone = [r.getMessage() for r in caplog.records if "is gone" in r.getMessage()]
    assert len(gone) == 1 and "40 of them written by this client" in gone[0], gone


async def test_a_restart_noticed_at_close_is_not_reported_as_a_hand_off(
    server: RedisServer, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.faults.error_rate = 1.0
    fuul = FuulClient("sk_test_restart_2", base_url=sandbox.url, config=fast_config(),
                      outbox=server.url)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="aiofuul"):
        async with fuul:
            for i in range(25):
                fuul.track("trade", EVM, args={"i": i})
            await fuul.flush(timeout=0)
            _restart(server)
            await fuul.aclose(0.2)
    assert fuul.stats().handed_off == 0 and fuul.stats().failed == 25
    said = caplog.text
    assert "handed off" not in said
    assert "is gone" in said and "25 of them written by this client" in said


async def test_entries_deleted_from_the_stream_are_not_handed_off(
    server: RedisServer,
    sandbox: Sandbox,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aiofuul.storage._redis_outbox_held, "_FULL_EVERY", 0.0)  # each commit: all
    sandbox.faults.error_rate = 1.0
    key = "sk_test_restart_4"
    fuul = FuulClient(key, base_url=sandbox.url, config=fast_config(), outbox=server.url)
    with caplog.at_level(logging.WARNING, logger="aiofuul"):
        async with fuul:
            for i in range(20):
                fuul.track("trade", EVM, args={"i": i})
            await fuul.flush(timeout=0)
            with admin(server) as client:
                stream = outbox_keys(key_hash(key)).stream
                entries = client.xrange(stream, count=5)
                client.xdel(stream, *(entry_id for entry_id, _ in entries))
            await fuul.aclose(0.2)
    assert fuul.stats().handed_off == 15 and fuul.stats().failed == 5
    assert "5 event(s) this client wrote are no longer in the shared outbox" in caplog.text


async def test_a_dead_clients_backlog_lost_in_a_restart_is_logged_once(
    server: RedisServer, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    key = "sk_test_restart_3"
    # The dead client: it wrote 30 events, then stopped answering (its heartbeat lives
    # on for adopt_after=30 s, so the live one does not adopt them meanwhile).
    dead = RedisOutbox(server.url, key)
    await dead.recover()
    for i in range(30):
        dead.added(Event(name="trade", user_address=EVM.identifier, dedup_id=f"dead-{i}"))
    await dead.commit()
    assert dead._writer is not None
    dead._writer.cancel()
    await dead._redis.aclose()

    with caplog.at_level(logging.WARNING, logger="aiofuul"):
        async with FuulClient(key, base_url=sandbox.url, config=fast_config(),
                              outbox=server.url + "?adopt_after=0.6") as fuul:  # fmt: skip
            live = fuul._outbox
            assert isinstance(live, RedisOutbox)
            beat = live.keys.alive + live.consumer
            with admin(server) as client:
                await until(lambda: client.exists(beat))  # it saw the stream: 30 events
            _restart(server)
            await until(lambda: "is gone" in caplog.text)
            fuul.track("trade", EVM)  # the stream is made anew: not a second notice
            assert await fuul.flush(timeout=10)
            with admin(server) as client:
                for _ in range(3):  # a few more heartbeats: still one notice
                    await _next_beat(client, beat)
    gone = [r.getMessage() for r in caplog.records if "is gone" in r.getMessage()]
    assert len(gone) == 1, gone
    assert "it held 30 event(s) when last seen" in gone[0]
    assert "0 of them written by this client" in gone[0]


async def _next_beat(client: redis.Redis, beat: str) -> None:
    """Wait for the heartbeat key's time to live (600 ms, renewed every 200 ms) to run
    down a little, then to be renewed."""
    await until(lambda: client.pttl(beat) < 480)
    await until(lambda: client.pttl(beat) > 520)
