"""The Python examples of the docs page on writes (docs/api/writes.md) and on importing
a referral graph run as written, in this process; tests/test_docs_examples.py runs them
in a subprocess too."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

PAGES = [
    Path(__file__).parent.parent / "docs" / "api" / n for n in ("writes.md", "referrers-import.md")
]


def _blocks() -> list[str]:
    text = "\n".join(page.read_text() for page in PAGES)
    pattern = r"(<!-- example: skip[^\n]*-->\n)?```python\n(.*?)```"
    return [m.group(2) for m in re.finditer(pattern, text, re.S) if not m.group(1)]


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
