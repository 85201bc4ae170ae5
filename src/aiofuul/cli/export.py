"""``aiofuul export``: stream a list of the API to JSON Lines or CSV, one page at a time,
resumable after Ctrl-C from where it stopped.

With ``--checkpoint FILE``, after each page is written (and synced) the checkpoint
records the next page's token (a page number or a cursor), the rows written and the
output's length. A rerun of the same command truncates the output to that length (a
page cut short by the interrupt goes) and continues at that token: every row is written
exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import msgspec

from ..api import Paginator, as_dict
from ..api.leaderboards import LeaderboardEntry
from ..api.payouts import Movement, PayoutsByConversion, ReferralEarning
from ..api.referral_codes import ReferralCode
from ..client import FuulClient
from ..errors import PermissionDeniedError, ValidationError
from ..wire.models import User
from ._checkpoint import write_atomically
from ._common import EXIT_INTERRUPTED, EXIT_OK, CLIError, add_client_arguments, open_client
from .send import add_user_arguments

__all__ = ["DESCRIPTION", "HELP", "NAME", "configure", "run"]

NAME = "export"
HELP = "stream payouts, movements, leaderboards... to JSON Lines or CSV"
DESCRIPTION = """\
Stream one list of the API to a file (or stdout), one page at a time: LIST is payouts,
movements, referral-earnings, referral-codes (of --user), or leaderboard BOARD (points,
payouts, volume or revenue). A progress line shows on a terminal.

With --checkpoint, an interrupted export (Ctrl-C) resumes where it stopped when the
same command runs again: every row is written exactly once.

examples:
  aiofuul export movements --user 0xabc... --type evm_address -o moves.jsonl \\
      --since 2026-01-01 --checkpoint moves.ckpt
  aiofuul export leaderboard points --format csv -o points.csv"""

_BOARDS = ("points", "payouts", "volume", "revenue")
_KINDS = ("payouts", "movements", "referral-earnings", "referral-codes", "leaderboard")


class _Progress(msgspec.Struct, kw_only=True):
    """The checkpoint of an export: which export, and how far it got."""

    query: dict[str, Any]
    next: int | str | None = None
    rows: int = 0
    bytes: int = 0
    complete: bool = False


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``aiofuul export``."""
    parser.add_argument("list", choices=_KINDS, metavar="LIST", help=", ".join(_KINDS))
    parser.add_argument("board", nargs="?", choices=_BOARDS, metavar="BOARD",
                        help="for leaderboard: " + ", ".join(_BOARDS))  # fmt: skip
    add_user_arguments(parser, required=False)
    parser.add_argument("-o", "--output", type=Path, help="the file (default stdout)")
    parser.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    parser.add_argument("--checkpoint", type=Path, metavar="FILE", help="resume from here")
    parser.add_argument("--since", metavar="DATE", help="ISO 8601 date or datetime")
    parser.add_argument("--until", metavar="DATE", help="ISO 8601 date or datetime")
    parser.add_argument("--page-size", type=int, metavar="N", help="rows a request")
    parser.add_argument("--payout-type", choices=("onchain-currency", "point"),
                        default="onchain-currency", help="payouts and movements")  # fmt: skip
    parser.add_argument("--currency-address", metavar="ADDRESS", help="leaderboards")
    parser.add_argument("--scope", choices=("active", "all"), default="active",
                        help="referral-earnings: active referred users, or all")  # fmt: skip
    add_client_arguments(parser)
    parser.set_defaults(run=run)


def _query(ns: argparse.Namespace) -> dict[str, Any]:
    """What defines the list being exported (a checkpoint applies to this one only)."""
    if (ns.list == "leaderboard") != (ns.board is not None):
        raise CLIError("a BOARD is given with 'leaderboard' and only then")
    needs_user = ns.list != "leaderboard"
    if needs_user and (ns.user is None or ns.identifier_type is None):
        raise CLIError(f"export {ns.list} needs --user and --type")
    dated = ns.list in ("payouts", "movements", "referral-earnings") or ns.board == "payouts"
    if not dated and (ns.since or ns.until):
        raise CLIError(f"--since/--until do not apply to {ns.list} {ns.board or ''}".strip())
    if ns.board == "payouts" and not ns.currency_address:
        raise CLIError("leaderboard payouts needs --currency-address")
    return {"list": ns.list, "board": ns.board, "user": ns.user, "type": ns.identifier_type,
            "since": ns.since, "until": ns.until, "page_size": ns.page_size,
            "payout_type": ns.payout_type, "currency": ns.currency_address,
            "scope": ns.scope, "format": ns.format}  # fmt: skip


