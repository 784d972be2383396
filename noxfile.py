"""Sessions: tests, e2e, conformance, demo, bench, lint.

``nox -s tests`` sets up and runs the whole test suite and ``nox -s e2e``
drives akernel in JupyterLab in a headless Chromium (CI runs both, in this
order); ``nox -s demo`` runs the demo notebook.
"""

from __future__ import annotations

import os
import shutil

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests"]
# One core per xdist worker; this project's machines have two.
WORKERS = os.environ.get("AKERNEL_TEST_WORKERS", "2")
CHROMIUM = "/usr/bin/chromium"


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
def e2e(session: nox.Session) -> None:
    """Drive akernel in JupyterLab in a headless Chromium, on both backends.

    Needs Debian's ``chromium`` at /usr/bin/chromium, installed here with
    apt-get when missing and running as root; Playwright drives it, so no
    browser is downloaded.
    """
    if not os.path.exists(CHROMIUM) and shutil.which("apt-get") and os.geteuid() == 0:
        apt_env = {"DEBIAN_FRONTEND": "noninteractive"}
        session.run("apt-get", "update", external=True, env=apt_env)
        session.run("apt-get", "install", "-y", "chromium", external=True, env=apt_env)
    session.install(
        ".",
        # The test finds its way in JupyterLab 4's and ipywidgets 8's pages.
        "jupyterlab>=4,<5",
        "ipywidgets>=8,<9",
        "matplotlib",
        "nbformat",
        "playwright",
        "pytest",
        "pytest-timeout",
        "sniffio",
        "trio",
    )
    _install_kernelspecs(session)
    session.run("pytest", "tests/e2e", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Register akernel and execute the example notebook with it through nbclient,
    then run an ipyparallel cluster of akernel engines."""
    session.install(".[parallel]", "nbclient", "nbformat", "trio", "numpy")
    _install_kernelspecs(session)
    session.run("python", "examples/run_demo.py", *session.posargs)
    session.run("python", "examples/run_cluster_demo.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark akernel against ipykernel, side by side, in one run: the kernel,
    then ipyparallel clusters of akernel and ipykernel engines."""
    session.install(".[bench,parallel]", "trio", "numpy")
    session.run("python", "benchmarks/bench_kernel.py", *session.posargs)
    quick = ["--quick"] if "--quick" in session.posargs else []
    session.run("python", "benchmarks/bench_parallel.py", *quick)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "akernel", "tests", "benchmarks", "examples")
    session.run("ruff", "format", "--check", "akernel", "tests", "benchmarks", "examples")
