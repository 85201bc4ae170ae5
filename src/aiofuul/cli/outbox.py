"""``aiofuul outbox FILE list|retry|purge``: the events an outbox could not deliver."""

from __future__ import annotations

import argparse
import asyncio
import datetime

from ..outbox import dead_letters, pending_count, purge_dead_letters, requeue_dead_letters
from ._common import EXIT_FAILED, EXIT_OK, CLIError, add_client_arguments, client_config

__all__ = ["DESCRIPTION", "HELP", "NAME", "configure", "run"]

_DESCRIPTION = """\
An outbox (FuulClient(outbox=FILE)) keeps events the server rejected (400) in a
dead-letter table, with the server's reason.

  list    show them, and how many events still wait to be sent
  retry   move them (all, or --id ...) back and send everything the file holds now
  purge   delete them (--all, or --id ...)

examples:
  aiofuul outbox events.db list
  aiofuul outbox events.db retry --no-format-check
  aiofuul outbox events.db purge --id dep-0xabc"""


NAME = "outbox"
HELP = "list, retry or purge the events an outbox could not deliver"
DESCRIPTION = _DESCRIPTION


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``aiofuul outbox``."""
    parser.add_argument("file", metavar="FILE", help="the outbox database")
    parser.add_argument("action", choices=("list", "retry", "purge"))
    parser.add_argument(
        "--id", dest="ids", action="append", metavar="DEDUP_ID", help="only this event (repeatable)"
    )
    parser.add_argument("--all", action="store_true", help="with purge: every dead letter")
    add_client_arguments(parser)
    parser.set_defaults(run=run)


def _list(ns: argparse.Namespace) -> int:
    letters = dead_letters(ns.file)
    for letter in letters:
        when = datetime.datetime.fromtimestamp(letter.failed_at, datetime.timezone.utc)
        event = letter.event
        who = (
            f"{event.user.identifier_type}:{event.user.identifier}"
            if event.user is not None
            else event.user_address or (event.metadata or {}).get("tracking_id", "-")
        )
        print(f"{letter.dedup_id}\t{when:%Y-%m-%dT%H:%M:%SZ}\t{event.name}\t{who}\t{letter.reason}")
    print(f"{len(letters)} dead letter(s); {pending_count(ns.file)} event(s) waiting to be sent")
    return EXIT_OK


async def _deliver(ns: argparse.Namespace) -> int:
    from ..client import FuulClient
    from ..errors import ClientStateError

    try:
        fuul = FuulClient(base_url=ns.base_url, config=client_config(ns), outbox=ns.file)
    except ClientStateError as exc:
        raise CLIError(str(exc)) from None
    async with fuul:
        ns.shown_base_url = fuul.base_url
        await fuul.flush()
        stats = fuul.stats()
    print(
        f"sent: {stats.delivered} delivered, {stats.duplicates} duplicates, "
        f"{stats.rejected} rejected again, {stats.failed} failed"
    )
    return EXIT_OK if stats.rejected == stats.failed == 0 else EXIT_FAILED


def run(ns: argparse.Namespace) -> int:
    """Do the action; raises for errors (shown by :func:`aiofuul.cli.main`)."""
    try:
        if ns.action == "list":
            return _list(ns)
        if ns.action == "purge":
            if not (ns.all or ns.ids):
                raise CLIError("purge deletes for good: say --all, or --id DEDUP_ID")
            print(f"purged {purge_dead_letters(ns.file, ns.ids)} dead letter(s)")
            return EXIT_OK
        print(f"moved {requeue_dead_letters(ns.file, ns.ids)} dead letter(s) back")
        return asyncio.run(_deliver(ns))
    except FileNotFoundError as exc:
        raise CLIError(str(exc)) from None
