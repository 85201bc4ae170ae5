"""2. Encoding a 100-event batch body.

aiofuul's path, ``aiofuul.wire.models.encode_batch(list_of_Event)`` (msgspec encoding the
Structs straight to bytes), against what a user of a dict-based SDK has: the same 100
events as plain dicts, encoded with stdlib ``json.dumps(...).encode()`` (default
separators, as ``aiohttp``'s ``json=`` does) and with ``orjson.dumps(...)``. A fourth row, "json of ``msgspec.to_builtins(events)``", is the
fair stdlib variant starting from the same Structs aiofuul starts from.

All four produce the same JSON document (checked: decoded, they are equal). Each
sample is the CPU time per encode over a block of encodes; blocks are interleaved and
the figures are medians over the rounds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import _common as c
import msgspec
import orjson

from aiofuul import Event, User
from aiofuul.wire.models import encode_batch

TITLE = "2. Encoding a 100-event batch"


def make_events(n: int = 100) -> list[Event]:
    """Events of the benchmark's shape, each with its own user, args, id and time."""
    base = 0x52908400098527886E0F7030069857D2E4169EE7
    return [
        Event(
            c.EVENT_NAME,
            User(f"0x{base + i:040X}", "evm_address"),
            f"trade-{i:08d}",
            {"pair": "ETH/USDC", "size": 2.5 + i},
            1_700_000_000_000 + i,
        )
        for i in range(n)
    ]


def as_dicts(events: list[Event]) -> list[dict[str, Any]]:
    """The same events as the dicts a dict-based SDK user would hold."""
    return [
        {
            "name": e.name,
            "user": {"identifier": e.user.identifier, "identifier_type": e.user.identifier_type},
            "dedup_id": e.dedup_id,
            "args": dict(e.args or {}),
            "timestamp": e.timestamp,
        }
        for e in events
    ]


def run(quick: bool) -> c.Report:
    report = c.Report("encoding", TITLE, quick)
    events = make_events()
    dicts = as_dicts(events)
    number = 100 if quick else 500
    repeats = 3 if quick else 9

    encoders: dict[str, Callable[[], bytes]] = {
        "aiofuul encode_batch(events)": lambda: encode_batch(events),
        "json.dumps(dicts)": lambda: json.dumps(dicts).encode(),
        "json.dumps(msgspec.to_builtins(events))": lambda: json.dumps(
            msgspec.to_builtins(events)
        ).encode(),
        "orjson.dumps(dicts)": lambda: orjson.dumps(dicts),
    }
    reference = json.loads(encoders["json.dumps(dicts)"]())
    sizes = {}
    for label, encode in encoders.items():
        body = encode()
        c.require(json.loads(body) == reference, f"{label} encodes a different document")
        sizes[label] = len(body)

    def case(encode: Callable[[], bytes]) -> Callable[[], c.Stopwatch]:
        def timed() -> c.Stopwatch:
            with c.Stopwatch() as sw:
                for _ in range(number):
                    encode()
            return sw

        return timed

    samples = c.interleaved({k: case(v) for k, v in encoders.items()}, repeats)
    per_op = c.us_per_op(samples, number)
    cpu = {k: v["cpu_median"] for k, v in per_op.items()}
    wall = {k: v["wall_median"] for k, v in per_op.items()}

    ours = cpu["aiofuul encode_batch(events)"]
    for label in encoders:
        report.add(
            label,
            cpu[label],
            "us/batch",
            note=f"{sizes[label]:,} bytes; wall clock {c.fmt(wall[label], 'us')}",
        )
    vs_json = cpu["json.dumps(dicts)"] / ours
    report.add("json.dumps(dicts) / aiofuul", vs_json, "x", ">= 5x", vs_json >= 5)
    vs_builtins = cpu["json.dumps(msgspec.to_builtins(events))"] / ours
    report.add("json.dumps(to_builtins(events)) / aiofuul", vs_builtins, "x")
    vs_orjson = cpu["orjson.dumps(dicts)"] / ours
    report.add(
        "orjson.dumps(dicts) / aiofuul",
        vs_orjson,
        "x",
        note="above 1: aiofuul is faster than orjson; below 1: orjson is faster",
    )
    report.details = {
        "events": len(events),
        "encodes_per_block": number,
        "rounds": repeats,
        "body_bytes": sizes,
        "us_per_encode": per_op,
    }
    return report


def main() -> None:
    ns = c.parse_args(__doc__ or "")
    run(ns.quick).finish(ns.out)


if __name__ == "__main__":
    main()
