"""A server that does not answer: the command line says so at once, and gives up.

The library retries a request with no answer for as long as its policy allows (about
half a minute of backoff, more with slow timeouts): right for a service, too long for a
person at a terminal who mistyped a port. The command line therefore sends through a
:class:`WatchedTransport`, which

- says ``no answer from <url> yet`` within :data:`FIRST_NOTICE` seconds of a request
  left unanswered, and ``retrying (attempt 2 of 8)`` as each retry starts;
- gives up once the server has answered nothing for ``--give-up-after`` seconds
  (:data:`DEFAULT_GIVE_UP`): it cancels the command's task, and :class:`Watched` turns
  that cancellation into a :class:`~aiofuul.cli._common.CLIError` naming the flag.

Any answer, an error status included, shows the server is there and resets the clock.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Mapping
from types import TracebackType

from ..client import FuulClient
from ..errors import TransportError
from ..wire.transport import Response, Transport

__all__ = ["DEFAULT_GIVE_UP", "FIRST_NOTICE", "GaveUp", "Watched", "WatchedTransport"]

#: Seconds a request may go unanswered before the command line says so.
FIRST_NOTICE = 1.5
#: Seconds without any answer from the server before a command gives up.
DEFAULT_GIVE_UP = 15.0


class GaveUp(TransportError):
    """The server answered nothing for ``--give-up-after`` seconds."""


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


_Key = tuple[str, str, bytes | None, tuple[tuple[str, str], ...]]


class WatchedTransport:
    """A :class:`~aiofuul.wire.transport.Transport` around another, watching for silence.

    Example::

        watch = WatchedTransport(AiohttpTransport(key, url, timeout=10,
                                 max_response_bytes=2**20), url, max_attempts=8)
    """

    def __init__(
        self,
        inner: Transport,
        url: str,
        *,
        max_attempts: int,
        give_up: float = DEFAULT_GIVE_UP,
        say: Callable[[str], None] = _to_stderr,
        first_notice: float | None = None,
    ):
        self.inner = inner
        self.url = url
        self.max_attempts = max_attempts
        self.give_up = give_up
        #: Read at construction, so that tests may shorten the module's constant.
        self.first_notice = FIRST_NOTICE if first_notice is None else first_notice
        self.say = say
        #: The task a give-up cancels (set by :class:`Watched`).
        self.task: asyncio.Task[object] | None = None
        self.gave_up = False
        self.last_failure = ""
        self._attempts: dict[_Key, int] = {}
        self._last_outcome: dict[_Key, str] = {}  # what the last attempt got, said on retry
        self._pending = 0
        # Armed while the server is silent: from the first request after an answer.
        self._give_up_timer: asyncio.TimerHandle | None = None

    # -- the clock of silence ------------------------------------------------------------
    def _silence_starts(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._give_up_timer is None:
            self._give_up_timer = loop.call_later(self.give_up, self._give_up)

    def _answered(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._give_up_timer is not None:
            self._give_up_timer.cancel()
            self._give_up_timer = None
        if self._pending:  # others still wait: their silence starts now
            self._silence_starts(loop)

    def _give_up(self) -> None:
        self._give_up_timer = None
        self.gave_up = True
        if self.task is not None:
            self.task.cancel()

    def _attempt(self, attempt: int) -> str:
        # 429s do not use up a tracked event's attempts: it may go past the maximum.
        most = f" of {self.max_attempts}" if attempt <= self.max_attempts else ""
        return f"attempt {attempt}{most}"

    def _still_waiting(self, attempt: int) -> None:
        self.say(
            f"aiofuul: no answer from {self.url} yet, still waiting ({self._attempt(attempt)}; "
            f"gives up after {self.give_up:g} s without an answer, --give-up-after SECONDS "
            "to wait longer)"
        )

    # -- the transport -------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Response:
        """Send through the inner transport, saying so when no answer comes."""
        loop = asyncio.get_running_loop()
        key: _Key = (method, path, body, tuple(sorted((params or {}).items())))
        attempt = self._attempts.get(key, 0) + 1
        self._attempts[key] = attempt
        if attempt > 1:
            said = self._last_outcome.get(key, f"no answer from {self.url} yet")
            self.say(f"aiofuul: {said}, retrying ({self._attempt(attempt)})")
        self._pending += 1
        self._silence_starts(loop)
        notice = loop.call_later(self.first_notice, self._still_waiting, attempt)
        try:
            response = await self.inner.request(method, path, body=body, params=params)
        except TransportError as exc:
            self.last_failure = str(exc)
            self._last_outcome[key] = f"no answer from {self.url} yet"
            raise
        finally:
            notice.cancel()
            self._pending -= 1
        self._answered(loop)
        if response.status == 429:
            self._last_outcome[key] = f"{self.url} answered 429 (rate limited)"
        elif response.status >= 500:
            self._last_outcome[key] = f"{self.url} answered {response.status}"
        else:  # a final answer: this request is done
            self._attempts.pop(key, None)
            self._last_outcome.pop(key, None)
        return response

    async def close(self) -> None:
        """Close the inner transport; no timer outlives it."""
        if self._give_up_timer is not None:
            self._give_up_timer.cancel()
            self._give_up_timer = None
        await self.inner.close()


class Watched:
    """``async with Watched(client, watch) as fuul``: the client, whose command gives
    up with :class:`GaveUp` (a :class:`~aiofuul.errors.TransportError`) when ``watch``
    says the server is silent."""

    def __init__(self, client: FuulClient, watch: WatchedTransport):
        self.client = client
        self.watch = watch

    async def __aenter__(self) -> FuulClient:
        self.watch.task = asyncio.current_task()
        return await self.client.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.watch.task = None
        await self.client.__aexit__(exc_type, exc, tb)
        if self.watch.gave_up and isinstance(exc, asyncio.CancelledError):
            task = asyncio.current_task()
            uncancel = getattr(task, "uncancel", None)  # Python 3.11+
            if uncancel is not None:
                uncancel()
            last = f"; last: {self.watch.last_failure}" if self.watch.last_failure else ""
            raise GaveUp(
                f"nothing for {self.watch.give_up:g} s{last} (check --base-url, or wait "
                "longer with --give-up-after SECONDS)"
            ) from None