def _paginator(
    fuul: FuulClient, q: dict[str, Any], start: int | str | None
) -> tuple[Paginator[Any], type]:
    user = User(q["user"], q["type"]) if q["user"] is not None else None
    dates = {"since": q["since"], "until": q["until"]}
    paging = {"page_size": q["page_size"], "start": start}
    kind = q["list"]
    if kind == "payouts" and user:
        return fuul.payouts.list(
            user, type=q["payout_type"], **dates, **paging
        ), PayoutsByConversion
    if kind == "movements" and user:
        return fuul.payouts.movements(user, type=q["payout_type"], **dates, **paging), Movement
    if kind == "referral-earnings" and user:
        walk = fuul.payouts.referral_earnings(user, scope=q["scope"], **dates, **paging)
        return walk, ReferralEarning
    if kind == "referral-codes" and user:
        return fuul.referral_codes.list(user, **paging), ReferralCode
    boards = fuul.leaderboards
    board: Callable[..., Paginator[Any]] = getattr(boards, q["board"])
    extra: dict[str, Any] = {}
    if q["board"] in ("payouts", "volume", "revenue") and q["currency"]:
        extra["currency_address"] = q["currency"]
    if q["board"] == "payouts":
        extra.update(dates)
    return board(**extra, **paging), LeaderboardEntry


class _Writer:
    """Rows as JSON Lines or CSV (nested values as JSON, unknown fields in ``extra``)."""

    def __init__(self, out: IO[bytes], fmt: str, model: type, header: bool):
        self._out, self._fmt = out, fmt
        names = [f.name for f in msgspec.structs.fields(model) if f.name != "extra"]
        self._columns = names
        if fmt == "csv" and header:
            self._write_csv([*names, "extra"])

    def _write_csv(self, values: list[Any]) -> None:
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerow(values)
        self._out.write(text.getvalue().encode())

    def write(self, row: Any) -> None:
        data = as_dict(row)
        if self._fmt == "jsonl":
            self._out.write(json.dumps(data, separators=(",", ":")).encode() + b"\n")
            return
        cells = [_cell(data.pop(name, None)) for name in self._columns]
        self._write_csv([*cells, json.dumps(data) if data else ""])


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, (dict, list)) else value


async def _export(ns: argparse.Namespace, query: dict[str, Any], out: IO[bytes],
                  progress: _Progress) -> None:  # fmt: skip
    show = sys.stderr.isatty()
    async with open_client(ns) as fuul:
        ns.shown_base_url = fuul.base_url
        walk, model = _paginator(fuul, query, progress.next)
        writer = _Writer(out, query["format"], model, header=progress.bytes == 0)
        async for page in walk.pages():
            for row in page.items:
                writer.write(row)
            out.flush()
            progress.rows += len(page.items)
            progress.next, progress.complete = page.next, page.next is None
            if ns.checkpoint is not None:
                _sync(out)
                progress.bytes = out.tell()
                write_atomically(ns.checkpoint, msgspec.json.encode(progress))
            if show:
                print(f"\rexported {progress.rows} rows", end="", file=sys.stderr, flush=True)
    if show:
        print(file=sys.stderr)


def _sync(out: IO[bytes]) -> None:
    # A pipe cannot be synced (and needs not be).
    with contextlib.suppress(OSError, io.UnsupportedOperation):
        os.fsync(out.fileno())


def _resume(ns: argparse.Namespace, query: dict[str, Any]) -> _Progress:
    if ns.checkpoint is None:
        return _Progress(query=query)
    if ns.output is None:
        raise CLIError("--checkpoint needs --output: stdout cannot be resumed")
    try:
        progress = msgspec.json.decode(ns.checkpoint.read_bytes(), type=_Progress)
    except FileNotFoundError:
        return _Progress(query=query)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CLIError(f"checkpoint {ns.checkpoint} is unreadable ({exc})") from None
    if progress.query != query:
        raise CLIError(f"checkpoint {ns.checkpoint} was written for another export; "
                       "use another --checkpoint, or delete it to start over")  # fmt: skip
    return progress


def run(ns: argparse.Namespace) -> int:
    """Run ``aiofuul export``."""
    query = _query(ns)
    progress = _resume(ns, query)
    if progress.complete:
        print(f"aiofuul: export already complete ({progress.rows} rows)", file=sys.stderr)
        return EXIT_OK
    if ns.output is None:
        out: IO[bytes] = sys.stdout.buffer
    else:
        out = ns.output.open("r+b" if progress.bytes else "wb")
        out.truncate(progress.bytes)  # a page the interrupt cut short goes
        out.seek(progress.bytes)
    try:
        asyncio.run(_export(ns, query, out, progress))
    except KeyboardInterrupt:
        print(f"\naiofuul: interrupted after {progress.rows} rows"
              + ("; rerun the same command to resume" if ns.checkpoint else ""),
              file=sys.stderr)  # fmt: skip
        return EXIT_INTERRUPTED
    except PermissionDeniedError as exc:
        raise CLIError(f"403 Forbidden: {exc}", 1) from None
    except ValidationError as exc:
        raise CLIError(f"invalid option: {exc}") from None
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    where = "" if ns.output is None else f" to {ns.output}"
    print(f"aiofuul: exported {progress.rows} rows{where}", file=sys.stderr)
    return EXIT_OK
