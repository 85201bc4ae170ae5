"""The Python examples of README.md's section on reading the rest of Fuul run as
written (until the suite's README collector covers them)."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
SECTION = "## Reading the rest of Fuul"


def _blocks() -> list[str]:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    found = []
    for match in re.finditer(
        r"(<!-- example: skip[^\n]*-->\n)?```python\n(.*?)```", text[start:end], re.S
    ):
        if match.group(1) is None:
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
