"""The input and checkpoint of ``aiofuul referrers import``: CSV or JSON Lines rows of a
referral graph, each checked by the rules of ``fuul.users.set_referrer``
(:func:`aiofuul.api.users.referral_body`), and how far an import got.

A record is one line (one CSV row), counted from 0; the CSV header is not one. A user
given a referrer twice is refused (naming both lines): a graph has one referrer a user,
and two rows racing each other would leave either.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import msgspec

from ..errors import ValidationError
from ..referrers import ReferrerRow
from ..wire.models import User
from ._checkpoint import Fingerprint, read_checkpoint, write_atomically
from ._common import CLIError

__all__ = ["COLUMNS", "Format", "GraphCheckpoint", "Record", "Scan", "read_records", "scan"]

Format = Literal["jsonl", "csv"]
#: The fields of a row: CSV columns in this order (``code`` optional), JSON Lines keys.
COLUMNS = ("user", "user_type", "referrer", "referrer_type", "code")
_MAX_KEPT = 1000


@dataclass(frozen=True)
class Record:
    """One record: its index, the line it starts on, and its row or why it is invalid
    (neither: a blank line)."""

    index: int
    line: int
    row: ReferrerRow | None = None
    error: str | None = None


def _row(values: dict[str, object], index: int, line: int, check_format: bool) -> Record:
    unknown = sorted(str(k) for k in values if k not in COLUMNS)
    if unknown:
        return Record(
            index, line, error=f"unknown field {unknown[0]!r} (fields: {', '.join(COLUMNS)})"
        )
    missing = [k for k in COLUMNS[:4] if values.get(k) in (None, "")]
    if missing:
        return Record(index, line, error=f"{missing[0]}: missing")
    code = values.get("code")
    user = User(values["user"], values["user_type"])  # type: ignore[arg-type]
    referrer = User(values["referrer"], values["referrer_type"])  # type: ignore[arg-type]
    row = ReferrerRow(user, referrer, None if code in (None, "") else code)  # type: ignore[arg-type]
    try:
        row.check(check_format)
    except ValidationError as exc:
        return Record(index, line, error=str(exc))
    return Record(index, line, row=row)


def _jsonl(path: Path, check_format: bool) -> Iterator[Record]:
    with path.open("rb") as raw:
        for index, data in enumerate(raw):
            line = index + 1
            if not data.strip():
                yield Record(index, line)
                continue
            try:
                obj = msgspec.json.decode(data)
            except msgspec.DecodeError as exc:
                yield Record(index, line, error=f"not valid JSON ({exc})")
                continue
            if not isinstance(obj, dict):
                yield Record(index, line, error="must be a JSON object (one row a line)")
                continue
            yield _row(obj, index, line, check_format)


def _csv(path: Path, check_format: bool) -> Iterator[Record]:
    with path.open(newline="", encoding="utf-8-sig") as text:
        reader = csv.reader(text, strict=True)
        index, start = 0, 1
        try:
            for cells in reader:
                if start == 1 and cells and cells[0].strip().lower() == "user":
                    start = reader.line_num + 1  # a header: not a record
                    continue
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    yield Record(index, start)
                elif len(cells) not in (4, 5):
                    error = f"{len(cells)} fields, expected 4 or 5 ({', '.join(COLUMNS)})"
                    yield Record(index, start, error=error)
                else:
                    values = dict(zip(COLUMNS, (c.strip() for c in cells), strict=False))
                    yield _row(dict(values), index, start, check_format)
                index, start = index + 1, reader.line_num + 1
        except (csv.Error, UnicodeDecodeError) as exc:
            raise CLIError(f"line {reader.line_num}: unreadable CSV ({exc})") from None


def read_records(path: Path, fmt: Format, check_format: bool = True) -> Iterator[Record]:
    """Every record of the file, in order, each row checked (duplicates are found by
    :func:`scan`, not here)."""
    return _csv(path, check_format) if fmt == "csv" else _jsonl(path, check_format)


@dataclass
class Scan:
    """What validating the whole input found: ``errors`` holds ``(line, reason)``."""

    records: int = 0
    rows: int = 0
    invalid: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    duplicates: set[int] = field(default_factory=set)
    fingerprint: Fingerprint | None = None


def scan(path: Path, fmt: Format, check_format: bool = True) -> Scan:
    """Validate every record and fingerprint the file; a user given a referrer a second
    time is an invalid record (its index in ``duplicates``)."""
    found = Scan()
    first: dict[tuple[str, str], int] = {}
    for record in read_records(path, fmt, check_format):
        found.records += 1
        error = record.error
        if record.row is not None:
            user = record.row.user
            seen = first.setdefault((user.identifier, user.identifier_type), record.line)
            if seen != record.line:
                error = f"user {user.identifier} already has a referrer on line {seen}"
                found.duplicates.add(record.index)
            else:
                found.rows += 1
        if error is not None:
            found.invalid += 1
            if len(found.errors) < _MAX_KEPT:
                found.errors.append((record.line, error))
    hasher = hashlib.sha256()
    with path.open("rb") as raw:
        for chunk in iter(lambda: raw.read(1 << 20), b""):
            hasher.update(chunk)
    found.fingerprint = Fingerprint(fmt, path.stat().st_size, hasher.hexdigest())
    return found


class GraphCheckpoint(msgspec.Struct, kw_only=True):
    """How far an import of a graph got (totals over every run that used it).

    Records below ``prefix`` are settled, and so are those in ``answered``; records
    below ``started`` that are neither may have been sent by a run that died: the next
    run reads them back before sending them again.
    """

    version: int = 1
    input: Fingerprint
    prefix: int = 0
    answered: list[int] = msgspec.field(default_factory=list)
    started: int = 0
    set: int = 0
    unchanged: int = 0
    refused: int = 0
    refusals: list[tuple[int, str]] = msgspec.field(default_factory=list)
    complete: bool = False

    @classmethod
    def read(cls, path: Path) -> GraphCheckpoint | None:
        """The checkpoint at ``path`` (None if there is none), or :class:`CLIError`."""
        return read_checkpoint(path, cls)

    def save(self, path: Path) -> None:
        """Write atomically (the old or the new checkpoint, whatever happens)."""
        self.answered.sort()
        write_atomically(path, msgspec.json.encode(self) + b"\n")
