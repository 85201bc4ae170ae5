"""Every ```python block of README.md and docs/**/*.md runs as written.

Each block runs in a fresh interpreter (a subprocess, a deadline of a minute that only
catches a hang), in an empty temporary directory, with ``FUUL_API_KEY`` and
``FUUL_BASE_URL`` pointing at a sandbox on loopback with the documented limits: the
default ``FuulClient()`` / ``SyncFuulClient()`` of an example talks to it. A block fails
when the interpreter exits non-zero.

Conventions: an HTML comment on the line just before the ```python fence (invisible
on GitHub) says how to run a block that is not a whole script. Options combine, e.g.
``<!-- example: name=app with=user -->``.

- ``<!-- example: skip (reason) -->``: not run; the reason is the test's skip reason
  (a Django project, a Celery broker, a name the text defines in prose...).
- ``<!-- example: with=user -->``: ``user``, the Quickstart's ``User``, is defined.
- ``<!-- example: with=fuul -->``: a fragment of the Quickstart: it runs inside
  ``async with FuulClient() as fuul:``, with ``user`` defined; top-level ``await`` works.
- ``<!-- example: with=sync-fuul -->``: ``fuul`` is a ``SyncFuulClient()``, ``user``
  is defined.
- ``<!-- example: pytest -->``: a test module, or several files each starting at a line
  ``# name.py`` (``# conftest.py`` then ``# test_x.py``): written to the directory and
  run with pytest there, with no configuration but what the block sets.
- ``<!-- example: name=NAME -->``: names the block (its test id); blocks of one file
  with the same name run as one program, in order (a module, then its use).

A test may also import a named block to drive it (the FastAPI app, below).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

from aiofuul.sandbox import Sandbox
from conftest import HANG

ROOT = Path(__file__).resolve().parent.parent
DOC_KEY = "sk_test_docs_examples"
QUICKSTART_USER = 'User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")'
#: A subprocess that has not ended after this long hangs.
DEADLINE = 60.0

_FENCE = re.compile(r"^```python\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*example:\s*(?P<body>.*?)\s*-->\s*$")
_SKIP = re.compile(r"^skip\s*\((?P<reason>.+)\)$")
_FILE_HEADER = re.compile(r"^# (?P<name>[\w/.-]+\.py)\s*$")
_WITH = ("user", "fuul", "sync-fuul")


@dataclass
class Block:
    """One ```python block and what its directive said."""

    doc: Path
    line: int  # of the fence, 1-based
    source: str
    name: str | None = None
    skip: str | None = None
    with_: str | None = None
    pytest: bool = False

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


@dataclass
class Example:
    """What runs as one program: a block, or the blocks of one name in one file."""

    blocks: list[Block] = field(default_factory=list)

    @property
    def id(self) -> str:
        first = self.blocks[0]
        return f"{first.doc.relative_to(ROOT)}:{first.name or first.line}"

    @property
    def source(self) -> str:
        return "\n\n".join(b.source for b in self.blocks)

    def option(self, attr: str) -> object:
        values = {getattr(b, attr) for b in self.blocks} - {None, False}
        assert len(values) <= 1, f"{self.id}: blocks of one name disagree on {attr}: {values}"
        return values.pop() if values else None


def _directive(block: Block, text: str) -> None:
    """Apply ``<!-- example: ... -->`` (its body is ``text``) to ``block``."""
    skip = _SKIP.match(text)
    if skip:
        block.skip = skip["reason"]
        return
    for word in text.split():
        key, _, value = word.partition("=")
        if key == "name" and value:
            block.name = value
        elif key == "with" and value in _WITH:
            block.with_ = value
        elif key == "pytest" and not value:
            block.pytest = True
        else:
            raise ValueError(f"{block.where}: unknown example directive {word!r}")


def blocks_of(doc: Path) -> Iterator[Block]:
    """The ```python blocks of ``doc``, with their directives."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        if not _FENCE.match(lines[i]):
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        block = Block(doc, start + 1, textwrap.dedent("\n".join(body)) + "\n")
        previous = lines[start - 1] if start > 0 else ""
        found = _DIRECTIVE.match(previous.strip())
        if found:
            _directive(block, found["body"])
        yield block
        i += 1


def documents() -> list[Path]:
    """README.md and every Markdown file under docs/ (when there is one)."""
    docs = ROOT / "docs"
    found = sorted(docs.rglob("*.md")) if docs.is_dir() else []
    return [ROOT / "README.md", *found]


def examples() -> list[Example]:
    """The programs to run: named blocks of one file joined, in order."""
    out: list[Example] = []
    named: dict[tuple[Path, str], Example] = {}
    for doc in documents():
        for block in blocks_of(doc):
            if block.name is None:
                out.append(Example([block]))
                continue
            key = (doc, block.name)
            if key not in named:
                named[key] = Example()
                out.append(named[key])
            named[key].blocks.append(block)
    return out


EXAMPLES = examples()


def named(name: str) -> Example:
    """The example named ``name`` (in any document)."""
    (found,) = [e for e in EXAMPLES if e.blocks[0].name == name]
    return found


