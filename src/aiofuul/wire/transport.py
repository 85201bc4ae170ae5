"""HTTP: the :class:`Transport` seam, its aiohttp implementation (one keep-alive session,
responses read with a size cap), the base URL and its safety rules, and the
``Retry-After`` parser.

Everything the client sends goes through one :class:`Transport`: by default an
:class:`AiohttpTransport`; in unit tests, :class:`aiofuul.testing.MockTransport` (no
network); anything else with the same two methods will do.

What an answer means is decided in one place, :func:`aiofuul.engine.delivery.judge`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import os
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, runtime_checkable

import aiohttp
import msgspec
import yarl

from .._version import __version__
from ..errors import (
    APIError,
    ConfigurationError,
    ConnectError,
    FuulError,
    TransportError,
    error_for_status,
)
from .models import DECODE_ERRORS

__all__ = [
    "DEFAULT_BASE_URL",
    "AiohttpTransport",
    "InsecureURLError",
    "Response",
    "Transport",
    "parse_retry_after",
    "resolve_base_url",
]

#: Production base URL (the official JS SDK's default).
DEFAULT_BASE_URL = "https://api.fuul.xyz/api/v1/"

USER_AGENT = (
    f"aiofuul/{__version__} aiohttp/{aiohttp.__version__} "
    f"python/{sys.version_info.major}.{sys.version_info.minor}"
)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds (decimals tolerated)
    or an HTTP date. None when absent or unreadable; never negative."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


class InsecureURLError(ConfigurationError):
    """A plain ``http://`` base URL off loopback, refused because the API key would
    travel in clear (see :func:`resolve_base_url`)."""


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_base_url(base_url: str | None, allow_insecure_http: bool = False) -> str:
    """The base URL to use: ``base_url``, else ``$FUUL_BASE_URL``, else production.

    Always ends with ``/``. A plain ``http://`` URL is refused unless its host is
    loopback (the sandbox) or ``allow_insecure_http`` is set: the key would travel in clear
    (:class:`InsecureURLError`, a :class:`~aiofuul.ConfigurationError` like every other
    refusal here, and so a :class:`ValueError`).
    """
    url = base_url or os.environ.get("FUUL_BASE_URL") or DEFAULT_BASE_URL
    try:
        # yarl is the parser aiohttp sends with; judging the URL by another could differ.
        parts = yarl.URL(url)
    except (ValueError, TypeError):
        raise ConfigurationError(f"base_url is not a valid URL: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.host:
        raise ConfigurationError(f"base_url must be an http(s) URL with a host, not {url!r}")
    if parts.user is not None or parts.password is not None:
        raise ConfigurationError(
            "base_url must not carry credentials (user:password@); the API key is the only one"
        )
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.host):
        raise InsecureURLError(
            f"refusing plain-http base_url {url!r}: the API key would travel in clear; "
            "use https, or ClientConfig(allow_insecure_http=True) if you really mean it"
        )
    return url if url.endswith("/") else url + "/"


def _describe(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientResponseError):
        # Its str() is built from status and message only; request_info stays out.
        return f"{exc.status}, message={exc.message!r}"
    return str(exc)


# The failures before a connection exists, so before anything was sent; a connect
# timeout has a class of its own from aiohttp 3.10 on (a plain timeout before: ambiguous).
_CONNECT_TIMEOUT: type[aiohttp.ClientError] | None = getattr(
    aiohttp, "ConnectionTimeoutError", None
)
_CONNECT_FAILURES: tuple[type[aiohttp.ClientError], ...] = (
    aiohttp.ClientConnectorError,
    *([] if _CONNECT_TIMEOUT is None else [_CONNECT_TIMEOUT]),
)


class _ErrorBody(msgspec.Struct):
    message: str | list[str] | None = None


_ERROR_DECODER = msgspec.json.Decoder(_ErrorBody)


def _server_message(body: bytes) -> str | list[str] | None:
    try:
        return _ERROR_DECODER.decode(body).message
    except DECODE_ERRORS:
        return None


@dataclass(frozen=True)
class Response:
    """A response read in full: status, body (capped), and the parsed ``Retry-After``."""

    status: int
    body: bytes
    retry_after: float | None

    def error(self) -> APIError:
        """The exception for this (error) response, with the server's message."""
        return error_for_status(self.status, _server_message(self.body), self.retry_after)


