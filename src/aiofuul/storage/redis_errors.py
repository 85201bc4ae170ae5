"""What an error from Redis means for the shared limiter and outbox: one classification.

- :class:`RedisDownError`: no connection (refused, reset, timed out). Redis may be
  restarting: wait, and use it again when it answers.
- :class:`RedisBusyError`: Redis answers but cannot serve us for now: out of memory
  (``maxmemory`` reached, ``noeviction``), loading its data, a read-only replica after a
  failover, a long script (``BUSY``), a failed save (``MISCONF``), no client slot left.
  Also a wait, without hammering it.
- :class:`RedisRefusedError`: Redis refuses us for good until someone changes the
  configuration: a wrong password or user, an ACL without the commands the scripts need
  (``@scripting``, the stream commands), a script it will not load, a TLS handshake that
  fails. At start this is raised (a :class:`~aiofuul.errors.ConfigurationError`); after
  a good start it is logged once as an error and the client degrades as for an outage.

Anything else (a ``WRONGTYPE``, a script error) is a bug, left as it is.
The messages never hold the password: Redis's own messages do not, and URLs are shown
redacted.
"""

from __future__ import annotations

import asyncio
import ssl

from ..errors import ConfigurationError, FuulError

__all__ = [
    "RedisBusyError",
    "RedisDownError",
    "RedisRefusedError",
    "SharedRedisError",
    "classify",
    "refused_at_start",
]


class SharedRedisError(FuulError):
    """Redis cannot serve the shared limiter or outbox; ``kind`` says how long:
    ``"down"``, ``"busy"`` (both for now) or ``"refused"`` (until reconfigured)."""

    kind = "down"


class RedisDownError(SharedRedisError):
    """No connection to Redis (refused, reset, timed out)."""

    kind = "down"


class RedisBusyError(SharedRedisError):
    """Redis answers but cannot take our writes for now (out of memory, loading, ...)."""

    kind = "busy"


class RedisRefusedError(SharedRedisError, ConfigurationError):
    """Redis refuses us until its configuration or ours changes (password, ACL, TLS)."""

    kind = "refused"


_BUSY_CODES = ("BUSY", "MISCONF", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN", "LOADING", "OOM")
# What Redis says when an ACL refuses a command, on its own or inside a script
# (7.0: "The user executing the script can't run this command or subcommand").
_REFUSALS = ("noperm", "no permissions", "can't run this command", "unknown command",
             "noauth", "wrongpass", "invalid password", "invalid username")  # fmt: skip


def _tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError) or "SSL" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _what(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def classify(exc: BaseException) -> SharedRedisError | None:
    """The meaning of ``exc`` raised by a Redis call (its cause chained), or None for a
    bug. Needs ``redis`` (only called where it is installed)."""
    from redis import exceptions as rx

    if isinstance(exc, SharedRedisError):
        return exc
    kind: type[SharedRedisError] | None = None
    if isinstance(
        exc,
        rx.AuthenticationError
        | rx.AuthorizationError
        | rx.NoPermissionError
        | rx.AuthenticationWrongNumberOfArgsError
        | rx.NoScriptError,  # a NOSCRIPT reaches us only when loading it failed too
    ):
        kind = RedisRefusedError
    elif isinstance(exc, rx.BusyLoadingError | rx.OutOfMemoryError | rx.ReadOnlyError):
        kind = RedisBusyError
    elif isinstance(exc, rx.ResponseError):
        text = str(exc)
        status = getattr(exc, "status_code", None) or text.split(" ", 1)[0]
        if status in _BUSY_CODES or text.startswith(_BUSY_CODES):
            kind = RedisBusyError
        elif any(word in text.lower() for word in _REFUSALS):
            kind = RedisRefusedError
    elif isinstance(exc, rx.ConnectionError):
        if _tls_failure(exc):
            kind = RedisRefusedError
        elif "max number of clients" in str(exc):
            kind = RedisBusyError
        else:
            kind = RedisDownError
    elif isinstance(exc, rx.TimeoutError | OSError | asyncio.TimeoutError):
        kind = RedisRefusedError if isinstance(exc, ssl.SSLError) else RedisDownError
    if kind is None:
        return None
    error = kind(_what(exc))
    error.__cause__ = exc
    return error


def refused_at_start(problem: SharedRedisError, field: str, shown: str, needs: str) -> None:
    """Raise :class:`RedisRefusedError` for a first contact (``start()``) that cannot
    work: ``problem`` refused, or a connection reset at once, which is what a TLS server
    does to a client without TLS. ``field=shown`` names the URL (redacted); ``needs``,
    what the feature needs of Redis."""
    text = str(problem)
    cut = "reset by peer" in text or "closed by server" in text
    if problem.kind == "down" and shown.startswith("redis://") and cut:
        tls = RedisRefusedError(f"{text}; does the server expect TLS (rediss://)?")
        tls.__cause__ = problem.__cause__
        problem = tls
    if problem.kind == "refused":
        raise RedisRefusedError(
            f"{field}={shown}: Redis refuses the shared {field} ({problem}); it needs "
            f"{needs}, the right user and password, and TLS (rediss://) if the server uses it"
        ) from problem.__cause__ or problem
