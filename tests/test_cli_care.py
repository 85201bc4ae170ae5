"""The command line as a new user meets it: ``python -m aiofuul``, a server that does
not answer, hints that name flags, record counts, CSV on stdin, and the demo's words."""

from __future__ import annotations

import subprocess
import sys

from aiofuul import __version__


def run_module(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m aiofuul ARGS`` in a subprocess, as a user would type it."""
    return subprocess.run(
        [sys.executable, "-m", "aiofuul", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


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
