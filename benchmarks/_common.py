"""Shared helpers of the benchmark scripts: command line, timing, result rows, JSON
output, table printing, and a sandbox server in a child process.

Every script is run as ``python benchmarks/NAME.py [--quick] [--out DIR]``; it prints a
table (metric, value, bar, met?) and writes ``benchmarks/results/NAME.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

#: The event every benchmark sends: same shape everywhere.
EVENT_NAME = "trade"
EVM_ADDRESS = "0x52908400098527886E0F7030069857D2E4169EE7"
ARGS: dict[str, Any] = {"pair": "ETH/USDC", "size": 2.5}
API_KEY = "sk_bench_0123456789abcdef"

#: A port on loopback where nothing listens (the discard port), for clients that
#: must not deliver anything.
DEAD_URL = "http://127.0.0.1:9/api/v1/"


# -- result rows ----------------------------------------------------------------------
@dataclass
class Row:
    """One line of a result table. ``met`` is None when the row has no bar."""

    metric: str
    value: float | int | str
    unit: str = ""
    bar: str = ""
    met: bool | None = None
    note: str = ""

    def shown_value(self) -> str:
        return fmt(self.value, self.unit)

    def shown_met(self) -> str:
        return "" if self.met is None else ("yes" if self.met else "NO")


def fmt(value: float | int | str, unit: str = "") -> str:
    """A number with a sensible number of digits and its unit."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, int) and not isinstance(value, bool):
        text = f"{value:,}"
    elif value != value:  # NaN
        text = "n/a"
    elif abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    if not unit:
        return text
    if unit in ("x", "%"):
        return text + unit
    return f"{text} {unit}"


# -- command line ------------------------------------------------------------------------
def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run of a few seconds (figures are rough)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        help="directory of the JSON result (default: %(default)s)",
    )
    return parser.parse_args(argv)


def require(ok: bool, message: str) -> None:
    """Stop the benchmark when a precondition of a fair measurement fails (not an
    ``assert``: it must hold under ``python -O`` too)."""
    if not ok:
        raise RuntimeError(message)


# -- timing -------------------------------------------------------------------------------
def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def interleaved(
    cases: dict[str, Callable[[], T]],
    repeats: int,
    between: Callable[[], None] | None = None,
) -> dict[str, list[T]]:
    """Run each case once per round (A, B, C, A, B, C, ...) ``repeats`` times; each call
    returns its own measurement. A full garbage collection precedes every call so that
    one case does not pay for another's garbage; ``between`` runs after every call."""
    samples: dict[str, list[T]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, case in cases.items():
            gc.collect()
            samples[name].append(case())
            if between is not None:
                between()
    return samples


class Stopwatch:
    """Wall-clock and CPU time of this thread over a block: ``with Stopwatch() as sw:``.

    On a shared machine the thread's CPU time (``time.thread_time``) is the steadier
    figure: it does not count the time other processes held the core."""

    __slots__ = ("_cpu0", "_wall0", "cpu", "wall")

    def __init__(self) -> None:
        self.cpu = self.wall = 0.0
        self._cpu0 = self._wall0 = 0.0

    def __enter__(self) -> Stopwatch:
        self._wall0 = time.perf_counter()
        self._cpu0 = time.thread_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = time.thread_time() - self._cpu0
        self.wall = time.perf_counter() - self._wall0


def us_per_op(samples: dict[str, list[Stopwatch]], number: int) -> dict[str, dict[str, Any]]:
    """Per case: microseconds per operation of each block (``cpu`` and ``wall`` lists,
    blocks of ``number`` operations) and their medians (``cpu_median``, ``wall_median``)."""
    out: dict[str, dict[str, Any]] = {}
    for name, watches in samples.items():
        cpu = [sw.cpu / number * 1e6 for sw in watches]
        wall = [sw.wall / number * 1e6 for sw in watches]
        out[name] = {
            "cpu": cpu,
            "wall": wall,
            "cpu_median": median(cpu),
            "wall_median": median(wall),
        }
    return out


# -- output -------------------------------------------------------------------------------------
def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    load: tuple[float, float, float] | None = None
    if hasattr(os, "getloadavg"):
        load = os.getloadavg()
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg": load,
        "versions": {
            name: _version(name)
            for name in (
                "aiofuul",
                "aiohttp",
                "msgspec",
                "orjson",
                "segment-analytics-python",
                "posthog",
                "httpx",
                "aiolimiter",
                "psutil",
            )
        },
    }


class _Expected(logging.Filter):
    """Drops what the benchmarks cause on purpose: events abandoned at shutdown."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("(shutdown)" in message or "garbage-collected" in message)


class ErrorLog(logging.Handler):
    """Collects the errors aiofuul logs during a benchmark (anything but the expected
    shutdown reports): a figure measured while the client was failing is no figure."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.addFilter(_Expected())
        self.messages: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f" [{type(exc).__name__}: {exc}]"
        self.messages[text] = self.messages.get(text, 0) + 1


