"""Which format an import's input is in: named by ``--format``, else by the file's
extension, else (standard input has none) by its first non-blank line."""

from __future__ import annotations

import csv
import sys
from typing import IO

from ._common import CLIError
from ._records import CSV_REQUIRED, Format

__all__ = ["choose_format", "sniff_format"]

_BOM = b"\xef\xbb\xbf"


def sniff_format(line: bytes) -> Format | None:
    """The format a first non-blank line shows: ``jsonl`` for a JSON object, ``csv`` for
    a header naming the required columns, else None.

    Example::

        sniff_format(b"name,identifier,identifier_type,arg.size")  # 'csv'
    """
    text = line.removeprefix(_BOM).decode("utf-8", "replace").strip()
    if text.startswith("{"):
        return "jsonl"
    header = {h.strip() for h in next(csv.reader([text]), [])}
    return "csv" if header.issuperset(CSV_REQUIRED) else None


def _read_head(stream: IO[bytes], limit: int = 1000) -> bytes:
    """The lines of ``stream`` up to its first non-blank one (at most ``limit``)."""
    head = bytearray()
    for _ in range(limit):
        line = stream.readline()
        head += line
        if not line or line.removeprefix(_BOM).strip():
            break
    return bytes(head)


def choose_format(path: str, given: Format | None) -> tuple[Format, bytes]:
    """The input's format, and the bytes of standard input read to tell it (they belong
    to the input: :class:`~._records.Input` reads them first).

    Example::

        fmt, head = choose_format("-", None)   # ('csv', b'name,identifier,...\\n')
    """
    if given is not None:
        return given, b""
    if path != "-":
        return ("csv" if path.lower().endswith(".csv") else "jsonl"), b""
    head = _read_head(sys.stdin.buffer)
    first = head.strip().splitlines()[-1:]
    if not first:
        return "jsonl", head  # empty: nothing to import, in either format
    sniffed = sniff_format(first[0])
    if sniffed is None:
        raise CLIError(
            "cannot tell the format of standard input from its first line: pass "
            f"--format csv (a header naming the columns {', '.join(CSV_REQUIRED)}, ...) "
            "or --format jsonl"
        )
    return sniffed, head
