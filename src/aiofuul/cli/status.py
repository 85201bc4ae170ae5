"""``aiofuul status``: ``GET /v1/events/status``, whether an event exists for a user."""

from __future__ import annotations

import argparse
import asyncio

from ..models import User
from ._common import EXIT_OK, add_client_arguments, open_client
from .send import add_user_arguments

__all__ = ["register", "run"]

_DESCRIPTION = """\
Ask whether ANY event NAME exists for the user (not a given dedup id; names are
case-sensitive). Prints 'created' or 'not created'; both exit 0.

example:
  aiofuul status --user ada@example.com --type email --event signup"""


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    formatter: type[argparse.HelpFormatter],
) -> None:
    """Add ``aiofuul status`` to ``commands``."""
    parser = commands.add_parser(
        "status",
        parents=[common],
        help="whether an event exists for a user",
        description=_DESCRIPTION,
        formatter_class=formatter,
    )
    add_user_arguments(parser)
    parser.add_argument("--event", required=True, metavar="NAME", help="the event name")
    add_client_arguments(parser)
    parser.set_defaults(run=run)


async def _status(ns: argparse.Namespace) -> int:
    async with open_client(ns) as fuul:
        ns.shown_base_url = fuul.base_url
        created = await fuul.event_status(User(ns.user, ns.identifier_type), ns.event)
    print("created" if created else "not created")
    return EXIT_OK


def run(ns: argparse.Namespace) -> int:
    """Ask and print; raises for errors (shown by :func:`aiofuul.cli.main`)."""
    return asyncio.run(_status(ns))
