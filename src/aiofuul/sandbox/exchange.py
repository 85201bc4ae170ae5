"""One request the sandbox answers, and the record it keeps of it."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from aiohttp import web

__all__ = ["MAX_BODY", "Exchange", "RecordedRequest", "drop"]

#: The largest request body the sandbox reads, in bytes (a larger one is answered 413).
MAX_BODY = 8 * 1024 * 1024


@dataclass(frozen=True)
class RecordedRequest:
    """One request the sandbox received.

    ``status`` is 0 when no response was sent (dropped or hung), ``at`` is
    ``time.monotonic()`` at arrival, ``events`` the number of events in the body (0 when
    it was not read), ``key_id`` a short sha256 prefix of the API key (never the key),
    ``project_id`` the ``?project_id=`` query parameter, and ``body`` the raw request body
    as received when the sandbox was made with ``record_bodies=True`` (None otherwise, and
    for a body over the size cap).
    """

    method: str
    path: str
    status: int
    at: float
    events: int = 0
    key_id: str | None = None
    project_id: str | None = None
    body: bytes | None = None


class Exchange:
    """One request being answered, and what its record needs."""

    __slots__ = ("at", "body", "key_id", "request", "too_large")

    def __init__(self, request: web.Request, key_id: str | None) -> None:
        self.request = request
        self.at = time.monotonic()
        self.key_id = key_id
        self.body: bytes | None = None
        self.too_large = False

    async def read(self) -> bytes:
        """The body, read once; ``web.HTTPRequestEntityTooLarge`` past the size cap."""
        if self.too_large:
            # The stream was left half read: reading again would return its tail.
            raise web.HTTPRequestEntityTooLarge(MAX_BODY)
        if self.body is None:
            try:
                self.body = await self.request.read()
            except web.HTTPRequestEntityTooLarge:
                self.too_large = True
                raise
        return self.body

    async def body_if_any(self) -> bytes | None:
        """The body, or None when it is over the size cap."""
        with contextlib.suppress(web.HTTPRequestEntityTooLarge):
            return await self.read()
        return None

    async def record(self, status: int, events: int, keep_body: bool) -> RecordedRequest:
        """The record of this request answered with ``status`` (0: not answered)."""
        body = await self.body_if_any() if keep_body else None
        request = self.request
        project_id = request.query.get("project_id")
        return RecordedRequest(
            request.method, request.path, status, self.at, events, self.key_id, project_id, body
        )


def drop(request: web.Request) -> web.Response:
    """Close the connection without answering: the client sees it reset or disconnected.

    The response returned is never written (aiohttp finds the transport closing and
    treats it as a client disconnect, without logging a traceback)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=500)
