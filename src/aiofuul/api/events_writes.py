"""The direct sends of :class:`~aiofuul.FuulClient`: ``POST /v1/events`` and
``POST /v1/events/batch`` now, awaited, through the one retry loop
(:func:`aiofuul.engine.delivery.call`), for code that must know the answer before it goes on.
``track()`` queues instead (:mod:`aiofuul.engine.sender`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..engine.delivery import Duplicate, accept_batch, accept_event, call
from ..engine.events import EventFields
from ..errors import PermissionDeniedError
from ..wire.models import (
    BatchResult,
    Event,
    SendResult,
    User,
    encode_batch_in_steps,
    encode_event,
    required_scope,
)
from .endpoints import Endpoints, project_query

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["DirectSends"]


class DirectSends(Endpoints):
    """The direct sends of :class:`~aiofuul.FuulClient` (a base class of it)."""

    async def send_event(
        self,
        name: str,
        user: User | None = None,
        *,
        dedup_id: str | None = None,
        args: Mapping[str, Any] | None = None,
        timestamp: int | str | None = None,
        **fields: Unpack[EventFields],
    ) -> SendResult:
        """``POST /v1/events`` now, with retries; returns when the server answered.

        ``duplicate=True`` in the result means the server already had this ``dedup_id``
        (409): not an error, the event exists. Raises :class:`~aiofuul.APIError`
        subclasses for refusals and :class:`~aiofuul.TransportError` when retries run out.
        The fields are those of :meth:`track`; ``project_id`` is also sent as
        ``?project_id=``, in place of the client's.
        """
        self._check_usable()
        event = self._events.make(name, user, dedup_id, args, timestamp, fields, stamp=False)
        try:
            outcome = await call(
                self._lanes["single"], self._transport, self.config.retry, accept_event,
                body=encode_event(event), params=project_query(fields.get("project_id")), events=1,
            )  # fmt: skip
        except PermissionDeniedError as exc:
            raise exc.for_scope(required_scope(event.name)) from None
        return SendResult(event.dedup_id, duplicate=isinstance(outcome, Duplicate))

    async def send_batch(
        self, events: Sequence[Event], *, project_id: str | None = None
    ) -> BatchResult:
        """``POST /v1/events/batch`` now: 1 to 100 events in one atomic request.

        Known dedup ids are skipped by the server, not refused: ``result.skipped``.
        """
        self._check_usable()
        checked = self._events.check_batch(events)
        count = len(checked)
        body = await encode_batch_in_steps(checked)
        try:
            outcome = await call(
                self._lanes["batch"], self._transport, self.config.retry, accept_batch(count),
                body=body, params=project_query(project_id), events=count,
            )  # fmt: skip
        except PermissionDeniedError as exc:
            scopes = sorted({required_scope(event.name) for event in checked})
            raise exc.for_scope(" and ".join(scopes)) from None
        ingested = count if isinstance(outcome, Duplicate) else outcome.ingested
        return BatchResult(ingested=ingested, skipped=count - ingested)
