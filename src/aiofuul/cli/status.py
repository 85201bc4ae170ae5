"""``aiofuul status``: ``GET /v1/events/status``, whether an event exists for a user; with
``--pipeline``, ``GET /v1/events/pipeline``, what became of one event."""

from __future__ import annotations

import argparse
import asyncio

from ..wire.models import User
from ._common import EXIT_FAILED, EXIT_OK, CLIError, add_client_arguments, open_client
from .send import add_user_arguments

__all__ = ["DESCRIPTION", "HELP", "NAME", "configure", "run"]

_DESCRIPTION = """\
Ask whether ANY event NAME exists for the user (not a given dedup id; names are
case-sensitive). Prints 'created' or 'not created'; both exit 0.

With --pipeline, show what became of one event (found by --dedup-id and --event, or
by --event-id): its trigger executions, attributions and payouts; --wait SECONDS polls
until attributions or payouts appear. Exits 1 when the event is not found.

examples:
  aiofuul status --user ada@example.com --type email --event signup
  aiofuul status --pipeline --dedup-id swap-123 --event swap --wait 60"""


NAME = "status"
HELP = "whether an event exists for a user"
DESCRIPTION = _DESCRIPTION


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``aiofuul status``."""
    add_user_arguments(parser, required=False)
    parser.add_argument("--event", metavar="NAME", help="the event name")
    pipeline = parser.add_argument_group("the event pipeline")
    pipeline.add_argument("--pipeline", action="store_true", help="show one event's pipeline")
    pipeline.add_argument("--dedup-id", metavar="ID", help="the event's dedup id (with --event)")
    pipeline.add_argument("--event-id", metavar="ID", help="the event's id")
    pipeline.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS", help="poll until attributed"
    )
    add_client_arguments(parser)
    parser.set_defaults(run=run)


async def _status(ns: argparse.Namespace) -> int:
    if ns.user is None or ns.identifier_type is None or ns.event is None:
        raise CLIError("status needs --user, --type and --event (or --pipeline)")
    async with open_client(ns) as fuul:
        ns.shown_base_url = fuul.base_url
        created = await fuul.event_status(User(ns.user, ns.identifier_type), ns.event)
    print("created" if created else "not created")
    return EXIT_OK


async def _pipeline(ns: argparse.Namespace) -> int:
    if ns.event_id is None and (ns.dedup_id is None or ns.event is None):
        raise CLIError("--pipeline needs --event-id, or --dedup-id with --event")
    named = {"event_id": ns.event_id, "dedup_id": ns.dedup_id, "event_name": ns.event}
    if ns.event_id is not None:
        named.update(dedup_id=None, event_name=None)
    async with open_client(ns) as fuul:
        ns.shown_base_url = fuul.base_url
        if ns.wait > 0:
            found = await fuul.wait_for_pipeline(**named, timeout=ns.wait)
        else:
            found = await fuul.event_pipeline(**named)
    if found is None:
        print("not found")
        return EXIT_FAILED
    for execution in found.trigger_executions:
        details = f" ({execution.status_details})" if execution.status_details else ""
        print(f"trigger execution: {execution.status}{details}")
    print(f"attributions: {len(found.attributions)}")
    print(f"payouts: {len(found.payouts)}")
    print(f"movements: {len(found.movements)}")
    return EXIT_OK


def run(ns: argparse.Namespace) -> int:
    """Ask and print; raises for errors (shown by :func:`aiofuul.cli.main`)."""
    return asyncio.run(_pipeline(ns) if ns.pipeline else _status(ns))
