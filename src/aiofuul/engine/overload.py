"""Is the key keeping up? The arrival rate, next to the key's ceiling, said once.

A key delivers at most ``single + batch x max_batch`` events per period (1,100 a minute
with the documented limits). Events that arrive faster pile up until ``max_queue``,
where the ``queue_full`` policy drops or refuses them: a user should hear of it while
there is still time to act, not from the drop counter. A timer samples the ledger's
``tracked`` count a dozen times per period (nothing is added to ``track()``); the rate
over the last period is ``stats().arrival_rate``, and when it has stayed above the
ceiling for a whole period with a backlog waiting, one warning gives the numbers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from ..config import ClientConfig

__all__ = ["OverloadMonitor"]

log = logging.getLogger("aiofuul")

#: Samples per period of the single lane's limit.
_SAMPLES = 12
#: Below this fraction of the ceiling, with the backlog gone, a new overload is warned of.
_REARM = 0.8


class OverloadMonitor:
    """Samples ``tracked()`` on a timer; see the module docstring."""

    def __init__(
        self,
        config: ClientConfig,
        tracked: Callable[[], int],
        backlog: Callable[[], int],
        clock: Callable[[], float],
    ):
        limits = config.limits
        self.period = limits.single.period
        #: Events per second the key can take at most.
        self.ceiling = limits.events_per_second(config.max_batch)
        self._max_queue = config.max_queue
        self._policy = config.queue_full
        self._tracked = tracked
        self._backlog = backlog
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque(maxlen=_SAMPLES + 1)
        self._timer: asyncio.TimerHandle | None = None
        self._armed = True

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Sample now and every period / 12 until :meth:`stop`."""
        self._tick(loop)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def rate(self) -> float:
        """Events accepted per second over the last period (less at the start)."""
        if len(self._samples) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._samples.append((self._clock(), self._tracked()))
        self._check()
        self._timer = loop.call_later(self.period / _SAMPLES, self._tick, loop)

    def _check(self) -> None:
        rate, backlog = self.rate, self._backlog()
        full_period = len(self._samples) == self._samples.maxlen
        if not self._armed:
            self._armed = rate < _REARM * self.ceiling and backlog == 0
            return
        if not (full_period and rate > self.ceiling and backlog > 0):
            return
        self._armed = False
        unit = 60.0  # per minute: how the limits are published
        growth = rate - self.ceiling
        until_full = max(0.0, (self._max_queue - backlog) / growth)
        log.warning(
            "events arrive faster than the API key can take them: %.0f/min against a "
            "ceiling of %.0f/min (single + batch limits); %d event(s) wait, and at this "
            "rate max_queue (%d) is reached in about %.0f s, after which queue_full=%r "
            "applies. Track fewer events, raise the key's limits with Fuul, or raise "
            "max_queue to ride out a burst",
            rate * unit,
            self.ceiling * unit,
            backlog,
            self._max_queue,
            until_full,
            self._policy,
        )
