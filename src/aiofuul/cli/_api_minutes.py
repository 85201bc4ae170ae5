"""The demo's limits are compressed in time (one API minute lasts 1.5 s), and it speaks
in API minutes: "1,100 events/min". The client's overload warning counts per real
minute, where the same ceiling reads 44,000/min: this filter restates it in the
demo's own scale, so that the two agree. Other log records pass unchanged."""

from __future__ import annotations

import logging

__all__ = ["InApiMinutes"]


class InApiMinutes(logging.Filter):
    """Restates the client's overload warning in API minutes, on the ``aiofuul`` logger.

    Example::

        logging.getLogger("aiofuul").addFilter(InApiMinutes(0.025))
    """

    _PREFIX = "events arrive faster than the API key can take them"

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not (isinstance(record.msg, str) and record.msg.startswith(self._PREFIX)):
            return True
        if not (isinstance(args, tuple) and len(args) == 6):
            return True
        rate, ceiling, backlog, max_queue, until_full, policy = args
        minute = 60 * self.scale
        record.msg = (
            f"{self._PREFIX}: %.0f/min against a ceiling of %.0f/min (API minutes, each "
            f"{minute:g} s in this demo); %d event(s) wait, and at this rate max_queue (%d) "
            "is reached in about %.0f s of this demo, after which queue_full=%r applies. "
            "A real service would track fewer events, ask Fuul for higher limits, or raise "
            "max_queue to ride out a burst"
        )
        record.args = (
            float(rate) * self.scale,  # type: ignore[arg-type]
            float(ceiling) * self.scale,  # type: ignore[arg-type]
            backlog,
            max_queue,
            until_full,
            policy,
        )
        return True
