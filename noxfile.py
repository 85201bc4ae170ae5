"""Sessions: ``nox -s tests`` (everything, as CI runs it, on each supported Python found:
``tests-3.10`` ... ``tests-3.13``), ``nox -s quick`` (all but the tests marked ``slow``:
under a minute on 2 cores), ``nox -s lint`` (ruff), ``nox -s typecheck`` (mypy --strict),
``nox -s docs`` (mkdocs build --strict), ``nox -s wheel`` (build and check the wheel),
``nox -s bench`` (every benchmark, side by side with the peers).

pytest's exit 5 ("no tests ran") fails a session like any other non-zero exit: a
filter that selects nothing is a mistake, not a pass."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

#: The Pythons the package claims (pyproject's classifiers); nox skips one not installed
#: (with --error-on-missing-interpreters, it fails instead).
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite, as .ci/run runs it, on one Python (``nox -s tests-3.12``)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def quick(session: nox.Session) -> None:
    """The tests not marked ``slow``: what to run between edits (CI runs ``tests``)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-m", "not slow", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and format check."""
    session.install("ruff>=0.4")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", ".[lint]")
    session.run("mypy", "--strict", "src")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, refusing any warning (a broken link, a missing reference)."""
    session.install("-e", ".[docs]")
    session.run(
        "mkdocs",
        "build",
        "--strict",
        "--site-dir",
        f"{session.create_tmp()}/site",
        env={"NO_MKDOCS_2_WARNING": "1"},  # Material's banner about its successor
    )


@nox.session
def wheel(session: nox.Session) -> None:
    """Build the sdist and wheel, check them, and smoke-test the wheel in a fresh venv."""
    session.install(".[release]")
    session.run("bash", ".ci/check-wheel", external=True)


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark in one run; prints the Markdown table docs/benchmarks.md carries."""
    session.install("-e", ".[bench]")
    session.run("python", "benchmarks/run_all.py", *session.posargs)
