"""``aiofuul send``: one event through ``POST /v1/events``, with retries."""

from __future__ import annotations

import argparse
import asyncio

from ..wire.models import User
from ._common import EXIT_OK, add_client_arguments, open_client
from ._output import wrap
from ._values import ARG_VALUE_RULES, TIMESTAMP_RULES, parse_key_value, timestamp_arg

__all__ = ["DESCRIPTION", "HELP", "NAME", "configure", "run"]

_DESCRIPTION = f"""\
Send one event and print the outcome: 'created' (the server stored it) or
'duplicate' (it already had this dedup id: the event exists). Both exit 0.

{wrap("--arg values: " + ARG_VALUE_RULES + ".")}

example:
  aiofuul send deposit --user 0x52908400098527886E0F7030069857D2E4169EE7 \\
      --type evm_address --arg chain_id=1 --arg tx:str=0xabc --dedup-id dep-0xabc"""


def add_user_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--user ID --type TYPE``."""
    parser.add_argument("--user", required=required, metavar="ID", help="the user's identifier")
    parser.add_argument(
        "--type",
        required=required,
        dest="identifier_type",
        metavar="TYPE",
        help="its type: evm_address, solana_address, xrpl_address, sui_address, "
        "stellar_address or email",
    )


NAME = "send"
HELP = "send one event"
DESCRIPTION = _DESCRIPTION


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``aiofuul send``."""
    parser.add_argument("name", metavar="NAME", help="the event (trigger) name")
    add_user_arguments(parser)
    parser.add_argument(
        "--arg",
        dest="args",
        action="append",
        type=parse_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="an event argument (repeatable); typed as described above",
    )
    parser.add_argument(
        "--dedup-id",
        default=None,
        metavar="ID",
        help="the event's unique id (default: a random one; give your own so that a "
        "retry of this command cannot create a second event)",
    )
    parser.add_argument(
        "--timestamp",
        type=timestamp_arg,
        default=None,
        metavar="TIME",
        help=f"when it happened: {TIMESTAMP_RULES} (default: the server's clock)",
    )
    add_client_arguments(parser)
    parser.set_defaults(run=run)


async def _send(ns: argparse.Namespace) -> int:
    async with open_client(ns) as fuul:
        ns.shown_base_url = fuul.base_url
        result = await fuul.send_event(
            ns.name,
            User(ns.user, ns.identifier_type),
            dedup_id=ns.dedup_id,
            args=dict(ns.args) if ns.args else None,
            timestamp=ns.timestamp,
        )
    outcome = "duplicate" if result.duplicate else "created"
    print(f"{outcome} dedup_id={result.dedup_id}")
    return EXIT_OK


def run(ns: argparse.Namespace) -> int:
    """Send the event; raises for errors (shown by :func:`aiofuul.cli.main`)."""
    return asyncio.run(_send(ns))
