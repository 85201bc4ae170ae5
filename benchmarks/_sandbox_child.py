"""A sandbox in a child process that reports what it received (see
``_common.SandboxProcess``): takes the options of ``python -m aiofuul.sandbox``, prints
its URL on one line, serves until a line (or EOF) arrives on stdin, then prints every
recorded request as one JSON line ``[[path, status, at, events], ...]`` and exits."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from aiofuul.sandbox.cli import add_sandbox_arguments, sandbox_from_args


async def serve(ns: argparse.Namespace) -> None:
    sb = sandbox_from_args(ns)
    await sb.start()
    try:
        print(f"sandbox listening on {sb.url}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    finally:
        await sb.stop()
    records = [[r.path, r.status, r.at, r.events] for r in sb.requests]
    sys.stdout.write(json.dumps(records) + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    add_sandbox_arguments(parser)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
