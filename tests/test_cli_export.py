"""``aiofuul export``, run as users run it (a subprocess) against a sandbox: the rows of
a list, in JSON Lines or CSV; interrupted with SIGINT and run again, every row is
written exactly once."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiofuul import User
from aiofuul.sandbox import Faults, Sandbox
from aiofuul.wire.models import Event
from conftest import EVM, FAST_LIMITS, sigint_default

ROWS = 400
BOB = User("0x1111111111111111111111111111111111111111", "evm_address")


@pytest.fixture
def sandbox_url() -> Iterator[tuple[str, Sandbox]]:
    """A sandbox on a loop of its own thread (the CLI runs in a subprocess), holding
    ROWS point movements of EVM, answering each request after 20 ms."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sb = Sandbox(limits=FAST_LIMITS, faults=Faults(latency=0.02))
    asyncio.run_coroutine_threadsafe(sb.start(), loop).result(10)
    sb.state.set_referrer(EVM, BOB, code="BOB1")
    sb.state.store_events(
        Event(name="trade", user=EVM, dedup_id=f"m{i:04d}", args={"amount": i}) for i in range(ROWS)
    )
    yield sb.url, sb
    asyncio.run_coroutine_threadsafe(sb.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def export(url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "FUUL_API_KEY": "k", "FUUL_BASE_URL": url}
    return subprocess.Popen(
        [sys.executable, "-m", "aiofuul.cli", "export", *args, "--time-scale", "1/60"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=sigint_default,
    )  # fmt: skip


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


MOVEMENTS = ["movements", "--user", EVM.identifier, "--type", "evm_address",
             "--payout-type", "point", "--page-size", "10"]  # fmt: skip


@pytest.mark.slow
def test_interrupted_and_rerun_writes_every_row_exactly_once(
    sandbox_url: tuple[str, Sandbox], tmp_path: Path
) -> None:
    url, sb = sandbox_url
    out, ckpt = tmp_path / "moves.jsonl", tmp_path / "moves.ckpt"
    args = [*MOVEMENTS, "-o", str(out), "--checkpoint", str(ckpt)]
    # Each page takes 0.1 s, and once 100 rows are out every request hangs: the export is
    # interrupted mid-way however slow this machine is (seconds of slack, then none).
    sb.faults.latency = 0.1
    first = export(url, *args)
    deadline = time.monotonic() + 60
    while len(lines(out)) < 100:  # well under way, not done
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the export never got going"
        time.sleep(0.01)
    sb.faults.hang_rate = 1.0
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=30)
    assert first.returncode == 130, err
    assert "rerun the same command to resume" in err
    written = len(lines(out))
    assert 100 <= written < ROWS

    sb.faults.hang_rate = 0.0
    second = export(url, *args)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    rows = [json.loads(line) for line in lines(out)]
    assert [r["dedup_id"] for r in rows] == [f"m{i:04d}" for i in range(ROWS)]
    assert all(r["total_amount"] == str(i) for i, r in enumerate(rows))

    third = export(url, *args)  # complete: nothing more is written
    _, err = third.communicate(timeout=30)
    assert third.returncode == 0 and "already complete" in err
    assert len(lines(out)) == ROWS


def test_csv_and_a_leaderboard(sandbox_url: tuple[str, Sandbox], tmp_path: Path) -> None:
    url, _ = sandbox_url
    out = tmp_path / "points.csv"
    run = export(url, "leaderboard", "points", "--format", "csv", "-o", str(out))
    _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    rows = list(csv.DictReader(out.open()))
    assert [(r["rank"], r["address"]) for r in rows] == [
        ("1", EVM.identifier), ("2", BOB.identifier)
    ]  # fmt: skip
    assert "exported 2 rows" in err


def test_stdout_jsonl_of_referral_codes(sandbox_url: tuple[str, Sandbox]) -> None:
    url, _ = sandbox_url
    run = export(url, "referral-codes", "--user", BOB.identifier, "--type", "evm_address")
    stdout, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    [code] = [json.loads(line) for line in stdout.splitlines()]
    assert code["code"] == "BOB1" and code["uses"] == 1


def test_a_checkpoint_of_another_export_is_refused(
    sandbox_url: tuple[str, Sandbox], tmp_path: Path
) -> None:
    url, _ = sandbox_url
    out, ckpt = tmp_path / "a.jsonl", tmp_path / "a.ckpt"
    fast = [*MOVEMENTS[:-1], "100"]  # pages of 100
    done = export(url, *fast, "--since", "2020-01-01", "-o", str(out), "--checkpoint", str(ckpt))
    assert done.wait(60) == 0
    other = export(url, *fast, "-o", str(out), "--checkpoint", str(ckpt))
    _, err = other.communicate(timeout=30)
    assert other.returncode == 2 and "another export" in err
    usage = export(url, "leaderboard", "payouts")
    _, err = usage.communicate(timeout=30)
    assert usage.returncode == 2 and "--currency-address" in err
