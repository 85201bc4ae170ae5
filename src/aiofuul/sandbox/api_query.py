"""The sandbox's own table of the endpoints' query parameters and JSON body fields, its
judges, and the page-numbered answers.

Each endpoint names every parameter it takes, which are required, and what each must
be; anything else is a 400, as a strict server refuses it (the client's parameter
names are checked by this, not by the client's rules). ``project_id`` is always allowed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import msgspec

from ..wire.models import IDENTIFIER_TYPES
from .parsing import BadRequest

__all__ = ["Param", "judge_body", "judge_query", "numbered", "ts"]


@dataclass(frozen=True)
class Param:
    """One parameter: ``kind`` is ``text``, ``idtype`` (an identifier type), ``date``,
    ``bool``, ``int`` (from ``low`` to ``high``), ``enum`` (one of ``choices``) or
    ``list`` (comma-separated, ``low`` to ``high`` items); in a JSON body also
    ``entries`` (a list of ``low`` to ``high`` users, ``user_identifier`` and
    ``user_identifier_type`` each). ``nullable``: a body field that may be null."""

    kind: str = "text"
    required: bool = False
    low: int = 1
    high: int = 100
    choices: tuple[str, ...] = ()
    nullable: bool = False


def ts(text: str) -> float:
    """An ISO 8601 date of a query as epoch seconds (naive: UTC)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _judge(name: str, param: Param, value: str) -> tuple[Any, str | None]:
    if not value.strip():
        return None, f"{name} should not be empty"
    kind = param.kind
    if kind == "idtype" and value not in IDENTIFIER_TYPES:
        return None, f"{name} must be one of the following values: " + ", ".join(
            sorted(IDENTIFIER_TYPES)
        )
    if kind == "enum" and value not in param.choices:
        return None, f"{name} must be one of the following values: " + ", ".join(param.choices)
    if kind == "int":
        if not value.isdigit():
            return None, f"{name} must be an integer number"
        number = int(value)
        if number < param.low:
            return None, f"{name} must not be less than {param.low}"
        if number > param.high:
            return None, f"{name} must not be greater than {param.high}"
        return number, None
    if kind == "bool":
        if value not in ("true", "false"):
            return None, f"{name} must be a boolean value"
        return value == "true", None
    if kind == "date":
        try:
            return ts(value), None
        except ValueError:
            return None, f"{name} must be a valid ISO 8601 date string"
    if kind == "list":
        items = [v for v in value.split(",") if v]
        if not param.low <= len(items) <= param.high:
            return None, f"{name} must contain {param.low} to {param.high} elements"
        return items, None
    return value, None


def judge_query(table: Mapping[str, Param], query: Mapping[str, str]) -> dict[str, Any]:
    """The query's values by name, converted, or :class:`BadRequest` naming every
    problem (unknown, missing or invalid parameters)."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    for name in query:
        if name not in table and name != "project_id":
            problems.append(f"property {name} should not exist")
    for name, param in table.items():
        raw = query.get(name)
        if raw is None:
            if param.required:
                problems.append(f"{name} should not be empty")
            continue
        value, problem = _judge(name, param, raw)
        if problem is not None:
            problems.append(problem)
        else:
            values[name] = value
    if problems:
        raise BadRequest(problems)
    return values


def numbered(rows: Sequence[Any], values: Mapping[str, Any], style: str, size: int = 10) -> Any:
    """One page of ``rows`` as ``page``/``page_size`` ask, in the endpoint's ``style``:
    ``total`` (``total_results``, ``page``, ``page_size``), ``count`` (``count`` and
    ``next_page``) or ``total_count`` (``total_count`` and ``next_page``)."""
    page, size = values.get("page", 1), values.get("page_size", size)
    items = list(rows[(page - 1) * size : page * size])
    if style == "total":
        return {"total_results": len(rows), "page": page, "page_size": size, "results": items}
    following = page + 1 if page * size < len(rows) else None
    return {"results": items, style: len(rows), "next_page": following}


def _judge_json(name: str, param: Param, value: Any) -> str | None:
    """What is wrong with one value of a JSON body, or None."""
    if value is None:
        return None if param.nullable else f"{name} should not be null"
    if param.kind == "int":
        if type(value) is not int:
            return f"{name} must be an integer number"
        if value < param.low:
            return f"{name} must not be less than {param.low}"
        return f"{name} must not be greater than {param.high}" if value > param.high else None
    if param.kind == "entries":
        if not isinstance(value, list) or not param.low <= len(value) <= param.high:
            return f"{name} must contain {param.low} to {param.high} elements"
        for i, entry in enumerate(value):
            if not isinstance(entry, dict) or set(entry) != {
                "user_identifier",
                "user_identifier_type",
            }:
                return f"{name}.{i} must hold user_identifier and user_identifier_type only"
            problem = _judge_json(f"{name}.{i}.user_identifier", Param(), entry["user_identifier"])
            kind = Param("idtype")
            problem = problem or _judge_json(
                f"{name}.{i}.user_identifier_type", kind, entry["user_identifier_type"]
            )
            if problem:
                return problem
        return None
    if not isinstance(value, str):
        return f"{name} must be a string"
    return _judge(name, param, value)[1]


def judge_body(table: Mapping[str, Param], body: bytes) -> dict[str, Any]:
    """The JSON object of a body, each field judged by ``table`` (unknown, missing or
    invalid fields: :class:`BadRequest` naming every problem)."""
    try:
        raw = msgspec.json.decode(body) if body.strip() else {}
    except msgspec.DecodeError:
        raise BadRequest(["body must be a JSON object"]) from None
    if not isinstance(raw, dict):
        raise BadRequest(["body must be a JSON object"])
    problems = [f"property {name} should not exist" for name in raw if name not in table]
    for name, param in table.items():
        if name not in raw:
            if param.required:
                problems.append(f"{name} should not be empty")
            continue
        problem = _judge_json(name, param, raw[name])
        if problem is not None:
            problems.append(problem)
    if problems:
        raise BadRequest(problems)
    return raw
