"""The ``aiofuul`` command line: ``demo``, ``sandbox``, ``send``, ``import``, ``status``,
``outbox``, ``export``, ``referrers``.

Exit codes, the same for every command:

- 0: done (a duplicate event counts as done: it exists);
- 1: some events failed, or the server refused the request (bad key, 400, no answer);
- 2: usage or input error (bad option, invalid event or file): nothing was sent;
- 130: interrupted by Ctrl-C (``import`` saved its checkpoint first).

Errors are one line on stderr, ``aiofuul: error: ...``; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable, Sequence

from .._version import __version__
from . import demo, export, importer, outbox, referrers, send, serve, status
from ._common import EXIT_INTERRUPTED, EXIT_USAGE, describe_error

__all__ = ["build_parser", "main"]

_EPILOG = """\
exit codes: 0 ok, 1 some events failed or the server refused the request,
2 usage or input error (nothing sent), 130 interrupted (Ctrl-C).
environment: FUUL_API_KEY (the API key, never printed), FUUL_BASE_URL.
Try 'aiofuul demo' first: it needs neither."""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and epilogs; shows defaults given in help."""


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (each subcommand sets ``ns.run``)."""
    parser = argparse.ArgumentParser(
        prog="aiofuul",
        description="Send events to the Fuul API within its rate limits, import history, "
        "or run a local sandbox of the API.",
        epilog=_EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"aiofuul {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks and the client's debug log"
    )
    # Also accepted after the command name; SUPPRESS keeps the top-level value otherwise.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks (as aiofuul --debug)",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in (demo, serve, send, importer, status, outbox, export, referrers):
        command = commands.add_parser(
            module.NAME,
            parents=[common],
            help=module.HELP,
            description=module.DESCRIPTION,
            formatter_class=_Formatter,
        )
        module.configure(command)
    return parser


def _setup_logging(debug: bool) -> None:
    logging.basicConfig(
        stream=sys.stderr, format="aiofuul: %(levelname)s: %(message)s", level=logging.WARNING
    )
    if debug:
        logging.getLogger("aiofuul").setLevel(logging.DEBUG)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``aiofuul`` command line; returns the exit code."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] | None = getattr(ns, "run", None)
    if run is None:
        parser.print_usage(sys.stderr)
        print("aiofuul: error: choose a command (aiofuul --help lists them)", file=sys.stderr)
        return EXIT_USAGE
    debug = bool(getattr(ns, "debug", False))
    _setup_logging(debug)
    try:
        return run(ns)
    except KeyboardInterrupt:
        # Commands that must save state handle SIGINT themselves; this is the rest.
        print("aiofuul: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug:
            traceback.print_exc()
        message, code = describe_error(exc, getattr(ns, "shown_base_url", None))
        print(f"aiofuul: error: {message}", file=sys.stderr)
        return code
