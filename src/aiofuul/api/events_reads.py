"""The read endpoints: did an event arrive (``events/status``), what became of it
(``events/pipeline``), and which conversions and triggers the project has
(``conversions``). Each has a lane of its own; :class:`~aiofuul.FuulClient` exposes them
as ``event_status``, ``event_pipeline``, ``wait_for_pipeline`` and ``conversions``.

Answers are decoded leniently: Fuul does not publish their full shapes, so unknown
fields are kept (``raw``) and a missing one is None, never an error. A 2xx whose body is
not such an answer at all (an HTML page from a proxy) is retried like any failure, by
the one retry loop (:func:`aiofuul.engine.delivery.call`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TypeVar

import msgspec

from ..config import RetryPolicy
from ..engine.delivery import Delivered, Duplicate, call
from ..engine.lanes import Lane
from ..errors import NotFoundError, TransportError, ValidationError
from ..wire.models import (
    DECODE_ERRORS,
    Conversion,
    EventPipeline,
    User,
    decode_conversions,
    decode_pipeline,
)
from ..wire.transport import Transport
from ..wire.validation import check_dedup_id, check_name, check_query_value, check_user
from .endpoints import Endpoints, project_query

T = TypeVar("T")

__all__ = [
    "ReadEndpoints",
    "conversions",
    "event_pipeline",
    "event_status",
    "pipeline_query",
    "wait_for_pipeline",
]


class _StatusBody(msgspec.Struct):
    created: bool


_STATUS_DECODER = msgspec.json.Decoder(_StatusBody)


def _created(body: bytes) -> bool | None:
    try:
        return _STATUS_DECODER.decode(body).created
    except DECODE_ERRORS:
        return None


def _answer(outcome: Delivered[T] | Duplicate, path: str) -> T:
    if isinstance(outcome, Duplicate):  # a 409 to a read: not an answer at all
        raise TransportError(f"GET {path}: answered 409 to a read")
    return outcome.value


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
    user = check_user(user, check_format=check_format)
    params = {
        "user_identifier": user.identifier,
        "user_identifier_type": user.identifier_type,
        "event_name": check_name(name),
    }
    outcome = await call(lane, transport, retry, _created, params=project_query(project_id, params))
    return _answer(outcome, lane.path)


def pipeline_query(
    event_id: str | None, dedup_id: str | None, event_name: str | None
) -> dict[str, str]:
    """The query of a pipeline look-up: ``event_id``, or ``dedup_id`` with ``event_name``."""
    if event_id is not None:
        if dedup_id is not None or event_name is not None:
            raise ValidationError(
                "event_id", "pass event_id, or dedup_id with event_name, not both", event_id
            )
        return {"event_id": check_query_value("event_id", event_id)}
    if dedup_id is None or event_name is None:
        raise ValidationError(
            "event_id",
            "pass event_id=..., or dedup_id=... with event_name=...",
            show_value=False,
        )
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
    params = project_query(project_id, dict(query))
    try:
        outcome = await call(lane, transport, retry, decode_pipeline, params=params)
    except NotFoundError:
        return None
    return _answer(outcome, lane.path)


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
    params = project_query(project_id)
    return _answer(await call(lane, transport, retry, decode_conversions, params=params), lane.path)


class ReadEndpoints(Endpoints):
    """The read endpoints of :class:`~aiofuul.FuulClient` (a base class of it)."""

    async def event_status(self, user: User, name: str, *, project_id: str | None = None) -> bool:
        """``GET /v1/events/status``: whether ANY event ``name`` exists for ``user``
        (not a given dedup id). Event names are case-sensitive."""
        self._check_usable()
        return await event_status(
            self._lanes["status"], self._transport, self.config.retry, user, name,
            check_format=self._events.check_format, project_id=project_id,
        )  # fmt: skip

    async def event_pipeline(
        self,
        event_id: str | None = None,
        *,
        dedup_id: str | None = None,
        event_name: str | None = None,
        project_id: str | None = None,
    ) -> EventPipeline | None:
        """``GET /v1/events/pipeline``: what became of one event (by ``event_id``, or by
        ``dedup_id`` and ``event_name``): the triggers it ran, with their ``status``, and
        the attributions, payouts and movements it produced. None when the server does not
        know the event (404), which can mean "not yet".

        Example::

            p = await fuul.event_pipeline(dedup_id="swap-123", event_name="swap")
            if p is not None:
                print(p.trigger_executions[0].status, len(p.attributions), len(p.payouts))
        """
        self._check_usable()
        query = pipeline_query(event_id, dedup_id, event_name)
        return await event_pipeline(
            self._lanes["pipeline"], self._transport, self.config.retry, query, project_id
        )

    async def wait_for_pipeline(
        self,
        event_id: str | None = None,
        *,
        dedup_id: str | None = None,
        event_name: str | None = None,
        timeout: float = 60.0,
        interval: float = 3.0,
        project_id: str | None = None,
    ) -> EventPipeline | None:
        """Poll :meth:`event_pipeline` every ``interval`` seconds (Fuul suggests 2 to 5)
        until attributions or payouts appear or ``timeout`` seconds pass; returns the
        last answer, or None if the event was never found. Polls never exceed the
        pipeline endpoint's rate limit (its lane waits for a slot)."""
        self._check_usable()
        query = pipeline_query(event_id, dedup_id, event_name)
        return await wait_for_pipeline(
            self._lanes["pipeline"], self._transport, self.config.retry, query,
            timeout=timeout, interval=interval, project_id=project_id,
        )  # fmt: skip

    async def conversions(self, *, project_id: str | None = None) -> list[Conversion]:
        """``GET /v1/conversions``: the project's conversions, each with the triggers
        whose names events must carry (case-sensitive)."""
        self._check_usable()
        return await conversions(
            self._lanes["conversions"], self._transport, self.config.retry, project_id
        )
