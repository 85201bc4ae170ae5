"""The ``aiofuul`` command line, run as subprocesses against a sandbox.

The sandbox runs on its own event loop in a thread of the test process, so that the
tests can block on subprocesses and still read its store directly.
"""

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
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from aiofuul import DEFAULT_LIMITS
from aiofuul.sandbox import Sandbox

T = TypeVar("T")

SCALE = "0.01"  # the limits' periods x0.01: 10 batches per 0.6 s
KEY = "sk_test_cli_0123456789"
EVM = "0x52908400098527886E0F7030069857D2E4169EE7"
COMMANDS = ["demo", "sandbox", "send", "import", "status"]


class ThreadSandbox:
    """A :class:`Sandbox` serving from its own loop in a daemon thread."""

    def __init__(self, **kwargs: Any):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sb = self.call(self._make(kwargs))
        self.call(self.sb.start())

    @staticmethod
    async def _make(kwargs: dict[str, Any]) -> Sandbox:
        return Sandbox(**kwargs)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the sandbox's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stored_ids(self) -> list[str]:
        async def read() -> list[str]:
            return self.sb.stored_ids()

        return self.call(read())

    def close(self) -> None:
        self.call(self.sb.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def live() -> Iterator[ThreadSandbox]:
    """A sandbox with the limits x0.01 that accepts only :data:`KEY`."""
    ts = ThreadSandbox(
        limits=DEFAULT_LIMITS.scaled(float(SCALE)), keys={KEY: ["send:trigger_event"]}
    )
    yield ts
    ts.close()


def env_for(live: ThreadSandbox | None, key: str | None = KEY) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUUL_")}
    if key is not None:
        env["FUUL_API_KEY"] = key
    if live is not None:
        env["FUUL_BASE_URL"] = live.sb.url
    return env


def cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m aiofuul.cli ARGS`` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "aiofuul.cli", *args],
        env=env if env is not None else env_for(None),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def event_line(i: int, dedup: bool = True, **extra: Any) -> str:
    event: dict[str, Any] = {
        "name": "trade",
        "user": {"identifier": EVM, "identifier_type": "evm_address"},
        "args": {"i": i},
        **extra,
    }
    if dedup:
        event["dedup_id"] = f"line-{i}"
    return json.dumps(event) + "\n"


