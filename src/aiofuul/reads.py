"""The read endpoints: did an event arrive (``events/status``), what became of it
(``events/pipeline``), and which conversions and triggers the project has
(``conversions``). Each has a lane of its own; :class:`~aiofuul.FuulClient` exposes them
as ``event_status``, ``event_pipeline``, ``wait_for_pipeline`` and ``conversions``.

Answers are decoded leniently: Fuul does not publish their full shapes, so unknown
fields are kept (``raw``) and a missing one is None, never an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import msgspec

from .config import RetryPolicy
from .errors import NotFoundError, TransportError, ValidationError
from .lanes import Lane
from .models import Conversion, EventPipeline, User, decode_conversions, decode_pipeline
from .transport import Transport
from .validation import check_dedup_id, check_name, check_user

__all__ = [
    "conversions",
    "event_pipeline",
    "event_status",
    "pipeline_query",
    "wait_for_pipeline",
]


class _StatusBody(msgspec.Struct):
    created: bool


_STATUS_DECODER = msgspec.json.Decoder(_StatusBody)


def _with_project(params: dict[str, str], project_id: str | None) -> dict[str, str]:
    if project_id is not None:
        params["project_id"] = project_id
    return params


async def event_status(
    lane: Lane,
    transport: Transport,
    retry: RetryPolicy,
    user: User,
    name: str,
    *,
    check_format: bool,
    project_id: str | None = None,
) -> bool:
    """``GET /v1/events/status``: whether ANY event ``name`` exists for ``user``."""
    user = check_user(user, check_format)
    params = {
        "user_identifier": user.identifier,
        "user_identifier_type": user.identifier_type,
        "event_name": check_name(name),
    }
    response = await lane.call(transport, retry, params=_with_project(params, project_id))
    try:
        return _STATUS_DECODER.decode(response.body).created
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise TransportError(f"GET {lane.path}: unreadable response body") from None


def pipeline_query(
    event_id: str | None, dedup_id: str | None, event_name: str | None
) -> dict[str, str]:
    """The query of a pipeline look-up: ``event_id``, or ``dedup_id`` with ``event_name``."""
    if event_id is not None:
        if dedup_id is not None or event_name is not None:
            raise ValueError("pass event_id, or dedup_id with event_name, not both")
        if type(event_id) is not str or not event_id:
            raise ValidationError("event_id", "must be a non-empty string", event_id)
        return {"event_id": event_id}
    if dedup_id is None or event_name is None:
        raise ValueError("pass event_id=..., or dedup_id=... with event_name=...")
    return {"dedup_id": check_dedup_id(dedup_id), "event_name": check_name(event_name)}


async def event_pipeline(
    lane: Lane,
    transport: Transport,
    retry: RetryPolicy,
    query: Mapping[str, str],
    project_id: str | None = None,
) -> EventPipeline | None:
    """``GET /v1/events/pipeline``: the event's pipeline, or None when the server does not
    know the event (yet: 404)."""
    try:
        response = await lane.call(transport, retry, params=_with_project(dict(query), project_id))
    except NotFoundError:
        return None
    pipeline = decode_pipeline(response.body)
    if pipeline is None:
        raise TransportError(f"GET {lane.path}: unreadable response body")
    return pipeline


async def wait_for_pipeline(
    lane: Lane,
    transport: Transport,
    retry: RetryPolicy,
    query: Mapping[str, str],
    *,
    timeout: float,
    interval: float,
    project_id: str | None = None,
) -> EventPipeline | None:
    """Poll the pipeline every ``interval`` seconds until it shows attributions or
    payouts, or ``timeout`` passes; returns the last answer (None: never found)."""
    deadline = time.monotonic() + timeout
    while True:
        pipeline = await event_pipeline(lane, transport, retry, query, project_id)
        if pipeline is not None and (pipeline.attributions or pipeline.payouts):
            return pipeline
        left = deadline - time.monotonic()
        if left <= 0:
            return pipeline
        await asyncio.sleep(min(interval, left))


async def conversions(
    lane: Lane, transport: Transport, retry: RetryPolicy, project_id: str | None = None
) -> list[Conversion]:
    """``GET /v1/conversions``: the project's conversions, each with its triggers."""
    response = await lane.call(transport, retry, params=_with_project({}, project_id))
    found = decode_conversions(response.body)
    if found is None:
        raise TransportError(f"GET {lane.path}: unreadable response body")
    return found
