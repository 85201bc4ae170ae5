"""Importing a referral graph: ``aiofuul.bulk.import_referrers`` against the sandbox
(set, unchanged, refused; stopped and resumed), and ``aiofuul referrers import`` as a
subprocess (validated first, --dry-run, --skip-invalid, a summary; 5,000 rows within
compressed limits without a 429; interrupted by SIGINT and rerun: no row sent twice)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest

from aiofuul import DEFAULT_LIMITS, FuulClient, NotFoundError, User
from aiofuul.bulk import ReferrerRow, import_referrers
from aiofuul.sandbox import Sandbox
from aiofuul.testing import MockTransport, respond
from conftest import fast_config

T = TypeVar("T")
BOB = User("bob@example.com", "email")
KEY = "sk_test_referrers_0123456789"
SCALE = "1/600"  # one API minute lasts 0.1 s: 100 PUTs per 0.1 s on the users lane


def users(n: int) -> list[User]:
    return [User(f"u{i}@example.com", "email") for i in range(n)]


#: 100 requests per 0.1 s on every lane, for the server and the client alike.
TENTH = DEFAULT_LIMITS.scaled(1 / 600)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(limits=TENTH) as sb:
        yield sb


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[FuulClient]:
    async with FuulClient(KEY, base_url=sandbox.url, config=fast_config(limits=TENTH)) as fuul:
        yield fuul


# -- from code ------------------------------------------------------------------------
async def test_import_referrers_sets_then_finds_unchanged_and_names_refusals(
    sandbox: Sandbox, client: FuulClient
) -> None:
    sandbox.state.add_code(BOB, "BOB1")
    rows = [ReferrerRow(u, BOB) for u in users(120)]
    rows += [ReferrerRow(User("c@example.com", "email"), BOB, "BOB1"),
             ReferrerRow(User("d@example.com", "email"), BOB, "NOPE"),
             ReferrerRow(BOB, BOB)]  # fmt: skip
    result = await import_referrers(client, rows)
    assert (result.set, result.unchanged, result.complete) == (121, 0, True)
    assert [i for i, _ in result.refused] == [121, 122]
    assert "not found" in result.refused[0][1] and "must not be the user" in result.refused[1][1]
    assert sandbox.count("user-referrers") == 122  # the self-referral was never sent
    assert len(sandbox.state.referred_by(BOB)) == 121

    again = await import_referrers(client, rows[:121])
    assert (again.set, again.unchanged, again.refused) == (0, 121, [])


async def test_a_stopped_import_answers_what_it_sent_and_resumes_with_a_read_back(
    sandbox: Sandbox, client: FuulClient
) -> None:
    rows = [ReferrerRow(u, BOB) for u in users(200)]
    stop = asyncio.Event()
    done: list[int] = []

    def on_done(index: int, outcome: str, reason: str) -> None:
        done.append(index)
        if len(done) == 50:
            stop.set()

    first = await import_referrers(client, rows, stop=stop, on_done=on_done, concurrency=4)
    assert not first.complete and first.set == len(done) == sandbox.count("user-referrers")
    # Say the two last rows were in flight when a process died: read back, not resent.
    answered = set(done)
    uncertain = sorted(answered)[-2:]
    rest = [i for i in range(200) if i not in answered or i in uncertain]
    second = await import_referrers(
        client, [rows[i] for i in rest], verify={rest.index(i) for i in uncertain}
    )
    assert second.complete and (second.set, second.unchanged) == (200 - len(done), 2)
    assert sandbox.count("user-referrers") == 200  # no row sent twice
    assert sandbox.count("user/referrer") == 2


async def test_a_404_without_a_code_ends_the_import_it_is_the_wrong_place() -> None:
    """Nothing in a row without a code can be missing: every row would get the same
    404 (a wrong base URL), so the first ends the import instead of refusing them all."""
    transport = MockTransport(lambda r: respond(404, {"message": "Cannot PUT /user-referrers"}))
    rows = [ReferrerRow(u, BOB) for u in users(100)]
    async with FuulClient(KEY, transport=transport, config=fast_config(limits=TENTH)) as fuul:
        with pytest.raises(NotFoundError, match="Cannot PUT"):
            await import_referrers(fuul, rows, concurrency=4)
    assert len(transport.requests) <= 4


# -- the command ----------------------------------------------------------------------
class ThreadSandbox:
    """A :class:`Sandbox` serving from its own loop in a daemon thread (the tests block
    on subprocesses)."""

    def __init__(self, **kwargs: Any):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sb: Sandbox = self.call(self._make(kwargs))
        self.call(self.sb.start())

    @staticmethod
    async def _make(kwargs: dict[str, Any]) -> Sandbox:
        return Sandbox(**kwargs)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def puts(self) -> Counter[str]:
        """How many PUT user-referrers each user got (every request the sandbox took)."""

        async def read() -> Counter[str]:
            return Counter(
                msgspec.json.decode(r.body)["user_identifier"]
                for r in self.sb.requests
                if r.method == "PUT" and r.body and r.status == 200
            )

        return self.call(read())

    def close(self) -> None:
        self.call(self.sb.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def live() -> Iterator[ThreadSandbox]:
    ts = ThreadSandbox(limits=DEFAULT_LIMITS.scaled(1 / 600), record_bodies=True)
    yield ts
    ts.close()


def command(live: ThreadSandbox, *args: str) -> list[str]:
    return [sys.executable, "-m", "aiofuul.cli", "referrers", "import", *args,
            "--base-url", live.sb.url, "--time-scale", SCALE]  # fmt: skip


def run(live: ThreadSandbox, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(live, *args), env=ENV, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("FUUL_")}, "FUUL_API_KEY": KEY}


def jsonl(path: Path, n: int) -> Path:
    path.write_text("".join(
        json.dumps({"user": f"u{i}@example.com", "user_type": "email",
                    "referrer": f"r{i % 50}@example.com", "referrer_type": "email"}) + "\n"
        for i in range(n)
    ))  # fmt: skip
    return path


def test_invalid_rows_are_each_named_and_nothing_is_sent(
    live: ThreadSandbox, tmp_path: Path
) -> None:
    path = tmp_path / "graph.csv"
    path.write_text(
        "user,type,referrer,type,code\n"
        "a@example.com,email,b@example.com,email\n"
        "c@example.com,emial,b@example.com,email\n"
        "d@example.com,email,d@example.com,email\n"
        "a@example.com,email,e@example.com,email\n"
        "x,evm_address,b@example.com,email,\n"
        "only,three,fields\n"
    )
    result = run(live, str(path))
    assert result.returncode == 2
    lines = result.stderr
    assert "line 3" in lines and "user.identifier_type: must be one of" in lines
    assert "line 4" in lines and "referrer: must not be the user itself" in lines
    assert "line 5" in lines and "already has a referrer on line 2" in lines
    assert "line 6" in lines and "user.identifier" in lines
    assert "line 7" in lines and "3 fields" in lines
    assert "5 invalid row(s)" in lines and "nothing was sent" in lines
    assert live.puts() == Counter()

    dry = run(live, str(path), "--dry-run", "--skip-invalid")
    assert dry.returncode == 0 and "1 of 1 rows would be sent" in dry.stdout
    assert live.puts() == Counter()

    done = run(live, str(path), "--skip-invalid", "-q")
    assert done.returncode == 0, done.stderr
    assert re.search(r"set\s+1\n", done.stdout) and re.search(
        r"invalid, not sent\s+5\n", done.stdout
    )
    assert live.puts() == Counter({"a@example.com": 1})


def test_refused_rows_are_reported_with_the_servers_reason(
    live: ThreadSandbox, tmp_path: Path
) -> None:
    live.call(_add_code(live.sb))
    path = tmp_path / "graph.csv"
    path.write_text("a@example.com,email,bob@example.com,email,BOB1\n"
                    "c@example.com,email,bob@example.com,email,NOPE\n")  # fmt: skip
    result = run(live, str(path), "-q")
    assert result.returncode == 1
    assert re.search(r"set\s+1\n", result.stdout) and re.search(r"refused\s+1\n", result.stdout)
    assert "line 2: refused: referral code 'NOPE' not found (HTTP 404" in result.stdout
    again = run(live, str(path), "-q")
    assert re.search(r"unchanged\s+1\n", again.stdout)


async def _add_code(sb: Sandbox) -> None:
    sb.state.add_code(BOB, "BOB1")


@pytest.mark.slow
def test_5000_rows_each_set_once_within_the_limit(live: ThreadSandbox, tmp_path: Path) -> None:
    path = jsonl(tmp_path / "graph.jsonl", 5_000)
    result = run(live, str(path), "-q")
    assert result.returncode == 0, result.stderr
    assert re.search(r"set\s+5,000\n", result.stdout), result.stdout
    puts = live.puts()
    assert len(puts) == 5_000 and set(puts.values()) == {1}
    assert live.sb.count("user-referrers", status=429) == 0


@pytest.mark.slow
def test_interrupted_by_sigint_and_rerun_no_row_is_sent_twice(
    live: ThreadSandbox, tmp_path: Path
) -> None:
    n = 5_000
    path = jsonl(tmp_path / "graph.jsonl", n)
    checkpoint = tmp_path / "graph.ckpt"
    args = command(live, str(path), "--checkpoint", str(checkpoint))
    with open(tmp_path / "err", "w") as err:
        proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 60
            while sum(live.puts().values()) < 1_500 and time.monotonic() < deadline:
                assert proc.poll() is None, (tmp_path / "err").read_text()
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 130
        finally:
            proc.kill()
    assert "checkpoint saved" in (tmp_path / "err").read_text()
    saved = json.loads(checkpoint.read_text())
    first = sum(live.puts().values())
    assert saved["set"] == first < n and not saved["complete"]

    resumed = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert re.search(r"set\s+5,000\n", resumed.stdout), resumed.stdout  # totals over both runs
    puts = live.puts()
    assert len(puts) == n and set(puts.values()) == {1}  # every row once, none twice
    assert live.sb.count("user-referrers", status=429) == 0

    async def graph() -> dict[str, str]:
        return {k[0]: r.referrer.identifier for k, r in live.sb.state.referrals.items()}

    assert live.call(graph()) == {f"u{i}@example.com": f"r{i % 50}@example.com" for i in range(n)}
    again = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "already imported" in again.stdout


@pytest.mark.slow
def test_killed_mid_run_and_rerun_reads_back_what_was_in_flight_and_sends_no_row_twice(
    live: ThreadSandbox, tmp_path: Path
) -> None:
    """SIGKILL: no chance to save. The rows the checkpoint had marked as maybe sent are
    read back (GET user/referrer) on the rerun, not sent again."""
    n = 3_000
    path = jsonl(tmp_path / "graph.jsonl", n)
    checkpoint = tmp_path / "graph.ckpt"
    args = command(live, str(path), "--checkpoint", str(checkpoint), "-q")
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while sum(live.puts().values()) < 1_000 and time.monotonic() < deadline:
            assert proc.poll() is None
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(30)
    resumed = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    puts = live.puts()
    assert len(puts) == n and set(puts.values()) == {1}
    assert live.sb.count("user/referrer") >= 1  # the uncertain rows were read back
