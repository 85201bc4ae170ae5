"""``aiofuul import FILE``: bulk import of historical events through the batch endpoint,
validated first, resumable with ``--checkpoint``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from ..wire.models import MAX_BATCH_EVENTS
from ._checkpoint import Checkpoint, Fingerprint
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    CLIError,
    add_client_arguments,
    cli_hints,
    describe_error,
    limits_from_args,
    open_client,
)
from ._formats import choose_format
from ._output import Progress, fmt_duration, wrap
from ._records import CSV_COLUMNS, Input, Scan
from ._upload import Uploader
from ._values import ARG_VALUE_RULES, TIMESTAMP_RULES

__all__ = ["DESCRIPTION", "HELP", "NAME", "configure", "run"]

_MAX_SHOWN_ERRORS = 50

_DESCRIPTION = f"""\
Import historical events through POST /v1/events/batch: 100 events a request, as
fast as the batch limit allows (10 requests a minute: 1,000,000 events take about
17 hours). Every record is validated first; any invalid one is reported with its
line number and nothing is sent, unless --skip-invalid.

input formats (FILE, or - for standard input; --format defaults from the extension,
or from the first line of standard input):
  jsonl  one JSON event per line, the API's own shape:
         {{"name": "trade", "user": {{"identifier": "0x...", "identifier_type":
         "evm_address"}}, "dedup_id": "t-1", "args": {{"size": 2.5}}, "timestamp":
         1717171717000}}; dedup_id, args and timestamp are optional, and other fields
         are refused (a misspelt "timestamp" would silently lose the time). Blank
         lines are ignored.
{
    wrap(
        f"csv    a header naming the columns {', '.join(CSV_COLUMNS)} (the first three "
        "required) and arg.KEY for each argument; empty cells are left out. "
        f"timestamp: {TIMESTAMP_RULES}. arg values: {ARG_VALUE_RULES}.",
        "  ",
        "         ",
    )
}

dedup ids: a record without one gets imp-<32 hex digits of the sha256 of its
content> (keys sorted, dedup_id left out), so a rerun sends the same ids and the
server skips what it already has. Two records with identical content (same name,
user, args and timestamp) are then one event: give them dedup ids if they are not.

resuming: --checkpoint FILE records how many leading records the server has
acknowledged (written atomically after each batch, with a fingerprint of the
input). After Ctrl-C, a crash or a network failure, rerun the very same command:
it continues there; events in flight when it stopped are sent again and skipped
by the server. A finished import's checkpoint makes a rerun a no-op.

exit codes: 0 done (duplicates skipped and --skip-invalid lines included),
1 some events were rejected by the server or the import stopped on an error
(rerun to resume), 2 invalid input or options (nothing sent), 130 interrupted
(Ctrl-C; 143 for SIGTERM), checkpoint saved.

