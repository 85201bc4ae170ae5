"""Run every benchmark, each in its own process, and print one combined Markdown table
(the one docs/benchmarks.md carries).

    python benchmarks/run_all.py            # about a minute on 2 cores
    python benchmarks/run_all.py --quick    # smoke run, a few seconds each

Each script's own table goes to stderr as it finishes; the combined table goes to
stdout. The exit status is 1 if a script failed (a missed bar is not a failure: it is
a figure, reported as such).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as c

SCRIPTS = (
    "track_cost",
    "encoding",
    "rate_limit",
    "cpu_per_event",
    "memory",
    "latency",
    "sync_track",
    "stream",
    "redis_outbox",
    "payload_bounds",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run of every script")
    parser.add_argument("--out", type=Path, default=c.RESULTS, help="directory of the JSON results")
    parser.add_argument(
        "--only", nargs="+", choices=SCRIPTS, default=None, help="run only these scripts"
    )
    ns = parser.parse_args(argv)
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    for name in ns.only or SCRIPTS:
        cmd = [sys.executable, str(c.HERE / f"{name}.py"), "--out", str(ns.out)]
        if ns.quick:
            cmd.append("--quick")
        path = ns.out / f"{name}.json"
        path.unlink(missing_ok=True)  # a stale result must not pass for this run's
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        sys.stderr.write(proc.stdout + proc.stderr + "\n")
        sys.stderr.flush()
        if proc.returncode != 0 or not path.exists():
            failed.append(name)
            continue
        results.append(json.loads(path.read_text()))
    elapsed = time.perf_counter() - started

    rows = [r for result in results for r in result["rows"]]
    met = sum(1 for r in rows if r["met"] is True)
    missed = sum(1 for r in rows if r["met"] is False)
    command = "nox -s bench" + (" -- --quick" if ns.quick else "")
    print(
        f"Measured with `{command}` (`python benchmarks/run_all.py"
        f"{' --quick' if ns.quick else ''}`) on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"{elapsed:.0f} s in all.\n"
    )
    print(c.markdown_table(results))
    print(f"\nBars met: {met} of {met + missed}.")
    for result in results:
        for text, count in result.get("aiofuul_logged_errors", {}).items():
            print(f"\nWARNING ({result['name']}): aiofuul logged {count} x {text}")
    if failed:
        print(f"\nFAILED: {', '.join(failed)} (see the output above)")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