def watch_logs() -> ErrorLog:
    handler = ErrorLog()
    logger = logging.getLogger("aiofuul")
    logger.addHandler(handler)
    logger.propagate = False
    return handler


@dataclass
class Report:
    """The result of one benchmark script: rows for the table plus free-form details.
    Creating one starts collecting aiofuul's logged errors (see :class:`ErrorLog`)."""

    name: str
    title: str
    quick: bool
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    errors: ErrorLog = field(default_factory=watch_logs)

    def add(self, *args: Any, **kwargs: Any) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row

    def finish(self, out: Path) -> Path:
        """Print the table and write ``out/NAME.json``; returns the JSON path."""
        elapsed = time.perf_counter() - self.started
        print(text_table(self.title + (" (--quick)" if self.quick else ""), self.rows))
        print(f"({elapsed:.1f} s)")
        logged = self.errors.messages
        if logged:
            print(f"WARNING: aiofuul logged {sum(logged.values())} unexpected error(s):")
            for text, count in logged.items():
                print(f"  {count} x {text}")
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{self.name}.json"
        payload = {
            "name": self.name,
            "title": self.title,
            "quick": self.quick,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "duration_s": round(elapsed, 3),
            "machine": machine(),
            "rows": [
                {**dataclasses.asdict(r), "shown": r.shown_value(), "met_shown": r.shown_met()}
                for r in self.rows
            ],
            "details": self.details,
            "aiofuul_logged_errors": logged,
        }
        path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
        return path


def _json_default(value: object) -> object:
    if isinstance(value, float) and value != value:
        return None
    return repr(value)


def text_table(title: str, rows: Sequence[Row]) -> str:
    headers = ("metric", "value", "bar", "met?")
    cells = [(r.metric, r.shown_value(), r.bar, r.shown_met()) for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    lines = [title, "-" * len(title)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    for c in cells:
        lines.append("  ".join(x.ljust(w) for x, w in zip(c, widths, strict=True)))
    notes = [f"  * {r.metric}: {r.note}" for r in rows if r.note]
    if notes:
        lines.append("")
        lines.extend(notes)
    return "\n".join(lines)


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    """One Markdown table of the rows of several JSON results."""
    lines = ["| benchmark | metric | value | bar | met? |", "| --- | --- | ---: | --- | :---: |"]
    for result in results:
        title = result["title"] + (" (quick)" if result.get("quick") else "")
        for i, row in enumerate(result["rows"]):
            cells = (
                title if i == 0 else "",
                row["metric"],
                row["shown"],
                row["bar"],
                {"yes": "yes", "NO": "**no**"}.get(row["met_shown"], ""),
            )
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


# -- a sandbox in another process ----------------------------------------------------------
#: Limits that never bind: 10**9 requests a second on every endpoint.
LIFTED = "1000000000/1"


class SandboxProcess:
    """A sandbox API server in a child process, so that its CPU is not the client's.

    ``record=False`` runs the real command line, ``python -m aiofuul.sandbox``;
    ``record=True`` runs ``_sandbox_child.py``, which also hands back every recorded
    request (``path, status, at, events``; ``at`` is ``time.monotonic()``, the same
    clock system-wide on Linux) when stopped.

    ``limits`` are ``(single, batch, status)`` as ``"N/SECONDS"``, or None for the
    documented limits; ``time_scale`` multiplies every period.
    """

    def __init__(
        self,
        limits: tuple[str, str, str] | None = (LIFTED, LIFTED, LIFTED),
        time_scale: float = 1.0,
        record: bool = False,
    ):
        self.record = record
        args = ["--port", "0", "--time-scale", repr(time_scale)]
        if limits is not None:
            for name, value in zip(("single", "batch", "status"), limits, strict=True):
                args += [f"--{name}-limit", value]
        if record:
            self.cmd = [sys.executable, str(HERE / "_sandbox_child.py"), *args]
        else:
            self.cmd = [sys.executable, "-m", "aiofuul.sandbox", *args]
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> SandboxProcess:
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "http://" not in line:
            self.proc.kill()
            raise RuntimeError(f"sandbox did not start: {line!r}")
        self.url = line[line.index("http://") :].strip()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> list[tuple[str, int, float, int]]:
        """Stop the server; with ``record=True`` return its recorded requests."""
        proc, self.proc = self.proc, None
        if proc is None:
            return []
        requests: list[tuple[str, int, float, int]] = []
        try:
            if self.record:
                assert proc.stdin is not None
                assert proc.stdout is not None
                proc.stdin.write("stop\n")
                proc.stdin.flush()
                data = proc.stdout.readline()
                requests = [(r[0], r[1], r[2], r[3]) for r in json.loads(data)]
            else:
                proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return requests

    def __exit__(self, *exc: object) -> None:
        self.stop()
