"""Sessions: tests, conformance, demo, bench, lint.

``nox -s tests`` is the one command that sets up and runs the whole test
suite (CI runs exactly this); ``nox -s demo`` runs the demo notebook.
"""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests"]
# One core per xdist worker; this project's machines have two.
WORKERS = os.environ.get("AKERNEL_TEST_WORKERS", "2")


def _install_kernelspecs(session: nox.Session) -> None:
    session.run("akernel", "install", "--sys-prefix", silent=True)
    session.run("akernel", "install", "--sys-prefix", "--backend", "trio", silent=True)


@nox.session
def tests(session: nox.Session) -> None:
    """Install the project with its test extras and run the whole test suite."""
    session.install("-e", ".[test]")
    _install_kernelspecs(session)
    session.run("pytest", "-n", WORKERS, "--dist", "loadfile", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Register akernel and execute the example notebook with it through nbclient."""
    session.install(".", "nbclient", "nbformat", "trio")
    _install_kernelspecs(session)
    session.run("python", "examples/run_demo.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark akernel against ipykernel, side by side, in one run."""
    session.install(".[bench]", "trio")
    session.run("python", "benchmarks/bench_kernel.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "akernel", "tests", "benchmarks", "examples")
    session.run("ruff", "format", "--check", "akernel", "tests", "benchmarks", "examples")
