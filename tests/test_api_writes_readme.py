"""The Python examples of README.md's section on writing to Fuul run as written (until
the suite's README collector covers them)."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
SECTION = "## Writing to Fuul"


def _blocks() -> list[str]:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    pattern = r"(<!-- example: skip[^\n]*-->\n)?```python\n(.*?)```"
    return [m.group(2) for m in re.finditer(pattern, text[start:end], re.S) if not m.group(1)]


@pytest.mark.parametrize("code", _blocks())
def test_readme_example_runs(code: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code)
    runpy.run_path(str(script), run_name="__main__")


def test_every_write_has_an_example() -> None:
    code = "\n".join(_blocks())
    for write in ("users.set_referrer", "referral_codes.generate", "referral_codes.use",
                  "referral_codes.set_max_uses", "referral_codes.remove_referral",
                  "audiences.add", "audiences.remove", "import_referrers"):  # fmt: skip
        assert write in code
