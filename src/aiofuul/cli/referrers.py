"""``aiofuul referrers import FILE``: upsert a whole referral graph (who referred whom)
with ``PUT user-referrers``, validated first, at the users lane's limit, resumable."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ..client import FuulClient
from ..errors import PermissionDeniedError
from ..referrers import ReferrerRow, RowOutcome, import_referrers
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    CLIError,
    add_client_arguments,
    describe_error,
    limits_from_args,
    open_client,
)
from ._graph_input import COLUMNS, Format, GraphCheckpoint, Scan, read_records, scan
from ._output import Progress, bar, fmt_duration

__all__ = ["DESCRIPTION", "HELP", "NAME", "configure", "run"]

NAME = "referrers"
HELP = "import a referral graph (who referred whom), resumable"
DESCRIPTION = """\
Referral graph commands. 'aiofuul referrers import FILE' sets the referrer of every
user in FILE (PUT user-referrers, a service-role key)."""

_IMPORT = f"""\
Set the referrer of every user in FILE with PUT user-referrers (an upsert), at the pace
of the users endpoint's limit (100 requests a minute unless said: 5,000 rows take about
50 minutes). Every row is validated first; an invalid one is reported with its line
and nothing is sent, unless --skip-invalid.

input (--format defaults from the extension: csv for *.csv, else jsonl):
  csv    rows of {", ".join(COLUMNS)}
         (the last optional), in that order; a first row starting with "user" is
         a header
  jsonl  one object a line with those keys: {{"user": "0x...", "user_type":
         "evm_address", "referrer": "bob@example.com", "referrer_type": "email"}}

