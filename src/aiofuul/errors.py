"""The exceptions aiofuul raises, in one hierarchy you can catch precisely.

```
FuulError
├── ValidationError            bad input, refused before anything is sent or queued
├── ClientStateError           the client is closed, or used from the wrong loop or process
├── QueueFullError             track() with queue_full="raise" and no room left
├── UndeliveredError           given to on_error: why tracked events were not delivered
├── TransportError             connection failed, timed out, or the response was unreadable
└── APIError                   the server answered with an error status
    ├── BadRequestError        400: the server refused the payload
    ├── AuthenticationError    401: missing or wrong API key
    ├── PermissionDeniedError  403: the key lacks the scope
    ├── NotFoundError          404: e.g. the project does not exist
    ├── RateLimitError         429: too many requests (``retry_after`` in seconds, if sent)
    └── ServerError            5xx
```

Example::

    try:
        await fuul.send_event("trade", user, dedup_id="t-1")
    except aiofuul.RateLimitError as exc:
        print("slow down for", exc.retry_after)
    except aiofuul.APIError as exc:
        print(exc.status, exc.message)
"""

from __future__ import annotations

import re

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ClientStateError",
    "FuulError",
    "NotFoundError",
    "PermissionDeniedError",
    "QueueFullError",
    "RateLimitError",
    "ServerError",
    "TransportError",
    "UndeliveredError",
    "ValidationError",
]

_MAX_SHOWN = 80
# A batch validation message that names its event: "[3].user..." or "3.user ...".
_EVENT_INDEX = re.compile(r"\[?(\d+)\]?[.:\s]")