@runtime_checkable
class Transport(Protocol):
    """What the client sends every request through (the seam, as in httpx).

    ``path`` is relative to the base URL (``"events"``, ``"events/batch"``,
    ``"events/status"``, ...); ``body``, when given, is JSON; ``params`` is the query.
    Where the base URL is and how the key is presented are the transport's business.

    :meth:`request` returns a :class:`Response` for every HTTP answer, errors included
    (the client judges the status), and raises :class:`~aiofuul.TransportError` when no
    readable answer came (connection failed, timed out, body unreadable or too large):
    the client retries that like a 5xx. Its subclass :class:`~aiofuul.ConnectError` says
    that no connection was made, so the request surely did not leave: only then is a
    write that is not idempotent sent again. Anything else it raises is taken for a bug.
    """

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Response:
        """Send one request and read its answer in full."""
        ...

    async def close(self) -> None:
        """Release what the transport holds (connections); called once by the client."""
        ...


class AiohttpTransport:
    """The default :class:`Transport`: sends requests on one keep-alive aiohttp session.

    The session is created on first use (inside the running loop) unless the caller
    passed one, which is then used as is and never closed here. The key lives only in
    the ``Authorization`` header dict, which nothing prints.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        timeout: float,
        max_response_bytes: int,
        session: aiohttp.ClientSession | None = None,
    ):
        self.base_url = base_url
        self._headers: Mapping[str, str] = {
            "Authorization": f"Bearer {api_key}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }
        self._json_headers = {**self._headers, "Content-Type": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_bytes = max_response_bytes
        self._session = session
        self._owns_session = session is None

    def __repr__(self) -> str:
        return f"AiohttpTransport(base_url={self.base_url!r})"

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise FuulError("the aiohttp session passed to the client is closed")
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=64, ttl_dns_cache=300, resolver=_ExitSafeResolver()
                ),
                timeout=self._timeout,
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Response:
        """Send one request; raise :class:`TransportError` when no readable answer came."""
        session = self._get_session()
        headers = self._headers if body is None else self._json_headers
        failure: str
        connect = False
        try:
            async with session.request(
                method,
                self.base_url + path,
                data=body,
                params=params,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as resp:
                length = resp.content_length
                if length is not None and length > self._max_bytes:
                    failure = (
                        f"response of {length} bytes exceeds max_response_bytes={self._max_bytes}"
                    )
                elif length is not None and resp.headers.get("Content-Encoding") is None:
                    # The usual case, and the fast one: the length is known and within
                    # the cap (a compressed body could inflate past it: streamed below).
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    return Response(resp.status, await resp.read(), retry_after)
                else:
                    data = bytearray()
                    async for chunk in resp.content.iter_chunked(65536):
                        data += chunk
                        if len(data) > self._max_bytes:
                            break
                    if len(data) <= self._max_bytes:
                        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                        return Response(resp.status, bytes(data), retry_after)
                    failure = f"response exceeds max_response_bytes={self._max_bytes}"
        except _CONNECT_FAILURES as exc:
            # No connection was made: the request surely did not leave (a write that is
            # not idempotent may be sent again). Its message only, as below.
            failure = f"{type(exc).__name__}: {_describe(exc)}"
            connect = True
        except asyncio.TimeoutError:
            failure = f"timed out after {self._timeout.total} s"
        except aiohttp.ClientError as exc:
            # Only the class and message leave this block: aiohttp's exception holds the
            # request (headers included, the key with them), and raising inside
            # ``except`` would chain it as __context__ even with ``from None``.
            failure = f"{type(exc).__name__}: {_describe(exc)}"
        if connect:
            raise ConnectError(f"{method} {path}: {failure}")
        raise TransportError(f"{method} {path}: {failure}")

    async def close(self) -> None:
        """Close the session if this transport created it."""
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()


class _BlockingLookup:
    """What :class:`aiohttp.ThreadedResolver` asks of its loop, answered on this thread."""

    def is_running(self) -> bool:
        return True

    def get_debug(self) -> bool:
        return False

    async def getaddrinfo(self, *args: Any, **kwargs: Any) -> Any:
        return socket.getaddrinfo(*args, **kwargs)

    async def getnameinfo(self, *args: Any, **kwargs: Any) -> Any:
        return socket.getnameinfo(*args, **kwargs)


class _ExitSafeResolver(aiohttp.ThreadedResolver):
    """aiohttp's resolver looks names up on the loop's thread pool. At interpreter exit,
    when a client delivers what is left, Python 3.12+ refuses to start a thread (and an
    executor shut down refuses work): that lookup is then made on this thread, blocking,
    since at exit nothing else waits on the loop."""

    async def resolve(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().resolve(*args, **kwargs)
        except RuntimeError:  # "can't create new thread at interpreter shutdown"
            blocking = aiohttp.ThreadedResolver(_BlockingLookup())  # type: ignore[arg-type]
            return await blocking.resolve(*args, **kwargs)
