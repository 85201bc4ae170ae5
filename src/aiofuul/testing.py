"""Testing code that uses aiofuul: a transport that answers from a function (no network),
and pytest fixtures that run a real sandbox server.

Needs pytest and pytest-asyncio: ``pip install 'aiofuul[testing]'``.

**Without a server.** :class:`MockTransport` hands every request to your function, which
answers with :func:`respond` (or raises :class:`~aiofuul.TransportError` to play a
network failure)::

    from aiofuul import FuulClient
    from aiofuul.testing import MockTransport, respond

    def handler(request):
        return respond(201) if request.path == "events" else respond(404)

    transport = MockTransport(handler)
    fuul = FuulClient("k", transport=transport)
    ...
    assert transport.requests[0].json()["name"] == "signup"

**Against the sandbox.** Enable the fixtures in your ``conftest.py``::

    pytest_plugins = ["aiofuul.testing"]

and use them in async tests (pytest-asyncio)::

    async def test_signup_is_tracked(fuul_sandbox):
        await my_app.signup("alice@example.com", fuul_base_url=fuul_sandbox.url)
        assert fuul_sandbox.stored_count("signup-alice") == 1

    async def test_trade(fuul_client, fuul_sandbox):
        dedup_id = fuul_client.track("trade", user, args={"size": 2})
        await fuul_client.flush()
        assert fuul_sandbox.stored_count(dedup_id) == 1

``fuul_sandbox`` is a started :class:`aiofuul.sandbox.Sandbox` that accepts any API
key, with the documented rate limits and no faults; change ``fuul_sandbox.faults`` or
``fuul_sandbox.limits`` in the test to make it misbehave. It is stopped after the test.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest_asyncio

from .client import FuulClient
from .sandbox import Sandbox
from .wire.transport import Response, parse_retry_after

__all__ = ["MockRequest", "MockTransport", "fuul_client", "fuul_sandbox", "respond"]


@dataclass(frozen=True)
class MockRequest:
    """One request a :class:`MockTransport` received, as the client asked for it.

    ``path`` is relative to the base URL (``"events"``, ``"events/batch"``, ...);
    ``params`` is the query (empty when there is none).
    """

    method: str
    path: str
    body: bytes | None = None
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body decoded from JSON; None when the request has no body."""
        return None if self.body is None else msgspec.json.decode(self.body)


#: What :class:`MockTransport` calls with each request.
Handler = Callable[[MockRequest], Response | Awaitable[Response]]


class MockTransport:
    """A :class:`~aiofuul.wire.transport.Transport` that answers every request by calling
    ``handler(request)`` with a :class:`MockRequest`; nothing touches the network.

    The handler returns a :class:`~aiofuul.wire.transport.Response` (:func:`respond` builds
    one) or an awaitable of one, or raises :class:`~aiofuul.TransportError` to play a
    failed connection or a timeout. Anything else it raises reaches the client as a bug
    would. For example::

        def handler(request):
            return respond(201) if request.path == "events" else respond(404)

        fuul = FuulClient("k", transport=MockTransport(handler))

    ``requests`` lists every request received, in order; ``closed`` says whether the
    client closed the transport.
    """

    def __init__(self, handler: Handler):
        self.handler = handler
        self.requests: list[MockRequest] = []
        self.closed = False

    def __repr__(self) -> str:
        return f"<MockTransport requests={len(self.requests)} closed={self.closed}>"

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Response:
        """Record the request, then answer with what the handler returns."""
        request = MockRequest(method, path, body, dict(params or {}))
        self.requests.append(request)
        answer = self.handler(request)
        if inspect.isawaitable(answer):
            answer = await answer
        if not isinstance(answer, Response):
            # Caught here, it names the handler; caught in the client, it would be an
            # AttributeError far from the test that made it.
            raise TypeError(
                f"MockTransport handler returned {type(answer).__name__}, not a Response "
                "(build one with aiofuul.testing.respond)"
            )
        return answer

    async def close(self) -> None:
        """Nothing to release; records that the client closed it (``closed``)."""
        self.closed = True


def respond(
    status: int,
    json: object = None,
    body: bytes = b"",
    retry_after: float | str | None = None,
) -> Response:
    """A :class:`~aiofuul.wire.transport.Response` for a :class:`MockTransport` handler.

    ``json``, when not None, is encoded as the body (give it or ``body``, not both).
    ``retry_after`` is seconds, or a ``Retry-After`` header value (``"120"``, an HTTP
    date) parsed as the real transport parses it::

        respond(201)
        respond(400, json={"message": ["name must be a string"]})
        respond(429, retry_after=2)
    """
    if json is not None:
        if body:
            raise ValueError("respond() takes json or body, not both")
        body = msgspec.json.encode(json)
    seconds = parse_retry_after(retry_after) if isinstance(retry_after, str) else retry_after
    return Response(status, body, None if seconds is None else float(seconds))


@pytest_asyncio.fixture
async def fuul_sandbox() -> AsyncIterator[Sandbox]:
    """A started sandbox Fuul API on loopback (``fuul_sandbox.url``), stopped after the test."""
    async with Sandbox() as sb:
        yield sb


@pytest_asyncio.fixture
async def fuul_client(fuul_sandbox: Sandbox) -> AsyncIterator[FuulClient]:
    """A :class:`~aiofuul.FuulClient` pointed at ``fuul_sandbox``, closed after the test
    (closing delivers what is queued, so the sandbox's store is complete by then)."""
    async with FuulClient("sandbox-test-key", base_url=fuul_sandbox.url) as fuul:
        yield fuul
