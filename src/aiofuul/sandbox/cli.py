"""The sandbox's command line: ``python -m aiofuul.sandbox --port 8080 ...``.

:func:`add_sandbox_arguments`, :func:`sandbox_from_args` and :func:`serve_forever` are
what any command that runs a sandbox (``aiofuul sandbox`` too) is built from.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
from collections.abc import Sequence

from ..engine.limits import DEFAULT_LIMITS, Limits, RateLimit
from .faults import Faults
from .sends import SEND_SCOPES
from .server import Sandbox

__all__ = [
    "add_limit_arguments",
    "add_sandbox_arguments",
    "main",
    "parse_rate_limit",
    "parse_time_scale",
    "sandbox_from_args",
    "serve_forever",
]


def parse_rate_limit(text: str) -> RateLimit:
    """An argparse type: ``"100/60"`` (requests/seconds) or ``"100"`` (per 60 seconds)."""
    count, _, period = text.partition("/")
    try:
        return RateLimit(int(count), float(period) if period else 60.0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected REQUESTS/SECONDS like 100/60, not {text!r}"
        ) from None


def parse_time_scale(text: str) -> float:
    """An argparse type: ``"1/60"`` (one minute lasts a second) or a number > 0 such as
    ``"0.5"``. A fraction gives exactly the float of ``1 / 60`` in Python, so that a
    sandbox started with ``--time-scale 1/60``, a client CLI given the same text and
    ``DEFAULT_LIMITS.scaled(1 / 60)`` in code all enforce the same periods."""
    numerator, slash, denominator = text.partition("/")
    try:
        value = float(numerator) / float(denominator) if slash else float(numerator)
    except (ValueError, ZeroDivisionError):
        value = math.nan
    if not (value > 0.0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(
            f"expected a number > 0 or a fraction like 1/60, not {text!r}"
        )
    return value


def add_limit_arguments(parser: argparse._ActionsContainer, help_format: str) -> None:
    """``--single-limit``, ``--batch-limit`` and ``--status-limit`` (N/SECONDS), defaulting
    to the documented limits; ``help_format`` gets the endpoint's name."""
    for name, default in (
        ("single", DEFAULT_LIMITS.single),
        ("batch", DEFAULT_LIMITS.batch),
        ("status", DEFAULT_LIMITS.status),
    ):
        parser.add_argument(
            f"--{name}-limit",
            type=parse_rate_limit,
            default=default,
            metavar="N/SECONDS",
            help=help_format.format(name) + f" (default {default.requests}/{default.period:g})",
        )


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction from 0 to 1, not {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, not {text!r}")
    return value


def add_sandbox_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sandbox's options (host, port, keys, limits, faults) to ``parser``."""
    _add_server_arguments(parser)
    _add_rate_arguments(parser)
    _add_fault_arguments(parser)
    parser.add_argument(
        "--no-format-check",
        dest="check_format",
        action="store_false",
        help="accept identifiers in any format (their type is still checked)",
    )


def _add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=8080, help="port to listen on (0: any free port)"
    )
    parser.add_argument(
        "--key",
        action="append",
        default=None,
        metavar="KEY[:SCOPE,SCOPE]",
        help="accept this API key (repeatable); without scopes it has them all, "
        "'KEY:' has none (read-only). No --key: any key is accepted",
    )
    parser.add_argument(
        "--webhook-url",
        default=None,
        metavar="URL",
        help="POST a reward.earned webhook here for each payout it makes; a non-2xx or a "
        "timeout is retried with backoff (8 attempts)",
    )


def _add_rate_arguments(parser: argparse.ArgumentParser) -> None:
    add_limit_arguments(parser, "limit of the {} endpoint per key")
    parser.add_argument(
        "--shared-limit",
        type=parse_rate_limit,
        default=None,
        metavar="N/SECONDS",
        help="one more limit all endpoints of a key count against together",
    )
    parser.add_argument(
        "--time-scale",
        type=parse_time_scale,
        default=1.0,
        metavar="X",
        help="multiply every period by X, a number or a fraction (1/60: the documented "
        "limits per second); give clients the same text, or DEFAULT_LIMITS.scaled(1 / 60)",
    )
    parser.add_argument(
        "--retry-after",
        choices=("seconds", "http-date", "none"),
        default="seconds",
        help="form of the Retry-After header on a 429",
    )


def _add_fault_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--error-rate", type=_fraction, default=0.0, help="fraction of 5xx")
    parser.add_argument(
        "--latency", type=_seconds, default=0.0, help="seconds added to each request"
    )
    parser.add_argument(
        "--drop-rate", type=_fraction, default=0.0, help="fraction of closed connections"
    )
    parser.add_argument(
        "--drop-after-store",
        type=_fraction,
        default=0.5,
        help="fraction of the drops that happen after the events were stored",
    )
    parser.add_argument(
        "--garbage-rate", type=_fraction, default=0.0, help="fraction of unreadable 2xx bodies"
    )
    parser.add_argument(
        "--hang-rate", type=_fraction, default=0.0, help="fraction of requests never answered"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault injection")


def _keys(specs: Sequence[str] | None) -> dict[str, set[str]] | None:
    if not specs:
        return None
    keys: dict[str, set[str]] = {}
    for spec in specs:
        # Scopes contain colons themselves ("send:trigger_event"): split at the first.
        key, colon, scopes = spec.partition(":")
        if not key:
            raise ValueError("--key needs a non-empty key")
        granted = {s.strip() for s in scopes.split(",") if s.strip()} if colon else SEND_SCOPES
        keys.setdefault(key, set()).update(granted)
    return keys


def sandbox_from_args(ns: argparse.Namespace) -> Sandbox:
    """A (not yet started) :class:`Sandbox` configured by parsed
    :func:`add_sandbox_arguments` options."""
    limits = Limits(ns.single_limit, ns.batch_limit, ns.status_limit, ns.shared_limit)
    faults = Faults(
        error_rate=ns.error_rate,
        latency=ns.latency,
        drop_rate=ns.drop_rate,
        drop_after_store=ns.drop_after_store,
        garbage_rate=ns.garbage_rate,
        hang_rate=ns.hang_rate,
        seed=ns.seed,
    )
    return Sandbox(
        host=ns.host,
        port=ns.port,
        keys=_keys(ns.key),
        limits=limits.scaled(ns.time_scale) if ns.time_scale != 1.0 else limits,
        retry_after=ns.retry_after,
        faults=faults,
        check_format=ns.check_format,
        webhook_url=ns.webhook_url,
    )


async def serve_forever(sb: Sandbox) -> None:
    """Start ``sb``, print its URL on one line, and serve until SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not available on Windows: there Ctrl-C ends asyncio.run with KeyboardInterrupt.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    await sb.start()
    try:
        print(f"aiofuul sandbox listening on {sb.url}", flush=True)
        await stop.wait()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await sb.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run a sandbox from command-line arguments until interrupted; returns 0."""
    parser = argparse.ArgumentParser(
        prog="python -m aiofuul.sandbox",
        description="A local server that behaves like the Fuul events API.",
    )
    add_sandbox_arguments(parser)
    ns = parser.parse_args(argv)
    try:
        sb = sandbox_from_args(ns)
    except ValueError as exc:
        parser.error(str(exc))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(sb))
    return 0
