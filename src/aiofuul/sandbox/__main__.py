"""``python -m aiofuul.sandbox``: run a sandbox Fuul API until SIGINT or SIGTERM."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
