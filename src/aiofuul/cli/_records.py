"""The input of ``aiofuul import``: JSON Lines or CSV records to validated events.

Every record is checked by :func:`aiofuul.wire.validation.validate_event`, the rules the
client and the sandbox run; this module only reads the formats. A record without a
``dedup_id`` gets :func:`derive_dedup_id`, a hash of its content, so a rerun sends
the same id and the server skips what it already has.

The input is read twice: once to validate everything and fingerprint it (nothing is
sent if a record is bad), once to send. Standard input is copied to a temporary file
on the first read so that the second can happen, without holding it in memory.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Literal

import msgspec

from ..errors import ValidationError
from ..wire.models import Event
from ..wire.validation import validate_event
from ._common import CLIError
from ._values import arg_key, parse_arg_value, parse_timestamp

__all__ = ["CSV_COLUMNS", "CSV_REQUIRED", "Format", "Input", "Record", "Scan", "derive_dedup_id"]

Format = Literal["jsonl", "csv"]

#: The columns a CSV file may have, besides ``arg.KEY`` (and ``arg.KEY:str``).
CSV_COLUMNS = ("name", "identifier", "identifier_type", "dedup_id", "timestamp")
#: The columns a CSV header must name.
CSV_REQUIRED = ("name", "identifier", "identifier_type")
_FIELDS = frozenset(Event.__struct_fields__)
_CANONICAL = msgspec.json.Encoder(order="sorted")
#: Prefix of derived dedup ids: ``imp-`` and 32 hex digits (128 bits) of a sha256.
DERIVED_PREFIX = "imp-"
_PLACEHOLDER = "-"
_MAX_KEPT_ERRORS = 1000


def derive_dedup_id(event: Event) -> str:
    """``imp-`` + the first 32 hex digits of the sha256 of the event's canonical JSON
    (keys sorted, ``dedup_id`` left out): the same content always gets the same id,
    whatever the format or key order it was read from.

    Example::

        derive_dedup_id(Event("trade", user, args={"size": 2}))  # 'imp-3f1c...'
    """
    content = msgspec.to_builtins(event)
    content.pop("dedup_id", None)
    return DERIVED_PREFIX + hashlib.sha256(_CANONICAL.encode(content)).hexdigest()[:32]


@dataclass(frozen=True)
class Record:
    """One record: its position (``index``, the checkpoint's unit, blank records
    included), the line it starts on, and its event or why it is invalid (neither for
    a blank line).

    Example::

        Record(index=0, line=1, error="not valid JSON (...)")
    """

    index: int
    line: int
    event: Event | None = None
    error: str | None = None


def _type_message(exc: msgspec.ValidationError) -> str:
    """msgspec's "Expected `str`, got `int` - at `$.user.identifier`" as
    "user.identifier: expected `str`, got `int`"."""
    text, sep, path = str(exc).rpartition(" - at `$")
    if not sep:
        return str(exc)
    path = path.removesuffix("`").removeprefix(".")
    return f"{path or 'event'}: {text[:1].lower()}{text[1:]}"


def _to_event(obj: object, index: int, line: int, check_format: bool) -> Record:
    """A decoded record (plain builtins) to a validated event with a dedup id."""
    if not isinstance(obj, dict):
        return Record(index, line, error="must be a JSON object (one event per line)")
    unknown = sorted(str(k) for k in obj if k not in _FIELDS)
    if unknown:
        expected = ", ".join(Event.__struct_fields__)
        return Record(index, line, error=f"unknown field {unknown[0]!r} (expected {expected})")
    derive = obj.get("dedup_id") is None
    if derive:
        obj = {**obj, "dedup_id": _PLACEHOLDER}
    try:
        event = validate_event(msgspec.convert(obj, Event), check_format=check_format)
    except msgspec.ValidationError as exc:
        return Record(index, line, error=_type_message(exc))
    except ValidationError as exc:
        return Record(index, line, error=str(exc))
    if derive:
        event.dedup_id = derive_dedup_id(event)
    return Record(index, line, event=event)


def _jsonl(lines: Iterator[tuple[int, str | None]], check_format: bool) -> Iterator[Record]:
    for index, (line_no, text) in enumerate(lines):
        if text is None:
            yield Record(index, line_no, error="not valid UTF-8")
            continue
        if not text.strip():
            yield Record(index, line_no)
            continue
        try:
            obj = msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            yield Record(index, line_no, error=f"not valid JSON ({exc})")
            continue
        except RecursionError:
            yield Record(index, line_no, error="not valid JSON (nested too deeply)")
            continue
        yield _to_event(obj, index, line_no, check_format)


def _csv_row(row: dict[str, str], index: int, line: int, check_format: bool) -> Record:
    obj: dict[str, object] = {
        "name": row["name"],
        "user": {"identifier": row["identifier"], "identifier_type": row["identifier_type"]},
    }
    if row.get("dedup_id"):
        obj["dedup_id"] = row["dedup_id"]
    try:
        if row.get("timestamp"):
            obj["timestamp"] = parse_timestamp(row["timestamp"])
    except ValueError as exc:
        return Record(index, line, error=f"timestamp: {exc}")
    args: dict[str, object] = {}
    for column, value in row.items():
        if column.startswith("arg.") and value != "":
            key, keep_text = arg_key(column[4:])
            try:
                args[key] = value if keep_text else parse_arg_value(value)
            except ValueError as exc:
                return Record(index, line, error=f"args.{key}: {exc}")
    if args:
        obj["args"] = args
    return _to_event(obj, index, line, check_format)


def _csv(lines: Iterator[tuple[int, str | None]], check_format: bool) -> Iterator[Record]:
    def text() -> Iterator[str]:
        for line_no, line in lines:
            if line is None:
                raise CLIError(f"line {line_no}: not valid UTF-8 (CSV input must be UTF-8)")
            yield line

    reader = csv.reader(text(), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip() for h in header]
        bad = [h for h in header if h not in CSV_COLUMNS and not h.startswith("arg.")]
        missing = [h for h in CSV_REQUIRED if h not in header]
        if bad or missing:
            problems = [f"unknown column {b!r}" for b in bad] + [
                f"missing column {m!r}" for m in missing
            ]
            raise CLIError(
                f"line 1: CSV header: {'; '.join(problems)} (columns: "
                f"{', '.join(CSV_COLUMNS)}, arg.KEY; the first three are required)"
            )
        index, start = 0, reader.line_num + 1
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                yield Record(index, start)
            elif len(row) != len(header):
                yield Record(index, start, error=f"{len(row)} fields, the header has {len(header)}")
            else:
                yield _csv_row(dict(zip(header, row, strict=True)), index, start, check_format)
            index, start = index + 1, reader.line_num + 1
    except csv.Error as exc:
        raise CLIError(f"line {reader.line_num}: unreadable CSV ({exc})") from None


@dataclass
class Scan:
    """What validating the whole input found.

    Example::

        scan = Input("events.jsonl", "jsonl").scan()
        scan.events, scan.invalid, scan.errors[:3]   # errors: (line, reason)
    """

    records: int = 0
    events: int = 0
    events_before_start: int = 0
    invalid: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    sha256: str = ""
    size: int = 0


class Input:
    """An import's input: a path, or ``-`` for standard input.

    Example::

        source = Input("events.csv", "csv")
        try:
            scan = source.scan()                  # validate and fingerprint first
            events = [r.event for r in source.records() if r.event is not None]
        finally:
            source.close()
    """

    def __init__(self, path: str, fmt: Format, check_format: bool = True, head: bytes = b""):
        self.path = path
        self.format: Format = fmt
        self.check_format = check_format
        self._spool: IO[bytes] | None = None
        self._head = head  # the start of standard input, read to tell its format

    @property
    def name(self) -> str:
        """How messages name it."""
        return "standard input" if self.path == "-" else self.path

    def _lines(
        self, raw: Iterable[bytes], feed: Callable[[bytes], object] | None = None
    ) -> Iterator[tuple[int, str | None]]:
        """``(line number, text)``, text None when not UTF-8; gives the bytes to ``feed``
        (the fingerprint) and to the copy of standard input."""
        spool = self._spool if raw is not self._spool else None
        for number, data in enumerate(raw, 1):
            if feed is not None:
                feed(data)
            if spool is not None:
                spool.write(data)
            try:
                text = data.decode()
            except UnicodeDecodeError:
                yield number, None
                continue
            yield number, text.removeprefix("\ufeff") if number == 1 else text

    def _records(self, lines: Iterator[tuple[int, str | None]]) -> Iterator[Record]:
        parse = _csv if self.format == "csv" else _jsonl
        return parse(lines, self.check_format)

    def scan(self, start: int = 0) -> Scan:
        """Validate every record (and fingerprint the bytes); ``start`` is the record a
        resumed import continues from, to count the events before it."""
        scan = Scan()
        hasher = hashlib.sha256()
        if self.path == "-":
            self._spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
            stream: IO[bytes] = sys.stdin.buffer
        else:
            stream = open(self.path, "rb")  # noqa: SIM115 - closed below
        # One iterator: what the parser leaves is read by the loop after it.
        raw = itertools.chain(self._head.splitlines(keepends=True), stream)
        try:
            for record in self._records(self._lines(raw, hasher.update)):
                scan.records += 1
                if record.event is not None:
                    scan.events += 1
                    if record.index < start:
                        scan.events_before_start += 1
                elif record.error is not None:
                    scan.invalid += 1
                    if len(scan.errors) < _MAX_KEPT_ERRORS:
                        scan.errors.append((record.line, record.error))
            # Bytes after what the parser read (none in practice) still count.
            for data in raw:
                hasher.update(data)
                if self._spool is not None:
                    self._spool.write(data)
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
        scan.sha256 = hasher.hexdigest()
        scan.size = self._spool.tell() if self._spool is not None else os.stat(self.path).st_size
        return scan

    def records(self) -> Iterator[Record]:
        """Every record again, in order (after :meth:`scan`)."""
        if self._spool is not None:
            self._spool.seek(0)
            yield from self._records(self._lines(self._spool))
            return
        with open(self.path, "rb") as raw:
            yield from self._records(self._lines(raw))

    def close(self) -> None:
        """Delete the copy of standard input, if any."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None
