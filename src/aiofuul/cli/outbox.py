"""``aiofuul outbox FILE|redis://... list|retry|purge|stats``: the events an outbox could
not deliver, and its backlog."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import re
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..storage.outbox import (
    DeadLetter,
    dead_letters,
    pending_count,
    purge_dead_letters,
    requeue_dead_letters,
)
from ..storage.redis_outbox import is_redis_url
from ._common import EXIT_FAILED, EXIT_OK, CLIError, add_client_arguments, open_client

__all__ = ["DESCRIPTION", "HELP", "NAME", "configure", "run"]

T = TypeVar("T")

_DESCRIPTION = """\
An outbox (FuulClient(outbox=FILE), or outbox="redis://..." shared by a fleet) keeps
events the server rejected (400) as dead letters, with the server's reason.

  list    show them, and how many events still wait to be sent
  retry   move them (all, or --id ...) back and send everything the outbox holds now
          (a Redis outbox: what no live worker adopted first)
  purge   delete them (--all, or --id ...)
  stats   the backlog: events waiting; for Redis, each worker's share, which are
          live, the oldest event's age and the stream's memory

A Redis outbox is named by a hash of the API key: from $FUUL_API_KEY, or --key-hash
(the 16 hex digits in its key names, aiofuul:<hash>:outbox).

examples:
  aiofuul outbox events.db list
  aiofuul outbox events.db retry --no-format-check
  aiofuul outbox events.db purge --id dep-0xabc
  aiofuul outbox redis://redis:6379/0 stats"""


NAME = "outbox"
HELP = "list, retry or purge the events an outbox could not deliver; see its backlog"
DESCRIPTION = _DESCRIPTION


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``aiofuul outbox``."""
    parser.add_argument(
        "file", metavar="FILE", help="the outbox database, or the Redis URL of a shared one"
    )
    parser.add_argument("action", choices=("list", "retry", "purge", "stats"))
    parser.add_argument(
        "--id", dest="ids", action="append", metavar="DEDUP_ID", help="only this event (repeatable)"
    )
    parser.add_argument("--all", action="store_true", help="with purge: every dead letter")
    parser.add_argument(
        "--key-hash",
        metavar="HEX",
        help="a Redis outbox's key hash, in place of $FUUL_API_KEY (not for retry)",
    )
    add_client_arguments(parser)
    parser.set_defaults(run=run)


def _print_letters(letters: list[DeadLetter], waiting: int) -> None:
    for letter in letters:
        when = datetime.datetime.fromtimestamp(letter.failed_at, datetime.timezone.utc)
        event = letter.event
        who = (
            f"{event.user.identifier_type}:{event.user.identifier}"
            if event.user is not None
            else event.user_address or (event.metadata or {}).get("tracking_id", "-")
        )
        print(f"{letter.dedup_id}\t{when:%Y-%m-%dT%H:%M:%SZ}\t{event.name}\t{who}\t{letter.reason}")
    print(f"{len(letters)} dead letter(s); {waiting} event(s) waiting to be sent")


async def _deliver(ns: argparse.Namespace) -> int:
    async with open_client(ns, outbox=ns.file) as fuul:
        ns.shown_base_url = fuul.base_url
        await fuul.flush()
        stats = fuul.stats()
    print(
        f"sent: {stats.delivered} delivered, {stats.duplicates} duplicates, "
        f"{stats.rejected} rejected again, {stats.failed} failed"
    )
    return EXIT_OK if stats.rejected == stats.failed == 0 else EXIT_FAILED


def _purge_guard(ns: argparse.Namespace) -> None:
    if not (ns.all or ns.ids):
        raise CLIError("purge deletes for good: say --all, or --id DEDUP_ID")


def _run_file(ns: argparse.Namespace) -> int:
    if ns.action == "list":
        _print_letters(dead_letters(ns.file), pending_count(ns.file))
        return EXIT_OK
    if ns.action == "stats":
        letters = len(dead_letters(ns.file))
        print(f"{pending_count(ns.file)} event(s) waiting to be sent; {letters} dead letter(s)")
        return EXIT_OK
    if ns.action == "purge":
        _purge_guard(ns)
        print(f"purged {purge_dead_letters(ns.file, ns.ids)} dead letter(s)")
        return EXIT_OK
    print(f"moved {requeue_dead_letters(ns.file, ns.ids)} dead letter(s) back")
    return asyncio.run(_deliver(ns))


def _key_hash(ns: argparse.Namespace) -> str:
    from ..engine.redis_limiter import key_hash

    if ns.key_hash is not None and ns.action != "retry":
        if not re.fullmatch(r"[0-9a-f]{16}", ns.key_hash.lower()):
            raise CLIError("--key-hash: expected the 16 hex digits of aiofuul:<hash>:outbox")
        return str(ns.key_hash.lower())
    key = os.environ.get("FUUL_API_KEY", "")
    if not key.strip():
        raise CLIError(
            "a Redis outbox is named by a hash of its API key: set FUUL_API_KEY"
            + ("" if ns.action == "retry" else " (or give --key-hash)")
        )
    return key_hash(key)


def _redis(call: Callable[[], Coroutine[Any, Any, T]]) -> T:
    from redis.exceptions import ConnectionError, TimeoutError

    try:
        return asyncio.run(call())
    except (ConnectionError, TimeoutError, OSError) as exc:
        raise CLIError(f"cannot reach Redis: {exc}", EXIT_FAILED) from None


def _run_redis(ns: argparse.Namespace) -> int:
    from ..storage import redis_outbox_admin as admin

    url, hashed = ns.file, _key_hash(ns)
    if ns.action == "list":
        letters = _redis(lambda: admin.dead_letters(url, hashed))
        _print_letters(letters, _redis(lambda: admin.fleet_stats(url, hashed)).waiting)
    elif ns.action == "stats":
        stats = _redis(lambda: admin.fleet_stats(url, hashed))
        live = sum(c.live for c in stats.consumers)
        print(f"outbox aiofuul:{hashed}:outbox")
        oldest = f" (oldest {stats.oldest_age:.1f} s)" if stats.waiting else ""
        print(f"{stats.waiting} event(s) waiting to be sent{oldest}, "
              f"{stats.memory_bytes:,} bytes in Redis")  # fmt: skip
        if stats.consumers:
            print(f"{len(stats.consumers)} worker(s), {live} live:")
        else:
            print("no worker has joined this outbox yet")
        for c in stats.consumers:
            state = "live" if c.live else "gone: a live worker adopts what it holds"
            print(f"  {c.name}\t{c.pending} pending\t{state}")
        owned = sum(c.pending for c in stats.consumers)
        if owned < stats.waiting:
            print(f"{stats.waiting - owned} event(s) held by no worker")
        print(f"{stats.dead_letters} dead letter(s)")
    elif ns.action == "purge":
        _purge_guard(ns)
        purged = _redis(lambda: admin.purge_dead_letters(url, hashed, ns.ids))
        print(f"purged {purged} dead letter(s)")
    else:
        moved = _redis(lambda: admin.requeue_dead_letters(url, hashed, ns.ids))
        print(f"moved {moved} dead letter(s) back")
        return asyncio.run(_deliver(ns))
    return EXIT_OK


def run(ns: argparse.Namespace) -> int:
    """Do the action; raises for errors (shown by :func:`aiofuul.cli.main`)."""
    try:
        return _run_redis(ns) if is_redis_url(ns.file) else _run_file(ns)
    except FileNotFoundError as exc:
        raise CLIError(str(exc)) from None
