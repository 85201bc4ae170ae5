"""The Redis outbox, one client at a time (in this process) against a real redis-server:
writes and acknowledgements, dead letters and their command, the hand-off at close,
adoption of a dead client's events, and Redis going away and coming back. The fleet
(several processes, SIGKILL, SIGTERM, a Redis restart) is in test_redis_fleet.py."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio

from aiofuul import FuulClient, UndeliveredError, User
from aiofuul.engine.redis_limiter import key_hash
from aiofuul.sandbox import Sandbox
from aiofuul.storage.redis_outbox import GROUP, RedisOutbox, outbox_keys
from aiofuul.storage.redis_outbox_admin import ConsumerState, fleet_stats
from aiofuul.sync import SyncFuulClient
from aiofuul.wire.models import Event
from conftest import EVM, FAST_RETRY, HANG, RedisServer, fast_config, wait_until

ADOPT = "?adopt_after=0.6"  # a heartbeat lapses after 0.6 s


@pytest_asyncio.fixture
async def raw(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def keys_of(api_key: str) -> tuple[str, str, str]:
    return tuple(outbox_keys(key_hash(api_key)))  # type: ignore[return-value]


async def pending(raw: redis.asyncio.Redis, api_key: str) -> dict[str, int]:
    """Entries pending per consumer."""
    stream = keys_of(api_key)[0]
    if not await raw.exists(stream):
        return {}
    return {c["name"].decode(): int(c["pending"]) for c in await raw.xinfo_consumers(stream, GROUP)}


async def test_events_are_written_under_a_hash_of_the_key_and_leave_when_delivered(
    redis_url: str, raw: redis.asyncio.Redis, sandbox: Sandbox
) -> None:
    key = "sk_test_written_0001"
    stream = keys_of(key)[0]
    sandbox.faults.error_rate = 1.0  # nothing is delivered yet: the stream keeps them
    async with FuulClient(key, base_url=sandbox.url, config=fast_config(),
                          outbox=redis_url) as fuul:  # fmt: skip
        ids = [fuul.track("trade", EVM, args={"i": i}) for i in range(120)]
        await fuul.flush(timeout=0)  # commits, does not wait for delivery
        assert await raw.xlen(stream) == 120
        journal = fuul._outbox
        assert isinstance(journal, RedisOutbox)
        assert await pending(raw, key) == {journal.consumer: 120}
        assert await raw.exists(keys_of(key)[2] + journal.consumer)  # its heartbeat
        names = [k.decode() async for k in raw.scan_iter(match="aiofuul:*")]
        assert names and all(key not in n and key_hash(key) in n for n in names)
        sandbox.faults.error_rate = 0.0
        assert await fuul.flush(timeout=10)
        assert await raw.xlen(stream) == 0
        assert await pending(raw, key) == {journal.consumer: 0}
    assert all(sandbox.stored_count(i) == 1 for i in ids)
    assert key not in repr(journal)


async def test_close_hands_off_what_it_could_not_deliver_and_the_next_client_sends_it(
    redis_url: str, raw: redis.asyncio.Redis, sandbox: Sandbox
) -> None:
    key = "sk_test_handoff_0002"
    errors: list[UndeliveredError] = []
    sandbox.faults.error_rate = 1.0
    config = fast_config()
    fuul = FuulClient(key, base_url=sandbox.url, config=config, outbox=redis_url + ADOPT,
                      on_error=lambda events, error: errors.append(error))  # fmt: skip
    async with fuul:
        ids = [fuul.track("trade", EVM, args={"i": i}) for i in range(200)]
        await wait_until(lambda: len(sandbox.requests) > 0, what="a refused attempt")
        await fuul.aclose(timeout=0.2)
    stats = fuul.stats()
    assert (stats.handed_off, stats.failed, stats.queued) == (200, 0, 0)
    assert stats.tracked == stats.delivered + stats.duplicates + stats.handed_off
    assert [e.reason for e in errors] == ["handed_off"]  # told, and not as lost
    journal = fuul._outbox
    assert isinstance(journal, RedisOutbox)
    assert await pending(raw, key) == {journal.consumer: 200}
    assert not await raw.exists(keys_of(key)[2] + journal.consumer)  # adoptable at once
    fleet = await fleet_stats(redis_url, key_hash(key))
    assert (fleet.waiting, fleet.dead_letters) == (200, 0)
    assert fleet.consumers == [ConsumerState(journal.consumer, 200, live=False)]
    assert fleet.oldest_age > 0 and fleet.memory_bytes > 0

    sandbox.faults.error_rate = 0.0
    async with FuulClient(key, base_url=sandbox.url, config=config,
                          outbox=redis_url + ADOPT) as later:  # fmt: skip
        assert await later.flush(timeout=HANG)  # its first flush covers what it adopted
        assert later.stats().delivered == 200
    assert all(sandbox.stored_count(i) == 1 for i in ids)
    assert await raw.xlen(keys_of(key)[0]) == 0


@pytest.mark.slow
async def test_a_dead_clients_events_are_adopted_and_a_live_ones_are_not(
    redis_url: str, raw: redis.asyncio.Redis, sandbox: Sandbox
) -> None:
    key = "sk_test_adopt_0003"
    url = redis_url + ADOPT
    # A client that dies: its events written, then its tasks stop without a close.
    dead = RedisOutbox(url, key)
    assert await dead.recover() == []
    dead_ids = [f"dead-{i}" for i in range(150)]
    for dedup_id in dead_ids:
        dead.added(Event("trade", EVM, dedup_id=dedup_id))
    await dead.commit()
    assert dead._writer is not None
    dead._writer.cancel()
    # A live client whose events sit idle far longer than adopt_after: never taken.
    live = RedisOutbox(url, key)
    await live.recover()
    live.attach(lambda events: None, lambda: 0)  # beats, adopts nothing
    for i in range(40):
        live.added(Event("trade", EVM, dedup_id=f"live-{i}"))
    await live.commit()

    async with FuulClient(key, base_url=sandbox.url, config=fast_config(),
                          outbox=url) as fuul:  # fmt: skip
        journal = fuul._outbox
        assert isinstance(journal, RedisOutbox)
        await wait_until(lambda: all(sandbox.stored_count(i) == 1 for i in dead_ids))
        assert await fuul.flush(timeout=5)
        stats = fuul.stats()
        assert stats.tracked == stats.delivered == 150
        settled = {live.consumer: 40, journal.consumer: 0}  # the dead consumer emptied

        async def has_settled() -> bool:
            return await pending(raw, key) == settled

        await wait_until(has_settled, what=f"pending {settled}")
    assert not any(sandbox.stored_count(f"live-{i}") for i in range(40))
    await live.close()
    await dead._redis.aclose()


@pytest.mark.slow
async def test_rejected_events_become_dead_letters_the_command_manages(
    redis_url: str, raw: redis.asyncio.Redis, sandbox: Sandbox
) -> None:
    key = "sk_test_dead_0004"
    config = fast_config(check_identifier_format=False)
    async with FuulClient(key, base_url=sandbox.url, config=config, outbox=redis_url) as fuul:
        first = fuul.track("trade", User("0xbad", "evm_address"))
        second = fuul.track("trade", User("0xworse", "evm_address"))
        good = fuul.track("trade", EVM)
        assert await fuul.flush(timeout=5)
    assert sandbox.stored_count(good) == 1
    stream, dead, _ = keys_of(key)
    assert await raw.xlen(stream) == 0
    assert sorted(k.decode() for k in await raw.hkeys(dead)) == sorted([first, second])

    code, out, _ = await _cli(key, "outbox", redis_url, "list")
    assert code == 0
    assert first in out and second in out and "user.identifier" in out
    assert "2 dead letter(s); 0 event(s) waiting" in out
    code, out, _ = await _cli(key, "outbox", redis_url, "stats")
    assert code == 0 and "0 event(s) waiting" in out and "2 dead letter(s)" in out

    sandbox.check_format = False  # the server now takes them
    limits = ["--base-url", sandbox.url, "--time-scale", str(1 / 60), "--no-format-check"]
    code, out, err = await _cli(key, "outbox", redis_url, "retry", "--id", first, *limits)
    assert code == 0, err
    assert "moved 1" in out and "1 delivered" in out
    assert sandbox.stored_count(first) == 1

    code, _, err = await _cli(key, "outbox", redis_url, "purge")
    assert code == 2 and "--all" in err
    # Without the key, by its hash.
    code, out, _ = await _cli("", "outbox", redis_url, "purge", "--all",
                              "--key-hash", key_hash(key))  # fmt: skip
    assert code == 0 and "purged 1" in out
    assert sandbox.stored_count(second) == 0
    assert await raw.hlen(dead) == 0


async def _cli(key: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "FUUL_API_KEY": key}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiofuul.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.slow
async def test_redis_down_keeps_events_in_memory_and_writes_them_when_back(
    redis_server: RedisServer, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    key = "sk_test_down_0005"
    stream = keys_of(key)[0]
    raw = redis.asyncio.Redis.from_url(redis_server.url)
    sandbox.faults.error_rate = 1.0  # they stay queued: what is written can be seen
    config = fast_config(retry=dataclasses.replace(FAST_RETRY, max_attempts=10**6))
    with caplog.at_level(logging.WARNING, logger="aiofuul"):
        async with FuulClient(key, base_url=sandbox.url, config=config,
                              outbox=redis_server.url + ADOPT) as fuul:  # fmt: skip
            ids = [fuul.track("trade", EVM, args={"i": i}) for i in range(50)]
            await fuul.flush(timeout=0)
            assert await raw.xlen(stream) == 50
            redis_server.stop()
            ids += [fuul.track("trade", EVM, args={"i": i}) for i in range(50, 120)]
            await fuul.flush(timeout=0)  # returns: the write failed, events kept
            assert fuul.stats().outbox_down
            assert fuul.stats().queued == 120
            await asyncio.sleep(0.5)  # a few retries: still one log line
            redis_server.start()
            await wait_until(lambda: not fuul.stats().outbox_down)
            await fuul.flush(timeout=0)
            await raw.aclose()  # its connection died with the server
            raw = redis.asyncio.Redis.from_url(redis_server.url)
            assert await raw.xlen(stream) == 120
            sandbox.faults.error_rate = 0.0
            assert await fuul.flush(timeout=10)
            assert await raw.xlen(stream) == 0
    await raw.aclose()
    assert all(sandbox.stored_count(i) == 1 for i in ids)
    said = [r.getMessage() for r in caplog.records if "shared outbox" in r.getMessage()]
    assert len(said) == 2, said
    assert "unreachable" in said[0] and "reachable again" in said[1]


async def test_the_sync_client_shares_the_outbox_in_a_forked_child_too(
    redis_url: str, raw: redis.asyncio.Redis, sandbox: Sandbox
) -> None:
    key = "sk_test_sync_0006"
    fuul = SyncFuulClient(key, base_url=sandbox.url, config=fast_config(), outbox=redis_url)
    fuul._pid = -1  # as in a forked child: a file would become events.<pid>.db
    try:
        await asyncio.to_thread(fuul.track, "trade", EVM)
        assert await asyncio.to_thread(fuul.flush, 10)
        assert isinstance(fuul._client._outbox if fuul._client else None, RedisOutbox)
        assert fuul.stats().delivered == 1
    finally:
        await asyncio.to_thread(fuul.close)
    assert await raw.xlen(keys_of(key)[0]) == 0
