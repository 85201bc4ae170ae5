"""``aiofuul status``: ``GET /v1/events/status``, whether an event exists for a user."""

from __future__ import annotations

import argparse
import asyncio

from ..models import User
from ._common import EXIT_OK, add_client_arguments, open_client
from .send import add_user_arguments

__all__ = ["DESCRIPTION", "HELP", "NAME", "configure", "run"]

_DESCRIPTION = """\
Ask whether ANY event NAME exists for the user (not a given dedup id; names are
case-sensitive). Prints 'created' or 'not created'; both exit 0.

example:
  aiofuul status --user ada@example.com --type email --event signup"""


NAME = "status"
HELP = "whether an event exists for a user"
DESCRIPTION = _DESCRIPTION


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``aiofuul status``."""
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
