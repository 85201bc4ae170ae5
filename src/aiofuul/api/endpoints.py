"""What the endpoint methods of :class:`~aiofuul.FuulClient` (the direct sends of
:mod:`~aiofuul.api.events_writes`, the reads of :mod:`~aiofuul.api.events_reads`) need of the client, declared
once, and the one rule for the ``?project_id=`` query any request may carry.
"""

from __future__ import annotations

from ..config import ClientConfig
from ..engine.events import EventFactory
from ..engine.lanes import Lane
from ..engine.limits import LaneName
from ..wire.transport import Transport
from ..wire.validation import check_query_value

__all__ = ["Endpoints", "project_query"]


def project_query(
    project_id: str | None, params: dict[str, str] | None = None
) -> dict[str, str] | None:
    """``params`` with ``project_id`` added when one is named, as the official SDK sends
    it (``?project_id=``). ``project_id`` is held to the rule of every query value
    (:func:`~aiofuul.wire.validation.check_query_value`): a non-str, an empty one or one the
    URL library would alter is refused (:class:`~aiofuul.ValidationError`) before any
    request is made."""
    if project_id is None:
        return params
    return {**(params or {}), "project_id": check_query_value("project_id", project_id)}


class Endpoints:
    """A base class of :class:`~aiofuul.FuulClient` and of its endpoint groups: what
    they need of the client."""

    config: ClientConfig
    _lanes: dict[LaneName, Lane]
    _transport: Transport
    _events: EventFactory

    def _check_usable(self) -> None:
        raise NotImplementedError
