"""``aiofuul sandbox``: a local server that behaves like the Fuul API, for your own
integration tests. Its options are the sandbox's own (:mod:`aiofuul.sandbox.cli`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from ..sandbox.cli import add_sandbox_arguments, sandbox_from_args, serve_forever
from ._common import EXIT_OK, CLIError

__all__ = ["DESCRIPTION", "HELP", "NAME", "configure", "run"]

_DESCRIPTION = """\
Run a local server that behaves like the Fuul events API (POST /v1/events,
POST /v1/events/batch, GET /v1/events/status): it stores events, deduplicates
them by dedup_id, enforces the rate limits per key, and injects faults on demand.
It prints its base URL on one line, then serves until Ctrl-C or SIGTERM (exit 0).

example:
  aiofuul sandbox --port 8080 --key sk_test --time-scale 1/60 &
  FUUL_BASE_URL=http://127.0.0.1:8080/api/v1/ FUUL_API_KEY=sk_test \\
      aiofuul send signup --user ada@example.com --type email --time-scale 1/60"""


NAME = "sandbox"
HELP = "run a local sandbox of the Fuul API"
DESCRIPTION = _DESCRIPTION


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``aiofuul sandbox``."""
    add_sandbox_arguments(parser)
    parser.set_defaults(run=run)


def run(ns: argparse.Namespace) -> int:
    """Serve until interrupted."""
    try:
        sb = sandbox_from_args(ns)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(sb))
    return EXIT_OK
