"""The Python examples of the docs page on reads (docs/api/reads.md) that bring their
own sandbox run as written, in this process; tests/test_docs_examples.py runs every
block of the page in a subprocess too."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

PAGE = Path(__file__).parent.parent / "docs" / "api" / "reads.md"


def _blocks() -> list[str]:
    text = PAGE.read_text()
    found = []
    for match in re.finditer(r"(<!-- example: skip[^\n]*-->\n)?```python\n(.*?)```", text, re.S):
        if match.group(1) is None and "Sandbox()" in match.group(2):
            found.append(match.group(2))
    return found


@pytest.mark.parametrize("code", _blocks())
def test_readme_example_runs(code: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code)
    runpy.run_path(str(script), run_name="__main__")


def test_every_group_has_an_example() -> None:
    code = "\n".join(_blocks())
    for group in ("users", "referral_codes", "affiliates", "leaderboards", "payouts",
                  "claim_checks", "audiences", "affiliate_portal"):  # fmt: skip
        assert f"fuul.{group}." in code
