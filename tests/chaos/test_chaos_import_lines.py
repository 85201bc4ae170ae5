"""Bad input for ``aiofuul import``: hypothesis-generated JSON Lines and CSV files through
the command's own reader (``aiofuul.cli._records.Input``), the same scan-then-send path
the command runs.

The contract checked: every line becomes exactly one record, which is either blank, or
an event that encodes and that the server takes (the sandbox's parser, which judges by
its own table of the documented shapes, accepts it) unless it holds a shape no Fuul
document shows (sent with a warning, the server's call: then a strict validation
refuses it, tier 2, and the server's 400 names the same part of the event), or an error
that names the field (``user.identifier: ...``) or says why the line is unreadable;
nothing raises, except a CSV file whose quoting is broken, which is refused as a whole
with its line number (``CLIError``).
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aiofuul import ValidationError
from aiofuul.cli._common import CLIError
from aiofuul.cli._records import CSV_COLUMNS, Input
from aiofuul.sandbox.parsing import BadRequest, parse_event
from aiofuul.wire.models import encode_event
from aiofuul.wire.validation import validate_event
from conftest import EVM

#: The chaos tier: minutes of faults in all; `nox -s quick` leaves it out.
pytestmark = pytest.mark.slow

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,  # each run independent of the last: no example database
    suppress_health_check=[HealthCheck.too_slow],
)

#: What a record's error may start with: a field of the event, or why the line as a
#: whole cannot be read.
FIELD_OR_LINE = (
    "name",
    "user",
    "dedup_id",
    "args",
    "timestamp",
    "event",
    "not valid JSON",
    "not valid UTF-8",
    "must be a JSON object",
    "unknown field",
)
#: Also accepted: msgspec's own wording when the field is missing at the top level (it
#: names the field, just not first), and a CSV row of the wrong width.
OTHER_ERRORS = re.compile(r"Object missing required field `\w+`$|\d+ fields, the header has \d+$")

SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)
any_text = st.text(st.one_of(st.characters(), SURROGATE), max_size=30)
line_text = st.text(
    st.characters(exclude_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), max_size=60
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63, max_value=2**70),
    st.floats(allow_nan=False),
    any_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(any_text, inner, max_size=3)
    ),
    max_leaves=5,
)
users = st.one_of(
    st.just({"identifier": EVM.identifier, "identifier_type": "evm_address"}),
    st.fixed_dictionaries(
        {"identifier": st.one_of(any_text, json_values), "identifier_type": json_values}
    ),
    json_values,
)
args = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(["size", "chain_id", "value", "tx"]), json_values, max_size=3),
    st.just({"value": {"amount": "1500000", "currency": {"name": "USDC"}}}),
    json_values,
)
event_objects = st.fixed_dictionaries(
    {
        "name": st.one_of(st.sampled_from(["trade", "signup"]), any_text, json_values),
        "user": users,
    },
    optional={
        "dedup_id": st.one_of(st.none(), any_text, json_values),
        "args": args,
        "timestamp": st.one_of(
            st.integers(min_value=1_600_000_000_000, max_value=2_000_000_000_000), json_values
        ),
        "timestmap": json_values,  # a typo: must be refused, not silently dropped
    },
)


def _dumps(value: Any, ensure_ascii: bool) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, allow_nan=True)


good_event_objects = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["trade", "signup"]),
        "user": st.just({"identifier": EVM.identifier, "identifier_type": "evm_address"}),
    },
    optional={
        "dedup_id": st.one_of(st.none(), st.uuids().map(str)),
        "args": st.dictionaries(
            st.sampled_from(["size", "chain_id", "tx"]),
            st.one_of(st.integers(-(2**63), 2**63), st.floats(allow_nan=False), st.booleans()),
            max_size=3,
        ),
        "timestamp": st.integers(min_value=1_600_000_000_000, max_value=2_000_000_000_000),
    },
)
jsonl_lines = st.one_of(
    st.builds(_dumps, good_event_objects, st.booleans()),
    st.builds(_dumps, event_objects, st.booleans()),
    st.builds(_dumps, json_values, st.booleans()),
    line_text,
    st.binary(max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b),
    st.sampled_from(["", "   ", "{}", "[]", "null", '{"name": "trade"', "\ufeff{}"]),
)


def _known_bug(line: str | bytes) -> bool:
    """test_deeply_nested_json_is_an_invalid_record_not_a_crash."""
    try:
        msgspec.json.decode(line)
    except RecursionError:
        return True
    except Exception:
        pass
    return False


def _root(field: str) -> str:
    """``args`` of ``args.value.currency``, ``args key`` or ``args: ...``."""
    return re.split(r"[.: ]", field, maxsplit=1)[0]


def _strict_refusal(event: Any) -> ValidationError | None:
    try:
        validate_event(event, True, strict=True)
    except ValidationError as exc:
        return exc
    return None


def _check_server_refusal(event: Any, messages: list[str]) -> None:
    """The server may refuse an accepted event only for a shape no document shows: one a
    strict validation refuses (tier 2), in the part of the event the server names."""
    strict = _strict_refusal(event)
    assert strict is not None, f"accepted, but the server refuses it: {messages}"
    assert strict.tier == 2, str(strict)
    assert _root(strict.field) in {_root(m) for m in messages}, (str(strict), messages)


def _check_record(record: Any, text: str | None) -> str:
    if record.event is not None:
        assert record.error is None
        body = encode_event(record.event)  # must not raise
        try:
            parse_event(body, True)
        except BadRequest as exc:
            _check_server_refusal(record.event, exc.messages)
            return "undocumented"
        return "event"
    if record.error is not None:
        assert isinstance(record.error, str) and record.error
        assert record.error.startswith(FIELD_OR_LINE) or OTHER_ERRORS.match(record.error), (
            record.error
        )
        return "error"
    assert text is not None and not text.strip(), (text, record)
    return "blank"


def _scan(path: Path, fmt: str) -> tuple[Any, list[Any]]:
    source = Input(str(path), fmt)  # type: ignore[arg-type]
    try:
        scan = source.scan()
        records = list(source.records())
    finally:
        source.close()
    assert scan.records == len(records)
    assert scan.events == sum(r.event is not None for r in records)
    assert scan.invalid == sum(r.error is not None for r in records)
    return scan, records


def test_jsonl_lines_become_events_or_errors_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    seen: dict[str, int] = {"event": 0, "undocumented": 0, "error": 0, "blank": 0}

    @FUZZ
    @given(lines=st.lists(jsonl_lines, min_size=1, max_size=6))
    def prop(lines: list[str | bytes]) -> None:
        assume(not any(_known_bug(line) for line in lines))
        raw = [
            line if isinstance(line, bytes) else line.encode("utf-8", "surrogatepass")
            for line in lines
        ]
        path.write_bytes(b"\n".join(raw) + b"\n")
        _, records = _scan(path, "jsonl")
        assert len(records) == len(lines)
        for record, data in zip(records, raw, strict=True):
            assert record.line == record.index + 1
            try:
                text: str | None = data.decode()
            except UnicodeDecodeError:
                text = None
            if text is not None and record.index == 0:  # a file's BOM is not content
                text = text.removeprefix("\ufeff")
            seen[_check_record(record, text)] += 1

    prop()
    assert seen["event"] > 10 and seen["error"] > 100, seen


csv_headers = st.lists(
    st.one_of(
        st.sampled_from(CSV_COLUMNS),
        st.sampled_from(["arg.size", "arg.ref:str", "arg.value", "arg.", "arg.é"]),
        st.text(string.ascii_letters + ".:", min_size=1, max_size=8),
    ),
    min_size=1,
    max_size=7,
)
csv_cells = st.one_of(
    st.sampled_from(
        [
            "",
            "trade",
            EVM.identifier,
            "evm_address",
            "email",
            "1717171717000",
            "2024-05-31T16:08:37Z",
            "2024-05-31T16:08:37",
            "true",
            "007",
            "1e400",
            "-0",
            "nan",
            '{"amount": "5", "currency": {"name": "USD"}}',
            '{"amount": 5}',
            "{not json",
            '"quoted, with comma"',
            '"broken',
            "9" * 5000,
        ]
    ),
    line_text.filter(lambda s: "," not in s),
)


GOOD_CELLS = {
    "name": st.sampled_from(["trade", "signup"]),
    "identifier": st.just(EVM.identifier),
    "identifier_type": st.just("evm_address"),
    "dedup_id": st.one_of(st.just(""), st.uuids().map(str)),
    "timestamp": st.sampled_from(["", "1717171717000", "2024-05-31T16:08:37Z"]),
}
good_arg_cells = st.one_of(
    st.sampled_from(
        [
            "",
            "2.5",
            "42",
            "true",
            "text",
            '"{""amount"": ""5"", ""currency"": {""name"": ""USD""}}"',
        ]
    ),
    st.integers(-(2**63), 2**63).map(str),
)


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    """A header, and rows whose cells are mostly right for their column."""
    header = draw(
        st.one_of(
            st.permutations(["name", "identifier", "identifier_type", "arg.size", "arg.ref:str"]),
            st.just(["name", "identifier", "identifier_type", "dedup_id", "timestamp", "arg.v"]),
            csv_headers,
        )
    )
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.sampled_from([True, True, False])):
            row = [
                draw(GOOD_CELLS.get(column, good_arg_cells))
                if draw(st.sampled_from([True, True, True, True, False]))
                else draw(csv_cells)
                for column in header
            ]
        else:
            row = draw(st.lists(csv_cells, min_size=1, max_size=6))
        rows.append(row)
    return list(header), rows


def test_csv_rows_become_events_or_errors_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    seen: dict[str, int] = {"event": 0, "undocumented": 0, "error": 0, "blank": 0, "refused": 0}

    @FUZZ
    @given(header_and_rows=csv_files())
    def prop(header_and_rows: tuple[list[str], list[list[str]]]) -> None:
        header, rows = header_and_rows
        assume(not any(c.startswith("{") and _known_bug(c) for row in rows for c in row))
        lines = [",".join(header), *(",".join(row) for row in rows)]
        path.write_bytes(("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"))
        try:
            _, records = _scan(path, "csv")
        except CLIError as exc:
            refusal = str(exc)
        else:
            refusal = ""
        if refusal:
            # The file as a whole: a bad header, broken quoting, or not UTF-8.
            assert refusal.startswith("line "), refusal
            seen["refused"] += 1
            return
        for record in records:
            seen[_check_record(record, "" if record.event is None else None)] += 1

    prop()
    assert seen["event"] > 5 and seen["error"] > 20 and seen["refused"] > 5, seen


def test_deeply_nested_json_is_an_invalid_record_not_a_crash(tmp_path: Path) -> None:
    good = json.dumps(
        {"name": "trade", "user": {"identifier": EVM.identifier, "identifier_type": "evm_address"}}
    )
    deep = "[" * 100_000 + "]" * 100_000
    jsonl = tmp_path / "deep.jsonl"
    jsonl.write_text(f"{good}\n{deep}\n{good}\n")
    scan, records = _scan(jsonl, "jsonl")
    assert (scan.events, scan.invalid) == (2, 1)
    assert records[1].error is not None and records[1].line == 2

    csv_file = tmp_path / "deep.csv"
    nested = '{"a":' * 5000 + "1" + "}" * 5000
    cell = '"' + nested.replace('"', '""') + '"'  # quoted as CSV quotes a cell
    csv_file.write_text(
        f"name,identifier,identifier_type,arg.x\ntrade,{EVM.identifier},evm_address,{cell}\n"
    )
    scan, records = _scan(csv_file, "csv")
    assert scan.invalid == 1 and records[0].error is not None


def test_a_first_line_holding_only_a_bom_is_blank(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\xef\xbb\xbf\n")
    _, records = _scan(path, "jsonl")
    assert [(r.event, r.error) for r in records] == [(None, None)]
