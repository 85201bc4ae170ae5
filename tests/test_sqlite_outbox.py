"""The durable outbox: what was committed survives a crash and is delivered exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import stat
import sys
from pathlib import Path

import pytest

from aiofuul import ClientStateError, FuulClient, User
from aiofuul.sandbox import Sandbox
from aiofuul.storage.outbox import Outbox, open_database
from aiofuul.wire.models import Event
from conftest import API_KEY, EVM, FAST_LIMITS, HANG, fast_config, wait_until

WORKER = Path(__file__).parent / "scripts" / "outbox_worker.py"


def rows(db: Path, table: str = "outbox") -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def test_a_second_client_on_the_same_file_is_refused(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    db = tmp_path / "events.db"
    async with FuulClient(API_KEY, base_url=sandbox.url, outbox=db):
        with pytest.raises(ClientStateError, match="in use by another client"):
            FuulClient(API_KEY, base_url=sandbox.url, outbox=db)
    # Released on close: the next client may open it.
    async with FuulClient(API_KEY, base_url=sandbox.url, outbox=db):
        pass


async def test_delivered_events_leave_and_undelivered_ones_come_back(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    db = tmp_path / "events.db"
    sandbox.faults.error_rate = 1.0
    async with FuulClient(API_KEY, base_url=sandbox.url, config=fast_config(), outbox=db) as fuul:
        ids = [fuul.track("trade", EVM, args={"i": i}) for i in range(250)]
        await wait_until(lambda: len(sandbox.requests) > 0, what="a refused attempt")
        await fuul.aclose(timeout=0.1)
    assert rows(db) == 250  # nothing delivered, everything kept
    sandbox.faults.error_rate = 0.0
    async with FuulClient(API_KEY, base_url=sandbox.url, config=fast_config(), outbox=db) as fuul:
        assert await fuul.flush(timeout=10)
        assert fuul.stats().delivered == 250
    assert rows(db) == 0
    assert all(sandbox.stored_count(i) == 1 for i in ids)


async def test_flush_waits_for_the_commit(tmp_path: Path, sandbox: Sandbox) -> None:
    db = tmp_path / "events.db"
    async with FuulClient(API_KEY, base_url=sandbox.url, config=fast_config(), outbox=db) as fuul:
        fuul.track("trade", EVM)
        assert await fuul.flush(timeout=5)
        assert rows(db) == 0  # delivered, and its deletion committed


async def test_an_explicit_commit_does_not_wait_for_the_interval(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    outbox = Outbox(db, commit_interval=3600.0)
    try:
        assert await outbox.recover() == []
        for round_ in range(3):
            for i in range(10):
                outbox.added(Event("trade", EVM, dedup_id=f"r{round_}-{i}"))
            # Before the fix this waited for the interval: an hour here, so a deadline
            # that only catches a hang tells the two apart on any machine.
            await asyncio.wait_for(outbox.commit(), HANG)
            assert rows(db) == 10 * (round_ + 1)  # committed: another connection sees it
    finally:
        await outbox.close()


async def test_outbox_files_are_readable_by_their_owner_only(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    db = tmp_path / "events.db"
    names = ["events.db", "events.db-wal", "events.db-shm", "events.db.lock"]
    previous = os.umask(0o022)  # the usual default, which makes new files world-readable
    try:
        async with FuulClient(
            API_KEY, base_url=sandbox.url, config=fast_config(), outbox=db
        ) as fuul:
            fuul.track("trade", EVM)
            assert await fuul.flush(timeout=5)
            assert sorted(os.listdir(tmp_path)) == sorted(names)
            modes = {n: stat.S_IMODE(os.stat(tmp_path / n).st_mode) for n in names}
            assert modes == dict.fromkeys(names, 0o600)
    finally:
        os.umask(previous)


async def test_rejected_events_go_to_the_dead_letter_table(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    db = tmp_path / "events.db"
    config = fast_config(check_identifier_format=False)
    async with FuulClient(API_KEY, base_url=sandbox.url, config=config, outbox=db) as fuul:
        bad = fuul.track("trade", User("0xbad", "evm_address"))
        good = fuul.track("trade", EVM)
        assert await fuul.flush(timeout=5)
    assert rows(db) == 0
    conn = open_database(db)
    dead = conn.execute("SELECT dedup_id, reason FROM dead_letter").fetchall()
    conn.close()
    assert [d[0] for d in dead] == [bad]
    assert "user.identifier" in dead[0][1]
    assert sandbox.stored_count(good) == 1


@pytest.mark.slow
async def test_sigkill_mid_stream_loses_nothing_committed(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    # A slow server keeps a backlog in the outbox when the producer dies.
    async with Sandbox(limits=FAST_LIMITS) as sb:
        sb.faults.latency = 0.02
        producer = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            "produce",
            sb.url,
            str(db),
            stdout=asyncio.subprocess.PIPE,
        )
        assert producer.stdout is not None
        committed: list[str] = []
        while len(committed) < 2500:
            line = await asyncio.wait_for(producer.stdout.readline(), 20)
            assert line, "the producer died on its own"
            committed.extend(line.decode().split())
        os.kill(producer.pid, signal.SIGKILL)
        await producer.wait()
        left = rows(db)
        assert left > 0, "nothing was pending: the test did not test a crash"
        stored_before = len(sb.stored_ids())

        deliverer = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            "deliver",
            sb.url,
            str(db),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(deliverer.communicate(), 60)
        assert deliverer.returncode == 0, out
        assert b"flushed=True" in out
        missing = [i for i in committed if sb.stored_count(i) != 1]
        assert missing == []
        assert len(sb.stored_ids()) >= stored_before
        assert rows(db) == 0


async def _cli(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "FUUL_API_KEY": API_KEY}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aiofuul.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.slow
async def test_outbox_command_lists_retries_and_purges_dead_letters(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    db = tmp_path / "events.db"
    config = fast_config(check_identifier_format=False)
    async with FuulClient(API_KEY, base_url=sandbox.url, config=config, outbox=db) as fuul:
        first = fuul.track("trade", User("0xbad", "evm_address"))
        second = fuul.track("trade", User("0xworse", "evm_address"))
        assert await fuul.flush(timeout=5)

    code, out, _ = await _cli("outbox", str(db), "list")
    assert code == 0
    assert first in out and second in out and "user.identifier" in out
    assert "2 dead letter(s); 0 event(s) waiting" in out
    code, out, _ = await _cli("outbox", str(db), "stats")
    assert (code, out) == (0, "0 event(s) waiting to be sent; 2 dead letter(s)\n")

    code, _, err = await _cli("outbox", str(db), "purge")
    assert code == 2
    assert "--all" in err

    sandbox.check_format = False  # the server now takes them
    limits = ["--base-url", sandbox.url, "--time-scale", str(1 / 60), "--no-format-check"]
    code, out, err = await _cli("outbox", str(db), "retry", "--id", first, *limits)
    assert code == 0, err
    assert "1 delivered" in out
    assert sandbox.stored_count(first) == 1

    code, out, _ = await _cli("outbox", str(db), "purge", "--all")
    assert code == 0
    assert "purged 1" in out
    assert sandbox.stored_count(second) == 0
    code, out, _ = await _cli("outbox", str(db), "list")
    assert "0 dead letter(s)" in out