progress goes to stderr (one line redrawn on a terminal, a line every 2 s
otherwise); the summary goes to stdout."""


NAME = "import"
HELP = "bulk import of historical events (JSON Lines or CSV), resumable"
DESCRIPTION = _DESCRIPTION


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``aiofuul import``.

    Example::

        configure(subparsers.add_parser(NAME, help=HELP, description=DESCRIPTION))
    """
    parser.add_argument("file", metavar="FILE", help="the input file, or - for standard input")
    parser.add_argument(
        "--format",
        choices=("jsonl", "csv"),
        default=None,
        help="input format (default: csv for *.csv, else jsonl; standard input: told by "
        "its first line)",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        metavar="CKPT",
        help="record progress here and resume from it (see above)",
    )
    parser.add_argument(
        "--skip-invalid", action="store_true", help="report invalid records, import the rest"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=4,
        metavar="N",
        help="batch requests in flight at most (default 4; the limit sets the pace)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    add_client_arguments(parser)
    parser.set_defaults(run=run)


def _report_invalid(scan: Scan, name: str, skip: bool) -> None:
    """Print the invalid records, one line each (the first 50), to stderr."""
    skipped = " (skipped)" if skip else ""
    for line, reason in scan.errors[:_MAX_SHOWN_ERRORS]:
        print(f"aiofuul: {name}: line {line}{skipped}: {cli_hints(reason)}", file=sys.stderr)
    if scan.invalid > _MAX_SHOWN_ERRORS:
        print(f"aiofuul: ... and {scan.invalid - _MAX_SHOWN_ERRORS:,} more", file=sys.stderr)
    if not skip:
        raise CLIError(
            f"{scan.invalid:,} invalid record(s) in {name}: nothing was sent "
            "(fix them, or use --skip-invalid to import the rest)"
        )


def run(ns: argparse.Namespace) -> int:
    """Validate, then send; returns the exit code (raises for one-line errors).

    Example::

        code = run(parser.parse_args(["import", "events.jsonl", "--checkpoint", "ckpt"]))
    """
    if ns.concurrency < 1:
        raise CLIError("--concurrency must be at least 1")
    fmt, head = choose_format(ns.file, ns.format)
    source = Input(ns.file, fmt, ns.check_format, head)
    progress = Progress(ns.quiet)
    checkpoint = Checkpoint.read(ns.checkpoint) if ns.checkpoint is not None else None
    try:
        if source.path != "-":
            os.stat(source.path)  # a missing file is one error line, before any other
        if not ns.quiet:
            progress.message(f"aiofuul: validating {source.name} ...")
        scan = source.scan(checkpoint.next_record if checkpoint is not None else 0)
        if scan.invalid:
            _report_invalid(scan, source.name, ns.skip_invalid)
        fingerprint = Fingerprint(fmt, scan.size, scan.sha256)
        if checkpoint is None:
            checkpoint = Checkpoint(input=fingerprint)
        else:
            checkpoint.check(ns.checkpoint, fingerprint)
            if checkpoint.complete:
                print(f"already imported ({ns.checkpoint} says complete): nothing to send")
                _summary(checkpoint, scan, source.name, None, resumed=True)
                return EXIT_FAILED if checkpoint.rejected else EXIT_OK
        return asyncio.run(_import(ns, source, scan, checkpoint, progress))
    finally:
        source.close()


async def _import(
    ns: argparse.Namespace, source: Input, scan: Scan, checkpoint: Checkpoint, progress: Progress
) -> int:
    limits = limits_from_args(ns)
    resumed = checkpoint.next_record > 0
    remaining = scan.events - scan.events_before_start
    if not ns.quiet:
        rate = limits.batch.requests * MAX_BATCH_EVENTS / limits.batch.period
        where = f" from line {checkpoint.next_line:,}" if resumed else ""
        batches = -(-remaining // MAX_BATCH_EVENTS)
        invalid = f" ({scan.invalid:,} invalid record(s) skipped)" if scan.invalid else ""
        progress.message(
            f"aiofuul: importing {remaining:,} event(s){where}{invalid} in {batches:,} "
            f"batch request(s): about {fmt_duration(remaining / rate)} at the batch limit "
            f"({limits.batch.requests} requests per {limits.batch.period:g} s)"
        )
    started = time.monotonic()
    client = open_client(ns, say=progress.message)
    try:
        async with client as fuul:
            ns.shown_base_url = fuul.base_url
            uploader = Uploader(
                fuul,
                checkpoint,
                ns.checkpoint,
                progress,
                total_events=scan.events,
                done_events=scan.events_before_start,
                concurrency=min(ns.concurrency, limits.batch.requests),
            )
            uploader.show(force=True)
            await uploader.run(source.records())
    except Exception as exc:
        # A give-up on a silent server leaves the block above, not only uploader.run().
        message, code = describe_error(exc, getattr(ns, "shown_base_url", None))
        raise CLIError(f"{message}; import stopped{_resume_hint(ns, checkpoint)}", code) from exc
    elapsed = time.monotonic() - started
    if uploader.signal is not None:
        print(f"aiofuul: interrupted{_resume_hint(ns, checkpoint)}", file=sys.stderr)
        return 128 + uploader.signal
    _summary(checkpoint, scan, source.name, elapsed, resumed, fuul.stats().requests_batch)
    return EXIT_FAILED if checkpoint.rejected else EXIT_OK


def _resume_hint(ns: argparse.Namespace, checkpoint: Checkpoint) -> str:
    done = f" at line {checkpoint.next_line:,}"
    if ns.checkpoint is None:
        return f"{done} (no --checkpoint: a rerun starts over; the server skips what it has)"
    return f"{done}; checkpoint saved: rerun the same command to continue"


def _summary(
    cp: Checkpoint,
    scan: Scan,
    name: str,
    elapsed: float | None,
    resumed: bool,
    requests: int | None = None,
) -> None:
    # Every row counts records, and they add up to the first: blank lines are no records.
    rows = [
        ("records in the input", f"{scan.events + scan.invalid:,}"),
        ("ingested", f"{cp.ingested:,}"),
        ("skipped as duplicates", f"{cp.skipped:,}"),
        ("rejected by the server", f"{cp.rejected:,}"),
        ("invalid, not sent", f"{scan.invalid:,}"),
    ]
    unsent = scan.events - cp.ingested - cp.skipped - cp.rejected
    if unsent > 0:
        rows.append(("valid, not sent yet", f"{unsent:,}"))
    if requests is not None:
        rows.append(("batch requests (this run)", f"{requests:,}"))
    if elapsed is not None:
        rows.append(("elapsed (this run)", fmt_duration(elapsed)))
    title = "import complete" if cp.complete else "import incomplete"
    note = " (totals over every run with this checkpoint)" if resumed else ""
    print(f"{title}: {name}{note}")
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value:>12}")
