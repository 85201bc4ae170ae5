"""``python -m aiofuul.cli``: the ``aiofuul`` command without the installed script."""

from __future__ import annotations

from . import main

if __name__ == "__main__":
    raise SystemExit(main())
