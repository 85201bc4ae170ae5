"""What every command shares: exit codes, the client options, and error messages."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable

from ..client import FuulClient
from ..config import ClientConfig, RetryPolicy
from ..engine.limits import Limits
from ..errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ClientStateError,
    FuulError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransportError,
    ValidationError,
)
from ..sandbox.cli import add_limit_arguments, parse_time_scale
from ..wire.transport import AiohttpTransport, InsecureURLError, resolve_base_url
from ._patience import DEFAULT_GIVE_UP, GaveUp, Watched, WatchedTransport

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CLIError",
    "add_client_arguments",
    "add_time_scale_argument",
    "cli_hints",
    "client_config",
    "describe_error",
    "limits_from_args",
    "open_client",
]

#: Everything asked for was done (a duplicate counts: the event exists).
EXIT_OK = 0
#: Some events were not delivered, or the server refused the request.
EXIT_FAILED = 1
#: Bad command line or bad input: nothing was sent.
EXIT_USAGE = 2
#: Stopped by SIGINT (128 + 2, the shell convention); progress was saved.
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """An error shown as one line (``aiofuul: error: <message>``), exiting with ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


# -- client options -----------------------------------------------------------------
def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not (value > 0.0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number > 0, not {text!r}")
    return value


def _attempts(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, not {text!r}")
    return value


def add_time_scale_argument(parser: argparse._ActionsContainer, default: float = 1.0) -> None:
    """``--time-scale X``: multiply every period of the limits by X."""
    parser.add_argument(
        "--time-scale",
        # The sandbox's own parser: the same text must give both the same periods.
        type=parse_time_scale,
        default=default,
        metavar="X",
        help="multiply every period of the rate limits by X, a number or a fraction "
        "(1/60: one API minute lasts a second), to match a sandbox started with the same "
        f"--time-scale (default {default:g})",
    )


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of every command that talks to the API: where, and at what rate."""
    group = parser.add_argument_group("connection (the API key is read from $FUUL_API_KEY)")
    group.add_argument(
        "--base-url",
        default=None,
        metavar="URL",
        help="API base URL (default $FUUL_BASE_URL, else https://api.fuul.xyz/api/v1/); "
        "plain http is allowed on loopback only",
    )
    group.add_argument(
        "--timeout", type=_positive, default=10.0, metavar="SECONDS", help="per request"
    )
    group.add_argument(
        "--max-attempts",
        type=_attempts,
        default=RetryPolicy.max_attempts,
        metavar="N",
        help="tries per request on network errors, 5xx and 429 "
        f"(default {RetryPolicy.max_attempts}, about half a minute of backoff in all)",
    )
    group.add_argument(
        "--give-up-after",
        type=_positive,
        default=DEFAULT_GIVE_UP,
        metavar="SECONDS",
        help="stop when the server has answered nothing for this long (default "
        f"{DEFAULT_GIVE_UP:g}); raise it on a slow network",
    )
    add_limit_arguments(group, "rate limit of the {} endpoint")
    add_time_scale_argument(group)
    group.add_argument(
        "--no-format-check",
        dest="check_format",
        action="store_false",
        help="do not check identifier formats (their type is still checked)",
    )


def limits_from_args(ns: argparse.Namespace) -> Limits:
    """The limits chosen by :func:`add_client_arguments` options, time scale applied."""
    limits = Limits(ns.single_limit, ns.batch_limit, ns.status_limit)
    return limits.scaled(ns.time_scale) if ns.time_scale != 1.0 else limits


def client_config(ns: argparse.Namespace) -> ClientConfig:
    """The :class:`ClientConfig` chosen by :func:`add_client_arguments` options."""
    return ClientConfig(
        limits=limits_from_args(ns),
        retry=RetryPolicy(max_attempts=ns.max_attempts),
        timeout=ns.timeout,
        check_identifier_format=ns.check_format,
    )


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def open_client(
    ns: argparse.Namespace,
    *,
    outbox: str | None = None,
    say: Callable[[str], None] = _to_stderr,
) -> Watched:
    """``async with open_client(ns) as fuul``: a client from the options and the
    environment, which says when the server does not answer (lines given to ``say``) and
    gives up after ``--give-up-after`` seconds of silence (see :mod:`._patience`);
    :class:`CLIError` (exit 2) for a missing key or a bad URL."""
    key = os.environ.get("FUUL_API_KEY", "")
    if not key.strip():
        raise CLIError("no API key: set FUUL_API_KEY")
    config = client_config(ns)
    try:
        url = resolve_base_url(ns.base_url, config.allow_insecure_http)
        watch = WatchedTransport(
            AiohttpTransport(
                key, url, timeout=config.timeout, max_response_bytes=config.max_response_bytes
            ),
            url,
            max_attempts=ns.max_attempts,
            give_up=ns.give_up_after,
            say=say,
        )
        client = FuulClient(base_url=url, config=config, outbox=outbox, transport=watch)
    except ClientStateError as exc:
        raise CLIError(str(exc)) from None
    except InsecureURLError:
        raise CLIError(
            "refusing a plain-http --base-url/FUUL_BASE_URL that is not loopback: the "
            "API key would travel in clear; use https"
        ) from None
    except ValueError as exc:
        raise CLIError(cli_hints(str(exc))) from None
    return Watched(client, watch)


# -- errors ---------------------------------------------------------------------------
#: The library's advice, and the same advice for someone at the command line.
_FLAG_HINTS = (
    ("ClientConfig(check_identifier_format=False)", "--no-format-check"),
    ("base_url", "--base-url"),
)


def cli_hints(message: str) -> str:
    """``message`` with each hint naming a library setting renamed to the command
    line's flag (``ClientConfig(check_identifier_format=False)`` to
    ``--no-format-check``).

    Example::

        cli_hints("... ClientConfig(check_identifier_format=False) skips this check")
        # '... --no-format-check skips this check'
    """
    for library, flag in _FLAG_HINTS:
        message = message.replace(library, flag)
    return message


def _server_said(exc: APIError) -> str:
    message = exc.message
    text = "; ".join(message) if isinstance(message, list) else (message or "")
    return f" (server said: {text})" if text else ""


def describe_error(exc: BaseException, base_url: str | None = None) -> tuple[str, int]:
    """One line saying what went wrong and what to check, and the exit code.

    Never includes the API key: the client keeps it out of every message it makes,
    and nothing here adds it."""
    where = f" at {base_url}" if base_url else ""
    if isinstance(exc, CLIError):
        return str(exc), exc.code
    if isinstance(exc, ValidationError):
        return f"invalid event: {cli_hints(str(exc))}", EXIT_USAGE
    if isinstance(exc, AuthenticationError):
        return "401 Unauthorized: the API key was refused (check FUUL_API_KEY)", EXIT_FAILED
    if isinstance(exc, PermissionDeniedError):
        return (
            "403 Forbidden: the API key lacks the scope for this endpoint "
            "(it needs send:trigger_event)" + _server_said(exc),
            EXIT_FAILED,
        )
    if isinstance(exc, NotFoundError):
        return f"404 Not Found{where}{_server_said(exc)} (check --base-url)", EXIT_FAILED
    if isinstance(exc, BadRequestError):
        return f"400 Bad Request: the server refused the event{_server_said(exc)}", EXIT_FAILED
    if isinstance(exc, RateLimitError):
        return "429 Too Many Requests: still rate limited after every retry", EXIT_FAILED
    if isinstance(exc, ServerError):
        return f"the server failed{where} ({exc}) after every retry", EXIT_FAILED
    if isinstance(exc, APIError):
        return f"the server refused the request: {exc}", EXIT_FAILED
    if isinstance(exc, GaveUp):  # its message names the flags already
        return f"no answer from the server{where}: {exc}", EXIT_FAILED
    if isinstance(exc, TransportError):
        return (
            f"no answer from the server{where}: {exc} (check --base-url; --max-attempts "
            "and --give-up-after SECONDS wait longer)",
            EXIT_FAILED,
        )
    if isinstance(exc, FuulError):
        return str(exc), EXIT_FAILED
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc), EXIT_USAGE
    return f"unexpected {type(exc).__name__}: {exc} (rerun with --debug)", EXIT_FAILED