def _shorten(value: object) -> str:
    """Render a rejected value for a message, never at unbounded length."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


class FuulError(Exception):
    """Base class of every error aiofuul raises."""


class ValidationError(FuulError, ValueError):
    """Input refused on the client side, before anything was sent or queued.

    ``field`` names the offending field (``user.identifier``, ``args.size``, ...),
    ``rule`` says what was expected, and the message quotes the value, truncated.
    ``tier`` says which kind of rule refused it, and the message ends saying how to relax
    it: 1, always refused (the API cannot take it); 2, a shape no Fuul document shows,
    refused only with ``ClientConfig(strict=True)``; 3, an identifier format, skipped with
    ``ClientConfig(check_identifier_format=False)``.
    """

    def __init__(
        self,
        field: str,
        rule: str,
        value: object = None,
        *,
        show_value: bool = True,
        tier: int = 1,
    ):
        self.field = field
        self.rule = rule
        self.tier = tier
        self._shown = f" (got {_shorten(value)})" if show_value else ""
        super().__init__(self._text())

    def _text(self) -> str:
        return f"{self.field}: {self.rule}{self._shown} [{_TIERS[self.tier]}]"

    def within(self, prefix: str) -> ValidationError:
        """The same error for a field nested under ``prefix`` (``[3].`` in a batch)."""
        return _rebuild_validation_error(prefix + self.field, self.rule, self._shown, self.tier)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_validation_error, (self.field, self.rule, self._shown, self.tier))


#: What each tier of validation means, and how to relax it: the tail of every message.
_TIERS = {
    1: "tier 1: always refused, the API cannot take it",
    2: (
        "tier 2: no Fuul document shows this shape; refused because strict=True, "
        "ClientConfig(strict=False) sends it with a warning"
    ),
    3: ("tier 3: identifier format; ClientConfig(check_identifier_format=False) skips this check"),
}


def _rebuild_validation_error(field: str, rule: str, shown: str, tier: int = 1) -> ValidationError:
    err = ValidationError(field, rule, show_value=False, tier=tier)
    err._shown = shown
    err.args = (err._text(),)
    return err


class ClientStateError(FuulError, RuntimeError):
    """The client cannot do this now: it is closed, or used from another event loop
    or from a forked child process (create one client per loop and per process)."""


class QueueFullError(FuulError):
    """``track()`` found the queue full and the policy is ``queue_full="raise"``."""


class UndeliveredError(FuulError):
    """Why events accepted by ``track()`` were not delivered; ``on_error`` receives it.

    ``reason`` is one of:

    - ``"rejected"``: the server refused the event (400); ``cause`` has its message.
    - ``"retries_exhausted"``: every attempt failed; ``cause`` is the last error.
    - ``"stopped"``: the key cannot send (401/403/404); ``cause`` says which.
    - ``"dropped"``: the queue was full (``queue_full`` policy).
    - ``"shutdown"``: still queued or in flight when the client closed or its loop ended
      (an event in flight at that moment may still have been stored).
    - ``"handed_off"``: not lost: left at close in a shared (Redis) outbox, where another
      client delivers it (counted in ``stats().handed_off``, never in ``failed``). An
      ``on_error`` that keeps lost events elsewhere skips this reason.
    """

    def __init__(self, reason: str, count: int, cause: FuulError | None = None):
        self.reason = reason
        self.count = count
        self.cause = cause
        text = f"{count} event{'s' if count != 1 else ''} not delivered ({reason})"
        super().__init__(f"{text}: {cause}" if cause is not None else text)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.reason, self.count, self.cause))


class TransportError(FuulError):
    """No usable answer from the server: connection refused or reset, a timeout,
    or a response too large or malformed to read."""


class APIError(FuulError):
    """The server answered with an error status.

    ``status`` is the HTTP status; ``message`` is the server's ``message`` field, a
    string or (for validation errors) a list of strings, or ``None``.
    """

    def __init__(self, status: int, message: str | list[str] | None = None):
        self.status = status
        self.message = message
        detail = "; ".join(message) if isinstance(message, list) else message or ""
        text = f"HTTP {status}"
        super().__init__(f"{text}: {detail}" if detail else text)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.status, self.message))


class BadRequestError(APIError):
    """400: the server refused the payload. Retrying the same payload cannot help.

    For a refused batch (atomic: nothing was stored), :meth:`event_errors` says which
    events the server named, so the others can be sent again::

        except BadRequestError as exc:
            bad = exc.event_errors()  # {3: ["[3].user.identifier: ..."]}, or None
    """

    def event_errors(self, batch_size: int | None = None) -> dict[int, list[str]] | None:
        """The server's messages by the index of the event they name (``[3].user...``
        or ``3.user ...``), or None when any message names no event (or, given
        ``batch_size``, an index outside the batch): then nobody knows which is bad."""
        messages = self.message if isinstance(self.message, list) else [self.message or ""]
        found: dict[int, list[str]] = {}
        for message in messages:
            match = _EVENT_INDEX.match(message)
            if match is None:
                return None
            index = int(match.group(1))
            if batch_size is not None and index >= batch_size:
                return None
            found.setdefault(index, []).append(message)
        return found or None


class AuthenticationError(APIError):
    """401: the API key is missing or wrong."""


class PermissionDeniedError(APIError):
    """403: the API key lacks the scope this endpoint needs. ``needed_scope`` names it
    when the client knows (``send:trigger_event`` for trigger events,
    ``send:tracking_event`` for ``pageview``/``connect_wallet``), and the message says so."""

    def __init__(
        self, status: int = 403, message: str | list[str] | None = None, needed_scope: str = ""
    ):
        super().__init__(status, message)
        self.needed_scope = needed_scope
        if needed_scope:
            self.args = (f"{self.args[0]} (this API key needs the {needed_scope} scope)",)

    def for_scope(self, needed_scope: str) -> PermissionDeniedError:
        """The same refusal, saying which scope the request needed."""
        return PermissionDeniedError(self.status, self.message, needed_scope)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.status, self.message, self.needed_scope))


class NotFoundError(APIError):
    """404: the project (or path) does not exist."""


class RateLimitError(APIError):
    """429: too many requests. ``retry_after`` is the server's hint in seconds, or None."""

    def __init__(
        self,
        status: int = 429,
        message: str | list[str] | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(status, message)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.status, self.message, self.retry_after))


class ServerError(APIError):
    """5xx: the server failed. Retried automatically; raised when retries run out."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}


def error_for_status(
    status: int, message: str | list[str] | None, retry_after: float | None = None
) -> APIError:
    """The exception that stands for an error ``status``: the one mapping of codes to classes."""
    if status == 429:
        return RateLimitError(status, message, retry_after)
    if status >= 500:
        return ServerError(status, message)
    return _BY_STATUS.get(status, APIError)(status, message)


class ConfigurationError(FuulError, ValueError):
    """The client's configuration cannot work: an unknown option, a Redis URL or server
    that refuses what the client needs (a wrong password, an ACL without scripting)."""