A user given twice is invalid (a user has one referrer). Each row ends set,
unchanged (the server said it already was so) or refused (with the server's reason).

resuming: --checkpoint FILE records every row answered. After Ctrl-C (the rows in
flight are answered first) rerun the same command: no row is sent twice. After a
crash, the rows that were in flight are read back (GET user/referrer) before being
sent again. A second Ctrl-C stops at once: those rows are then read back too.

exit codes: 0 done, 1 some rows refused or the import stopped on an error, 2 invalid
input or options (nothing sent), 130 interrupted (checkpoint saved)."""

_MAX_SHOWN = 50
_SHOWN_IN_SUMMARY = 10
# Rows marked "may have been sent" at a time, ahead of those in flight: a checkpoint
# write per this many rows, and at most this many read back after a crash.
_WINDOW = 64
_SAVE_EVERY = 0.5


def configure(parser: argparse.ArgumentParser) -> None:
    """``aiofuul referrers`` and its ``import`` command."""
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    sub = commands.add_parser(
        "import", help="upsert a referral graph from CSV or JSON Lines", description=_IMPORT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    sub.add_argument("file", metavar="FILE", type=Path, help="the input file")
    sub.add_argument("--format", choices=("csv", "jsonl"), default=None)
    sub.add_argument("--checkpoint", type=Path, metavar="CKPT", help="record progress, resume")
    sub.add_argument("--skip-invalid", action="store_true", help="import the valid rows")
    sub.add_argument("--dry-run", action="store_true", help="validate and say what would be sent")
    sub.add_argument("--concurrency", type=int, default=8, metavar="N",
                     help="rows in flight at most (default 8; the limit sets the pace)")  # fmt: skip
    sub.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    add_client_arguments(sub)
    sub.set_defaults(run=run)


def _report_invalid(found: Scan, name: str, skip: bool) -> None:
    shown = " (skipped)" if skip else ""
    for line, reason in found.errors[:_MAX_SHOWN]:
        print(f"aiofuul: {name}: line {line}{shown}: {reason}", file=sys.stderr)
    if found.invalid > _MAX_SHOWN:
        print(f"aiofuul: ... and {found.invalid - _MAX_SHOWN:,} more", file=sys.stderr)
    if not skip:
        raise CLIError(f"{found.invalid:,} invalid row(s) in {name}: nothing was sent "
                       "(fix them, or use --skip-invalid to import the rest)")  # fmt: skip


def run(ns: argparse.Namespace) -> int:
    """Validate, then send; returns the exit code."""
    if ns.concurrency < 1:
        raise CLIError("--concurrency must be at least 1")
    path: Path = ns.file
    fmt: Format = ns.format or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    if not path.is_file():
        raise CLIError(f"no such file: {path}")
    progress = Progress(ns.quiet)
    if not ns.quiet:
        progress.message(f"aiofuul: validating {path} ...")
    found = scan(path, fmt, ns.check_format)
    if found.invalid:
        _report_invalid(found, str(path), ns.skip_invalid)
    assert found.fingerprint is not None
    cp = GraphCheckpoint.read(ns.checkpoint) if ns.checkpoint is not None else None
    if cp is None:
        cp = GraphCheckpoint(input=found.fingerprint)
    elif cp.input != found.fingerprint:
        raise CLIError(f"checkpoint {ns.checkpoint} was written for another input (or the "
                       "file changed since); use another --checkpoint, or delete it")  # fmt: skip
    done = cp.set + cp.unchanged + cp.refused
    if cp.complete:
        print(f"already imported ({ns.checkpoint} says complete): nothing to send")
        _summary(cp, found, path, None)
        return EXIT_FAILED if cp.refused else EXIT_OK
    if ns.dry_run:
        print(f"dry run: {found.rows - done:,} of {found.rows:,} rows would be sent "
              f"({found.invalid:,} invalid, {done:,} done before); nothing sent")  # fmt: skip
        return EXIT_OK
    return asyncio.run(_Run(ns, path, fmt, found, cp, progress).main())


class _Run:
    """One run of the import: the rows still to send, the checkpoint kept up to date."""

    def __init__(self, ns: argparse.Namespace, path: Path, fmt: Format, found: Scan,
                 cp: GraphCheckpoint, progress: Progress):  # fmt: skip
        self.ns, self.path, self.fmt, self.found, self.cp = ns, path, fmt, found, cp
        self.progress = progress
        self.answered = set(cp.answered)
        self.positions: dict[int, tuple[int, int]] = {}  # importer index -> (record, line)
        self.verify: set[int] = set()
        self.signal: int | None = None
        self.stop = asyncio.Event()
        self.saved = time.monotonic()
        limit = limits_from_args(ns).users
        self.rate = limit.requests / limit.period

    def _rows(self) -> Iterator[ReferrerRow]:
        """The rows not answered yet, noting each one's record; records passed that are
        no row (blank, invalid, duplicate) are settled as they go."""
        cp, uncertain = self.cp, range(self.cp.prefix, self.cp.started)
        sent = 0
        for record in read_records(self.path, self.fmt, self.ns.check_format):
            if record.index < cp.prefix or record.index in self.answered:
                continue
            if record.row is None or record.index in self.found.duplicates:
                self._settle(record.index)
                continue
            self.positions[sent] = (record.index, record.line)
            if record.index in uncertain:
                self.verify.add(sent)  # read back before sending (importer checks it later)
            sent += 1
            yield record.row

    def _settle(self, record: int) -> None:
        self.answered.add(record)
        while self.cp.prefix in self.answered:
            self.answered.discard(self.cp.prefix)
            self.cp.prefix += 1

    def _on_start(self, index: int) -> None:
        record = self.positions[index][0]
        if record >= self.cp.started:  # written ahead: a crash leaves these uncertain
            self.cp.started = record + _WINDOW
            self._save()

    def _on_done(self, index: int, outcome: RowOutcome, reason: str) -> None:
        record, line = self.positions.pop(index)
        cp = self.cp
        if outcome == "refused":
            cp.refused += 1
            if len(cp.refusals) < 1000:
                cp.refusals.append((line, reason))
            if cp.refused <= _MAX_SHOWN:
                self.progress.message(f"aiofuul: line {line}: refused: {reason}")
        elif outcome == "set":
            cp.set += 1
        else:
            cp.unchanged += 1
        self._settle(record)
        if time.monotonic() - self.saved >= _SAVE_EVERY:
            self._save()

    def _save(self) -> None:
        self.saved = time.monotonic()
        if self.ns.checkpoint is not None:
            self.cp.answered = sorted(self.answered)
            self.cp.save(self.ns.checkpoint)

    def show(self, force: bool = False) -> None:
        cp, total = self.cp, self.found.rows
        done = cp.set + cp.unchanged + cp.refused
        fraction = done / total if total else 1.0
        self.progress.update(
            f"referrers {bar(fraction)} {fraction:4.0%} {done:,}/{total:,} rows | set "
            f"{cp.set:,} unchanged {cp.unchanged:,} refused {cp.refused:,} | "
            f"ETA {fmt_duration((total - done) / self.rate)}", force,
        )  # fmt: skip

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.show()

    def _on_signal(self, signum: int, task: asyncio.Task[object]) -> None:
        if self.signal is None:
            self.signal = signum
            self.stop.set()  # the rows in flight are answered, then it ends
        else:
            task.cancel()  # a second one: at once (those rows are read back next time)

    async def main(self) -> int:
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        handled = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig, task)
                handled.append(sig)
            except (NotImplementedError, RuntimeError):
                pass
        ticker = asyncio.ensure_future(self._ticker())
        fuul: FuulClient | None = None
        try:
            async with open_client(self.ns) as fuul:
                self.ns.shown_base_url = fuul.base_url
                self.show(force=True)
                result = await import_referrers(
                    fuul, self._rows(), concurrency=self.ns.concurrency, stop=self.stop,
                    verify=self.verify, on_start=self._on_start, on_done=self._on_done,
                )  # fmt: skip
                # Every row started was answered: none is uncertain.
                self.cp.started = 0
                self.cp.complete = result.complete and self.signal is None
        except asyncio.CancelledError:
            return self._interrupted()
        except Exception as exc:
            message, code = describe_error(exc, getattr(self.ns, "shown_base_url", None))
            if isinstance(exc, PermissionDeniedError):  # its own text names the key kind
                message = f"403 Forbidden: {exc}"
            raise CLIError(f"{message}; import stopped{self._hint()}", code) from exc
        finally:
            ticker.cancel()
            for sig in handled:
                loop.remove_signal_handler(sig)
            self._save()
            self.show(force=True)
            self.progress.done()
        if self.signal is not None:
            return self._interrupted()
        requests = fuul._lanes["users"].requests if fuul is not None else 0
        _summary(self.cp, self.found, self.path, time.monotonic() - started, requests)
        return EXIT_FAILED if self.cp.refused else EXIT_OK

    def _interrupted(self) -> int:
        print(f"aiofuul: interrupted{self._hint()}", file=sys.stderr)
        return 128 + (self.signal or signal.SIGINT)

    def _hint(self) -> str:
        if self.ns.checkpoint is None:
            return " (no --checkpoint: a rerun starts over; rows already set come back unchanged)"
        return "; checkpoint saved: rerun the same command to continue"


def _summary(cp: GraphCheckpoint, found: Scan, path: Path, elapsed: float | None,
             requests: int | None = None) -> None:  # fmt: skip
    rows = [("rows in the input", found.rows), ("set", cp.set), ("unchanged", cp.unchanged),
            ("refused", cp.refused), ("invalid, not sent", found.invalid)]  # fmt: skip
    print(f"referrers import {'complete' if cp.complete else 'incomplete'}: {path}")
    for label, value in rows:
        print(f"  {label:<22}  {value:>10,}")
    if requests is not None:
        print(f"  {'requests (this run)':<22}  {requests:>10,}")
    if elapsed is not None:
        print(f"  {'elapsed (this run)':<22}  {fmt_duration(elapsed):>10}")
    for line, reason in cp.refusals[:_SHOWN_IN_SUMMARY]:
        print(f"  line {line}: refused: {reason}")
    if cp.refused > _SHOWN_IN_SUMMARY:
        print(f"  ... and {cp.refused - _SHOWN_IN_SUMMARY:,} more refused (the checkpoint "
              "keeps the first 1,000)")  # fmt: skip
