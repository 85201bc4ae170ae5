"""``python -m aiofuul``: the ``aiofuul`` command, where the script is not on the PATH."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
