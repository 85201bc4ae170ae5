"""The README stays short and its links into the documentation site land on pages that
exist: mkdocs checks the links between pages, but not the README's, which point at the
published site (the README is also the package's description on PyPI)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SITE = "https://aiofuul.github.io/aiofuul/"


def test_the_readme_is_under_250_lines() -> None:
    assert len(README.read_text().splitlines()) < 250


def test_every_link_into_the_site_names_a_docs_page() -> None:
    links = set(re.findall(re.escape(SITE) + r"([\w/-]*)", README.read_text()))
    assert len(links) >= 10
    for path in links:
        page = path.strip("/")
        candidates = [ROOT / "docs" / f"{page}.md", ROOT / "docs" / page / "index.md"]
        if not page:
            candidates = [ROOT / "docs" / "index.md"]
        assert any(c.is_file() for c in candidates), f"{SITE}{path}: no page in docs/"


def test_the_site_url_is_the_one_mkdocs_publishes() -> None:
    assert f"site_url: {SITE}\n" in (ROOT / "mkdocs.yml").read_text()