# -- running one ---------------------------------------------------------------------
def script_of(example: Example) -> str:
    """The program to run: the blocks, with what their ``with=`` promises first."""
    source = example.source
    with_ = example.option("with_")
    if with_ == "user":
        return f"from aiofuul import User\nuser = {QUICKSTART_USER}\n{source}"
    if with_ == "sync-fuul":
        return f"from aiofuul import SyncFuulClient, User\nfuul = SyncFuulClient()\nuser = {QUICKSTART_USER}\n{source}"
    if with_ == "fuul":
        return textwrap.dedent(f"""\
            import ast, asyncio, inspect
            from aiofuul import FuulClient, User

            async def _main():
                async with FuulClient() as fuul:
                    space = {{"__name__": "__main__", "fuul": fuul, "user": {QUICKSTART_USER}}}
                    code = compile({source!r}, {example.id!r}, "exec",
                                   flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
                    result = eval(code, space)
                    if inspect.iscoroutine(result):
                        await result
                    assert await fuul.flush(timeout=30), "not delivered"

            asyncio.run(_main())
            """)
    return source


def write_files(source: str, directory: Path, default: str) -> list[Path]:
    """Split ``source`` at ``# name.py`` lines into files under ``directory``."""
    files: dict[str, list[str]] = {}
    current = default
    for line in source.splitlines():
        header = _FILE_HEADER.match(line)
        if header:
            current = header["name"]
            continue
        files.setdefault(current, []).append(line)
    paths = []
    for name, lines in files.items():
        if not "".join(lines).strip():
            continue
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines).strip("\n") + "\n")
        paths.append(path)
    return paths


def environment(sandbox: Sandbox) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FUUL_", "PYTEST_"))}
    env.update(FUUL_API_KEY=DOC_KEY, FUUL_BASE_URL=sandbox.url, PYTHONUNBUFFERED="1")
    return env


async def run(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), DEADLINE)
    except asyncio.TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        return -1, out.decode(errors="replace") + f"\n(killed: still running after {DEADLINE} s)"
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


@pytest_asyncio.fixture
async def docs_sandbox() -> AsyncIterator[Sandbox]:
    """The server an example's default client talks to: the documented limits."""
    async with Sandbox() as sb:
        yield sb


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
async def test_example_runs_as_written(
    example: Example, docs_sandbox: Sandbox, tmp_path: Path
) -> None:
    skip = example.option("skip")
    if skip:
        pytest.skip(f"{example.id}: {skip}")
    env = environment(docs_sandbox)
    if example.option("pytest"):
        write_files(example.source, tmp_path, "test_example.py")
        args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    else:
        path = tmp_path / "example.py"
        path.write_text(script_of(example))
        args = [sys.executable, str(path)]
    code, output = await run(args, tmp_path, env)
    assert code == 0, f"{example.id} failed (exit {code}):\n{output[-6000:]}"


# -- the collector itself ------------------------------------------------------------
def test_every_document_has_blocks_and_directives_are_known() -> None:
    # Parsing already refused unknown directives; the README and the docs have examples.
    readme = [e for e in EXAMPLES if e.blocks[0].doc.name == "README.md"]
    assert len(readme) >= 4 and len(EXAMPLES) >= 30
    assert all(e.source.strip() for e in EXAMPLES)


def test_the_skip_directive_keeps_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "<!-- example: skip (needs Django settings) -->\n```python\nimport django\n```\n"
        "<!-- example: name=app with=user -->\n```python\nx = 1\n```\n"
        "```python\n# conftest.py\na = 1\n# test_a.py\nb = 2\n```\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    skipped, app, files = blocks_of(doc)
    assert skipped.skip == "needs Django settings"
    assert (app.name, app.with_) == ("app", "user")
    written = write_files(files.source, tmp_path / "out", "test_example.py")
    assert sorted(p.name for p in written) == ["conftest.py", "test_a.py"]


# -- what an example promises, checked ----------------------------------------------
async def test_the_fastapi_example_answers_422_naming_the_field_and_the_rule(
    docs_sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpx = pytest.importorskip("httpx")
    monkeypatch.setenv("FUUL_API_KEY", DOC_KEY)
    monkeypatch.setenv("FUUL_BASE_URL", docs_sandbox.url)
    path = tmp_path / "readme_fastapi.py"
    path.write_text(named("fastapi").source)
    spec = importlib.util.spec_from_file_location("readme_fastapi", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "readme_fastapi", module)
    spec.loader.exec_module(module)
    app = module.app

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            good = await http.post(
                "/trades",
                json={"id": "1", "wallet": "0x52908400098527886E0F7030069857D2E4169EE7", "size": 2},
            )
            bad = await http.post("/trades", json={"id": "2", "wallet": "0x12", "size": 2})
            assert await app.state.fuul.flush(timeout=HANG)
    assert good.status_code == 200, good.text
    assert bad.status_code == 422, bad.text
    detail = bad.json()["detail"]
    assert detail["field"] == "user.identifier" and detail["rule"], detail
    assert docs_sandbox.stored_ids() == ["trade-1"]
