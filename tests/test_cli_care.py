"""The command line as a new user meets it: ``python -m aiofuul``, a server that does
not answer, hints that name flags, record counts, CSV on stdin, and the demo's words."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import aiofuul.cli._patience as patience
from aiofuul import __version__
from aiofuul.cli import build_parser, main
from aiofuul.cli._common import cli_hints
from aiofuul.cli._patience import FIRST_NOTICE, WatchedTransport
from aiofuul.errors import TransportError
from aiofuul.sandbox import Sandbox
from aiofuul.testing import MockTransport, respond
from aiofuul.wire.transport import Response

#: The key the sandbox fixture accepts, for commands run against it.
SANDBOX_ENV = {"FUUL_API_KEY": "sk_test_cli_care"}


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUUL_")}
    return {**env, **(extra or {})}


def run_module(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m aiofuul ARGS`` in a subprocess, as a user would type it."""
    return subprocess.run(
        [sys.executable, "-m", "aiofuul", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(env),
    )


async def run_module_async(
    *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """:func:`run_module` without blocking the loop that serves the sandbox fixture."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiofuul", *args,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=_env(SANDBOX_ENV),
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin.encode() if stdin else None), 120)
    assert process.returncode is not None
    return subprocess.CompletedProcess(args, process.returncode, out.decode(), err.decode())


# -- python -m aiofuul ------------------------------------------------------------------
def test_python_m_aiofuul_is_the_aiofuul_command() -> None:
    version = run_module("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"aiofuul {__version__}"

    usage = run_module()
    assert usage.returncode == 2
    assert "choose a command" in usage.stderr

    helped = run_module("--help")
    assert helped.returncode == 0
    assert helped.stdout.startswith("usage: aiofuul ")


def test_python_m_aiofuul_runs_a_command() -> None:
    demo = run_module("demo", "--events", "300", "--time-scale", "0.01", "--quiet")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "OK: every event stored exactly once" in demo.stdout


# -- a server that does not answer --------------------------------------------------------
EVM = "0x52908400098527886E0F7030069857D2E4169EE7"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A loopback server that never answers: the kernel accepts the connection into the
    listen backlog, and nobody ever reads or writes."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}/api/v1/"


def test_the_cli_speaks_up_within_2_s_and_gives_up_within_15_s_by_default() -> None:
    assert FIRST_NOTICE <= 2.0
    ns = build_parser().parse_args(["send", "trade", "--user", EVM, "--type", "evm_address"])
    assert ns.give_up_after <= 15.0
    raised = build_parser().parse_args(["status", "--give-up-after", "120"])
    assert raised.give_up_after == 120.0


def test_a_silent_server_is_reported_while_retrying_then_given_up(
    silent_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FUUL_API_KEY", "sk_test_care")
    monkeypatch.setattr(patience, "FIRST_NOTICE", 0.05)  # the same notice, sooner
    code = main(
        ["send", "trade", "--user", EVM, "--type", "evm_address", "--base-url", silent_url,
         "--timeout", "0.3", "--give-up-after", "1.5"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert f"no answer from {silent_url} yet, still waiting (attempt 1 of 8" in err
    assert f"no answer from {silent_url} yet, retrying (attempt 2 of 8)" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"aiofuul: error: no answer from the server at {silent_url}")
    assert "--give-up-after" in last and "--base-url" in last


def test_watched_transport_names_the_attempt_of_each_retry() -> None:
    said: list[str] = []
    answers = iter([TransportError("POST events: refused"), respond(503), respond(201)])

    def handler(request: object) -> Response:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    watch = WatchedTransport(
        MockTransport(handler), "http://x/", max_attempts=8, say=said.append, first_notice=60
    )

    async def send_until_answered() -> int:
        for _ in range(3):
            with contextlib.suppress(TransportError):
                response = await watch.request("POST", "events", body=b"{}")
                if response.status < 500:
                    return response.status
        return 0

    assert asyncio.run(send_until_answered()) == 201
    assert said == [
        "aiofuul: no answer from http://x/ yet, retrying (attempt 2 of 8)",
        "aiofuul: http://x/ answered 503, retrying (attempt 3 of 8)",
    ]


# -- hints name the flags -----------------------------------------------------------------
def test_errors_name_cli_flags_not_library_settings(tmp_path: Path) -> None:
    bad_user = run_module("send", "trade", "--user", "0x12", "--type", "evm_address",
                          env={"FUUL_API_KEY": "k", "FUUL_BASE_URL": "http://127.0.0.1:9/"})  # fmt: skip
    assert bad_user.returncode == 2
    assert "--no-format-check" in bad_user.stderr and "ClientConfig" not in bad_user.stderr

    events = tmp_path / "events.jsonl"
    events.write_text(event_line("0x12") + "\n")
    bad_line = run_module("import", str(events), env={"FUUL_API_KEY": "k"})
    assert bad_line.returncode == 2
    assert "--no-format-check" in bad_line.stderr and "ClientConfig" not in bad_line.stderr

    bad_url = run_module("status", "--user", EVM, "--type", "evm_address", "--event", "x",
                         "--base-url", "ftp://x", env={"FUUL_API_KEY": "k"})  # fmt: skip
    assert bad_url.returncode == 2
    assert "--base-url" in bad_url.stderr and "base_url" not in bad_url.stderr


def test_cli_hints_rename_every_library_setting_they_know() -> None:
    hint = (
        "[tier 3: identifier format; ClientConfig(check_identifier_format=False) skips this check]"
    )
    assert cli_hints(hint) == "[tier 3: identifier format; --no-format-check skips this check]"


# -- import counts records as the input has them ---------------------------------------------
def event_line(identifier: str, dedup_id: str | None = None) -> str:
    event: dict[str, object] = {
        "name": "trade",
        "user": {"identifier": identifier, "identifier_type": "evm_address"},
    }
    if dedup_id is not None:
        event["dedup_id"] = dedup_id
    return json.dumps(event)


def summary(stdout: str) -> dict[str, int]:
    """The summary's rows, label to number."""
    rows = re.findall(r"^  (\S.*?)\s{2,}([\d,]+)$", stdout, re.MULTILINE)
    return {label: int(value.replace(",", "")) for label, value in rows}


async def test_import_counts_the_records_the_file_has(
    tmp_path: Path, fuul_sandbox: Sandbox
) -> None:
    # 8 records: 6 valid, 1 with a bad address, 1 not JSON; blank lines are not records.
    lines = [event_line(EVM, f"care-{i}") for i in range(6)]
    lines[3:3] = ["", "   "]
    lines += [event_line("0x12"), "not json", ""]
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n")
    result = await run_module_async(
        "import", str(events), "--skip-invalid", "--base-url", fuul_sandbox.url,
        "--time-scale", "1/60",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = summary(result.stdout)
    assert rows["records in the input"] == 8
    assert rows["ingested"] == 6 and rows["invalid, not sent"] == 2
    counted = ("ingested", "skipped as duplicates", "rejected by the server", "invalid, not sent")
    assert sum(rows[label] for label in counted) == rows["records in the input"]
    assert "importing 6 event(s) (2 invalid record(s) skipped) in 1 batch request(s)" in (
        result.stderr
    )


async def test_csv_piped_on_stdin_is_recognised(fuul_sandbox: Sandbox) -> None:
    csv_text = (
        f"name,identifier,identifier_type,dedup_id,arg.size\ntrade,{EVM},evm_address,csv-1,2\n"
    )
    result = await run_module_async(
        "import", "-", "--base-url", fuul_sandbox.url, "--time-scale", "1/60", stdin=csv_text
    )
    assert result.returncode == 0, result.stderr
    assert "import complete: standard input" in result.stdout
    assert summary(result.stdout)["ingested"] == 1
    assert fuul_sandbox.stored_count("csv-1") == 1


def test_stdin_of_no_known_format_asks_for_format_csv() -> None:
    result = run_module(
        "import", "-", stdin="wallet;event\n0xabc;trade\n", env={"FUUL_API_KEY": "k"}
    )
    assert result.returncode == 2
    assert "--format csv" in result.stderr


# -- outbox stats --------------------------------------------------------------------------
def test_outbox_stats_prints_no_empty_list_after_a_colon(redis_url: str) -> None:
    result = run_module("outbox", redis_url, "stats", env={"FUUL_API_KEY": "sk_test_no_worker"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for line, after in zip(lines, [*lines[1:], ""], strict=True):
        assert not line.endswith(":") or after.startswith("  "), result.stdout
    assert "no worker has joined" in result.stdout
    assert "oldest" not in result.stdout  # nothing waits: no age to give


# -- the demo's overload warning -----------------------------------------------------------
def test_demo_overload_warning_speaks_in_api_minutes() -> None:
    demo = run_module("demo", "--events", "3000", "--time-scale", "0.01", "--quiet")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    warning = [line for line in demo.stderr.splitlines() if "events arrive faster" in line]
    assert len(warning) == 1, demo.stderr
    # The demo's ceiling, as its summary says it: 1,100 events per (API) minute.
    assert "against a ceiling of 1100/min (API minutes, each 0.6 s in this demo)" in warning[0]
    assert "1,100 events/min" in demo.stdout


def test_demo_quick_compresses_time_and_events_unless_given() -> None:
    # --events given: only the time scale comes from --quick (1 API minute = 1.2 s).
    demo = run_module("demo", "--quick", "--events", "200", "--quiet")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "aiofuul demo: 200 events" in demo.stdout
    assert "1 min = 1.2 s" in demo.stdout


class _Gate:
    """A transport whose requests wait until the test answers them (or never)."""

    def __init__(self) -> None:
        self.waiting: list[asyncio.Future[Response]] = []

    async def request(self, method: str, path: str, **_: object) -> Response:
        answer: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.waiting.append(answer)
        return await answer

    async def close(self) -> None:
        pass


def test_silence_counts_from_the_last_answer_while_others_wait() -> None:
    """One request answered, another left hanging: the give-up still comes, counted
    from the answer (the server was there then), and cancels the command's task."""

    async def scenario() -> tuple[bool, bool]:
        gate = _Gate()
        watch = WatchedTransport(
            gate, "http://x/", max_attempts=8, give_up=0.2, say=lambda _: None, first_notice=60
        )
        command = asyncio.current_task()
        assert command is not None
        watch.task = command
        answered = asyncio.ensure_future(watch.request("POST", "events", body=b"1"))
        hanging = asyncio.ensure_future(watch.request("POST", "events", body=b"2"))
        while len(gate.waiting) < 2:
            await asyncio.sleep(0)
        gate.waiting[0].set_result(respond(201))
        assert (await answered).status == 201
        cancelled = False
        try:
            await asyncio.wait_for(asyncio.shield(hanging), 30)  # a real hang fails here
        except asyncio.CancelledError:
            cancelled = True
            uncancel = getattr(command, "uncancel", None)
            if uncancel is not None:
                uncancel()
        hanging.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hanging
        return cancelled, watch.gave_up

    assert asyncio.run(scenario()) == (True, True)