# -- help and usage -------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_command_has_help(command: str | None) -> None:
    result = cli(*([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: aiofuul")


@pytest.mark.slow
def test_no_command_is_a_usage_error() -> None:
    result = cli()
    assert result.returncode == 2
    assert "choose a command" in result.stderr


@pytest.mark.slow
def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("aiofuul")
    if not script.exists():
        pytest.skip("the aiofuul script is not installed next to this interpreter")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert result.stdout.startswith("aiofuul ")


# -- send and status ----------------------------------------------------------------------
@pytest.mark.slow
def test_send_created_then_duplicate_and_status(live: ThreadSandbox) -> None:
    env = env_for(live)
    user = ["--user", EVM, "--type", "evm_address"]
    status = cli("status", *user, "--event", "deposit", "--time-scale", SCALE, env=env)
    assert (status.returncode, status.stdout) == (0, "not created\n"), status.stderr
    send = [
        "send", "deposit", *user, "--dedup-id", "dep-1", "--time-scale", SCALE,
        "--arg", "size=2.5", "--arg", "ok=true", "--arg", "n=7", "--arg", "ref:str=007",
        "--arg", "note=hello world", "--timestamp", "2024-05-31T16:08:37Z",
    ]  # fmt: skip
    first = cli(*send, env=env)
    assert (first.returncode, first.stdout) == (0, "created dedup_id=dep-1\n"), first.stderr
    again = cli(*send, env=env)
    assert (again.returncode, again.stdout) == (0, "duplicate dedup_id=dep-1\n"), again.stderr
    assert live.stored_ids() == ["dep-1"]
    event = live.sb.events[0]
    assert event.args == {"size": 2.5, "ok": True, "n": 7, "ref": "007", "note": "hello world"}
    assert event.timestamp == 1717171717000
    status = cli("status", *user, "--event", "deposit", "--time-scale", SCALE, env=env)
    assert (status.returncode, status.stdout) == (0, "created\n"), status.stderr


@pytest.mark.slow
def test_status_pipeline_shows_what_became_of_an_event(live: ThreadSandbox) -> None:
    env = env_for(live)
    user = ["--user", EVM, "--type", "evm_address", "--time-scale", SCALE]
    pipeline = ["status", "--pipeline", "--dedup-id", "swap-1", "--event", "swap"]
    missing = cli(*pipeline, "--time-scale", SCALE, env=env)
    assert (missing.returncode, missing.stdout) == (1, "not found\n"), missing.stderr
    sent = cli("send", "swap", *user, "--dedup-id", "swap-1", env=env)
    assert sent.returncode == 0, sent.stderr
    found = cli(*pipeline, "--time-scale", SCALE, "--wait", "5", env=env)
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines() == [
        "trigger execution: success",
        "attributions: 1",
        "payouts: 1",
        "movements: 1",  # the payout's movement, as payouts/movements lists it
    ]
    usage = cli("status", "--pipeline", "--dedup-id", "swap-1", env=env)
    assert usage.returncode == 2 and "--event-id, or --dedup-id with --event" in usage.stderr


@pytest.mark.slow
def test_wrong_api_key_is_one_clear_line(live: ThreadSandbox) -> None:
    wrong = "sk_wrong_key_must_not_be_printed"
    args = ["send", "signup", "--user", "ada@example.com", "--type", "email"]
    result = cli(*args, env=env_for(live, key=wrong))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("aiofuul: error: 401 Unauthorized")
    assert "FUUL_API_KEY" in lines[0]
    assert wrong not in result.stderr + result.stdout
    # --debug adds the traceback, still without the key.
    debug = cli("--debug", *args, env=env_for(live, key=wrong))
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert wrong not in debug.stderr + debug.stdout
    assert live.stored_ids() == []


@pytest.mark.slow
def test_invalid_event_and_missing_key_are_usage_errors(live: ThreadSandbox) -> None:
    bad = cli("send", "signup", "--user", "0x123", "--type", "evm_address", env=env_for(live))
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "aiofuul: error: invalid event: user.identifier: must be an evm_address: "
        "0x followed by 40 hex digits (got '0x123') [tier 3: identifier format; "
        "--no-format-check skips this check]"
    ]
    no_key = cli("send", "signup", "--user", EVM, "--type", "evm_address", env=env_for(live, None))
    assert no_key.returncode == 2
    assert no_key.stderr == "aiofuul: error: no API key: set FUUL_API_KEY\n"
    bad_arg = cli("send", "x", "--user", EVM, "--type", "evm_address", "--arg", "oops")
    assert bad_arg.returncode == 2
    assert "expected KEY=VALUE" in bad_arg.stderr
    assert live.sb.requests == []


# -- import ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_import_reports_bad_lines_and_sends_nothing(live: ThreadSandbox, tmp_path: Path) -> None:
    lines = [event_line(i) for i in range(20)]
    lines[2] = "{not json\n"
    lines[6] = event_line(6, user={"identifier": "nope", "identifier_type": "evm_address"})
    lines[11] = event_line(11, timestamp=1717171717)  # seconds, not milliseconds
    lines[15] = event_line(15, timestmap=1717171717000)  # misspelt field
    path = tmp_path / "events.jsonl"
    path.write_text("".join(lines))
    env = env_for(live)
    result = cli("import", str(path), "--time-scale", SCALE, env=env)
    assert result.returncode == 2
    for line, reason in [
        (3, "not valid JSON"),
        (7, "user.identifier: must be an evm_address"),
        (12, "timestamp: looks like seconds"),
        (16, "unknown field 'timestmap'"),
    ]:
        assert f"line {line}: {reason}" in result.stderr
    assert "4 invalid record(s)" in result.stderr
    assert "nothing was sent" in result.stderr
    assert live.sb.requests == []

    result = cli("import", str(path), "--skip-invalid", "--time-scale", SCALE, env=env)
    assert result.returncode == 0, result.stderr
    assert "line 3 (skipped): not valid JSON" in result.stderr
    assert re.search(r"ingested\s+16\b", result.stdout)
    assert re.search(r"invalid, not sent\s+4\b", result.stdout)
    assert sorted(live.stored_ids()) == sorted(
        f"line-{i}" for i in range(20) if i not in (2, 6, 11, 15)
    )


@pytest.mark.slow
def test_import_csv_from_stdin(live: ThreadSandbox) -> None:
    csv_text = (
        "name,identifier,identifier_type,dedup_id,timestamp,arg.size,arg.ref:str,arg.ok\n"
        f"trade,{EVM},evm_address,c-1,1717171717000,2.5,007,true\n"
        f'trade,{EVM},evm_address,,2024-05-31T16:08:37Z,3,"a, b",\n'
        "\n"
        "signup,ada@example.com,email,c-3,,,,false\n"
    )
    result = cli(
        "import", "-", "--format", "csv", "--time-scale", SCALE, env=env_for(live), stdin=csv_text
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"ingested\s+3\b", result.stdout)
    stored = {e.dedup_id: e for e in live.sb.events}
    assert stored["c-1"].args == {"size": 2.5, "ref": "007", "ok": True}
    assert stored["c-3"].args == {"ok": False} and stored["c-3"].timestamp is None
    derived = [e for d, e in stored.items() if d.startswith("imp-")]
    assert len(derived) == 1 and derived[0].args == {"size": 3, "ref": "a, b"}
    assert derived[0].timestamp == 1717171717000


@pytest.mark.slow
def test_import_without_dedup_ids_is_idempotent(live: ThreadSandbox, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(event_line(i, dedup=False) for i in range(250)))
    env = env_for(live)
    first = cli("import", str(path), "--time-scale", SCALE, "-q", env=env)
    assert first.returncode == 0, first.stderr
    second = cli("import", str(path), "--time-scale", SCALE, "-q", env=env)
    assert second.returncode == 0, second.stderr
    assert re.search(r"ingested\s+0\b", second.stdout)
    assert re.search(r"skipped as duplicates\s+250\b", second.stdout)
    ids = live.stored_ids()
    assert len(ids) == len(set(ids)) == 250
    assert all(re.fullmatch(r"imp-[0-9a-f]{32}", i) for i in ids)


@pytest.mark.slow
def test_import_reports_events_the_server_rejects(live: ThreadSandbox, tmp_path: Path) -> None:
    # The client skips the format check; the sandbox does not, and refuses the batch.
    lines = [event_line(i) for i in range(5)]
    lines[3] = event_line(3, user={"identifier": "0xnot-hex", "identifier_type": "evm_address"})
    path = tmp_path / "events.jsonl"
    path.write_text("".join(lines))
    args = ["import", str(path), "--no-format-check", "--time-scale", SCALE, "-q"]
    result = cli(*args, env=env_for(live))
    assert result.returncode == 1
    assert "line 4: rejected by the server" in result.stderr
    assert re.search(r"rejected by the server\s+1\b", result.stdout)
    assert sorted(live.stored_ids()) == ["line-0", "line-1", "line-2", "line-4"]


def test_import_sends_an_undocumented_shape_and_reports_the_servers_refusal(
    live: ThreadSandbox, tmp_path: Path
) -> None:
    # No Fuul document shows a EUR currency: the client does not refuse it (the server
    # decides), so the line is sent, with one warning, and the sandbox rejects it.
    eur = {"value": {"amount": "1", "currency": {"name": "EUR"}}}
    lines = [event_line(i) for i in range(5)]
    lines[1] = event_line(1, args=eur)
    lines[3] = event_line(3, args=eur)
    lines[2] = event_line(2, timestamp="1717171717000")  # documented: digits in a string
    path = tmp_path / "events.jsonl"
    path.write_text("".join(lines))
    result = cli("import", str(path), "--time-scale", SCALE, env=env_for(live))
    assert result.returncode == 1
    assert "invalid" not in result.stderr.lower()
    assert "line 2: rejected by the server" in result.stderr
    assert "line 4: rejected by the server" in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, result.stderr  # once per shape, not once per line
    assert "args.value.currency.name" in warnings[0]
    assert re.search(r"rejected by the server\s+2\b", result.stdout)
    assert sorted(live.stored_ids()) == ["line-0", "line-2", "line-4"]
    stored = {e.dedup_id: e for e in live.sb.events}
    assert stored["line-2"].timestamp == "1717171717000"


def test_import_with_a_wrong_key_stops_with_one_line(live: ThreadSandbox, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(event_line(i) for i in range(10)))
    wrong = "sk_wrong_key_must_not_be_printed"
    result = cli("import", str(path), "-q", "--time-scale", SCALE, env=env_for(live, wrong))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("aiofuul: error: 401 Unauthorized")
    assert wrong not in result.stderr + result.stdout


@pytest.mark.slow
def test_import_refuses_a_checkpoint_of_another_input(live: ThreadSandbox, tmp_path: Path) -> None:
    env = env_for(live)
    checkpoint = tmp_path / "import.ckpt"
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(event_line(1))
    b.write_text(event_line(2))
    ok = cli(
        "import", str(a), "--checkpoint", str(checkpoint), "-q", "--time-scale", SCALE, env=env
    )
    assert ok.returncode == 0, ok.stderr
    other = cli(
        "import", str(b), "--checkpoint", str(checkpoint), "-q", "--time-scale", SCALE, env=env
    )
    assert other.returncode == 2
    assert "written for another input" in other.stderr
    assert live.stored_ids() == ["line-1"]


@pytest.mark.slow
def test_import_interrupted_by_sigint_resumes_exactly_once(
    live: ThreadSandbox, tmp_path: Path
) -> None:
    n = 10_000
    path = tmp_path / "history.jsonl"
    path.write_text("".join(event_line(i, dedup=i % 2 == 0) for i in range(n)))
    checkpoint = tmp_path / "history.ckpt"
    args = [sys.executable, "-m", "aiofuul.cli", "import", str(path)]
    args += ["--checkpoint", str(checkpoint), "--time-scale", SCALE]
    with open(tmp_path / "err", "w") as err:
        proc = subprocess.Popen(args, env=env_for(live), stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 30
            done = 0
            while done < 2_000 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
                if checkpoint.exists():
                    done = json.loads(checkpoint.read_text())["next_record"]
            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 130
        finally:
            proc.kill()
    stderr = (tmp_path / "err").read_text()
    assert "interrupted at line" in stderr and "rerun the same command" in stderr
    saved = json.loads(checkpoint.read_text())
    assert 2_000 <= saved["next_record"] < n and not saved["complete"]
    assert len(live.stored_ids()) < n

    resumed = subprocess.run(args, env=env_for(live), capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    assert f"from line {saved['next_line']:,}" in resumed.stderr
    # Batches in flight at SIGINT may have been stored unacknowledged: the rerun sent
    # them again and the server skipped them.
    ingested = re.search(r"ingested\s+([\d,]+)\n", resumed.stdout)
    skipped = re.search(r"skipped as duplicates\s+([\d,]+)\n", resumed.stdout)
    assert ingested and skipped, resumed.stdout
    counts = [int(m.group(1).replace(",", "")) for m in (ingested, skipped)]
    assert sum(counts) == n and counts[1] <= 4 * 100  # at most --concurrency batches
    ids = live.stored_ids()
    assert len(ids) == len(set(ids)) == n
    assert {i for i in ids if i.startswith("line-")} == {f"line-{i}" for i in range(0, n, 2)}
    batches = live.sb.count("events/batch")

    again = subprocess.run(args, env=env_for(live), capture_output=True, text=True, timeout=60)
    assert again.returncode == 0
    assert "already imported" in again.stdout
    assert live.sb.count("events/batch") == batches


@pytest.mark.slow
def test_import_stopped_by_a_lost_connection_resumes_exactly_once(
    live: ThreadSandbox, tmp_path: Path
) -> None:
    n = 3_000
    path = tmp_path / "history.jsonl"
    path.write_text("".join(event_line(i, dedup=i % 3 == 0) for i in range(n)))
    checkpoint = tmp_path / "history.ckpt"
    args = [sys.executable, "-m", "aiofuul.cli", "import", str(path), "-q"]
    args += ["--checkpoint", str(checkpoint), "--time-scale", SCALE, "--max-attempts", "1"]
    proc = subprocess.Popen(args, env=env_for(live), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoint.exists() and json.loads(checkpoint.read_text())["next_record"] >= 500:
            break
        time.sleep(0.02)

    async def cut(rate: float) -> None:
        # Every connection closed, after the events were stored: the client never hears.
        live.sb.faults.drop_rate = rate
        live.sb.faults.drop_after_store = 1.0

    live.call(cut(1.0))
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1
    lines = stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aiofuul: error: no answer from the server")
    assert "rerun the same command to continue" in lines[0]
    assert json.loads(checkpoint.read_text())["next_record"] < n

    live.call(cut(0.0))
    # The default attempts this time: the sandbox still counts the first run's requests
    # in its window, so the rerun starts with a 429 or two, which it waits out.
    args = args[: args.index("--max-attempts")]
    resumed = subprocess.run(args, env=env_for(live), capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    ids = live.stored_ids()
    assert len(ids) == len(set(ids)) == n
    assert re.search(r"import complete", resumed.stdout)


# -- demo and sandbox ----------------------------------------------------------------------
@pytest.mark.slow
def test_demo_delivers_exactly_once_without_429s() -> None:
    result = cli("demo", "--events", "2000", "--time-scale", SCALE, "--producers", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"delivered exactly once\s+2,000 of 2,000", out)
    assert re.search(r"lost\s+0\n", out)
    assert re.search(r"duplicated\s+0 ", out)
    assert re.search(r"429 responses\s+0\n", out)
    assert "p50" in out and "p99" in out
    assert "demo [" in result.stderr  # progress


@pytest.mark.slow
def test_sandbox_command_serves_until_sigint() -> None:
    args = [sys.executable, "-m", "aiofuul.cli", "sandbox", "--port", "0", "--key", "k9"]
    proc = subprocess.Popen([*args, "--time-scale", SCALE], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"aiofuul sandbox listening on (http://\S+)\n", line)
        assert match, line
        env = {**env_for(None, key="k9"), "FUUL_BASE_URL": match.group(1)}
        user = ["--user", "ada@example.com", "--type", "email"]
        sent = cli("send", "signup", *user, "--time-scale", SCALE, env=env)
        assert (sent.returncode, sent.stdout.split()[0]) == (0, "created"), sent.stderr
        status = cli("status", *user, "--event", "signup", "--time-scale", SCALE, env=env)
        assert status.stdout == "created\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        if proc.stdout is not None:
            proc.stdout.close()
