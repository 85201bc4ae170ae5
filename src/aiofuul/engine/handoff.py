"""Events handed to the client's loop from other threads, one wake-up per burst.

``call_soon_threadsafe`` per event costs a lock, a callback object and a write to the
loop's self-pipe: most of what ``SyncFuulClient.track()`` paid. Here each event is only
appended to a deque, and the loop is woken only when the deque was not already waiting
for it; one callback then takes everything that arrived meanwhile.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from ..wire.models import Event

__all__ = ["Handoff"]


class Handoff:
    """Hand events from any thread to ``sink`` on ``loop`` (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: Callable[[Event], None]):
        self._loop = loop
        self._sink = sink
        self._events: deque[Event] = deque()
        # True while a drain is scheduled and has not begun: producers need not wake the
        # loop. drain() clears it *before* taking events, so an event appended after
        # that is either taken by this drain or schedules another: none is left behind.
        self._scheduled = False

    def put(self, event: Event) -> None:
        """From any thread. Raises RuntimeError when the loop is closed (nothing kept)."""
        self._events.append(event)
        if not self._scheduled:
            self._scheduled = True
            try:
                self._loop.call_soon_threadsafe(self.drain)
            except RuntimeError:
                self._scheduled = False
                self._events.clear()  # the loop is gone: nothing here will be taken
                raise

    def drain(self) -> None:
        """On the loop: pass every waiting event to the sink (flush and close call it
        too, so no event waits behind a wake-up that has not run yet)."""
        self._scheduled = False
        events, sink = self._events, self._sink
        while events:
            sink(events.popleft())
