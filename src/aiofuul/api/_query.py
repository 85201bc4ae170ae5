"""The rules of the query values of :mod:`aiofuul.api`, in one place: each is refused
before any request, with an error naming the field and the rule.

Every string value is held to :func:`aiofuul.wire.validation.check_query_value`, the rule of
every query value of the client (the events' ``project_id`` and ``event_id`` too).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import date, datetime, timezone

from ..errors import ValidationError
from ..wire.models import User
from ..wire.validation import check_query_value, check_user

__all__ = [
    "check_choice",
    "check_int_range",
    "check_query_value",
    "comma_list",
    "moment",
    "user_query",
]


def user_query(
    user: User, type_name: str, check_format: bool, field: str = "user"
) -> dict[str, str]:
    """``user_identifier`` and the identifier type under the name this endpoint wants
    (``identifier_type`` or ``user_identifier_type``)."""
    user = check_user(user, check_format=check_format, field=field)
    return {"user_identifier": user.identifier, type_name: user.identifier_type}


def check_choice(field: str, value: object, allowed: Collection[str]) -> str:
    """One of ``allowed``."""
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(field, "must be one of " + ", ".join(allowed), value)
    return str.__str__(value)


def check_int_range(field: str, value: object, low: int, high: int) -> int:
    """An int from ``low`` to ``high`` (bools refused: ``True`` is not a page size)."""
    if type(value) is not int or not low <= value <= high:
        raise ValidationError(field, f"must be an integer from {low} to {high}", value)
    return value


def comma_list(field: str, values: Iterable[object], low: int = 1, high: int = 1000) -> str:
    """Values joined with commas, as the API takes a list in a query; each value checked,
    and none may hold a comma (it would split in two on the server)."""
    if isinstance(values, (str, bytes)):
        raise ValidationError(field, "must be a list of strings, not one string", values)
    items = []
    for i, value in enumerate(values):
        text = check_query_value(f"{field}[{i}]", str(value) if type(value) is int else value)
        if "," in text:
            raise ValidationError(f"{field}[{i}]", "must not contain a comma", text)
        items.append(text)
    if not low <= len(items) <= high:
        raise ValidationError(field, f"must hold {low} to {high} items, not {len(items)}")
    return ",".join(items)


def moment(field: str, value: object) -> str:
    """A date for a query: a ``datetime`` (naive: UTC), a ``date``, or an ISO 8601
    string, sent as ISO 8601."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    text = check_query_value(field, value)
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        rule = "must be a datetime, a date or an ISO 8601 string"
        raise ValidationError(field, rule, text) from None
    return text
