"""Sessions: ``nox -s tests`` (everything, as CI runs it), ``nox -s quick`` (all but the
tests marked ``slow``: under a minute on 2 cores), ``nox -s lint`` (ruff), ``nox -s
typecheck`` (mypy --strict), ``nox -s bench`` (every benchmark, side by side with the
peers)."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite, as .ci/run runs it."""
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
def bench(session: nox.Session) -> None:
    """Every benchmark in one run; prints the Markdown table the README carries."""
    session.install("-e", ".[bench]")
    session.run("python", "benchmarks/run_all.py", *session.posargs)
