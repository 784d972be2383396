"""pytest plugin: run ipyparallel's own test suite with akernel engines.

Load it with ``-p akernel_engines`` (this folder on ``PYTHONPATH``) and run
``pytest --pyargs ipyparallel.tests``; ``nox -s ipp_suite`` does both.

ipyparallel's suite starts every engine from one list,
``ipyparallel.cluster.launcher.ipengine_cmd_argv``: ``ipyparallel.tests``
imports it for the module-scoped ``cluster`` fixture, and it is the default
of ``LocalEngineLauncher.engine_cmd`` (and so of every local, MPI and batch
launcher that ``ipp.Cluster`` builds). traitlets keeps that very list object
as the trait's default and copies it per instance, so replacing its items in
place, before any test module is imported, swaps the engine everywhere
without touching site-packages.

Options:

``--ipp-engines=akernel|ipykernel``
    which engines to start (default ``akernel``; ``ipykernel`` is the
    baseline, the suite as ipyparallel ships it).
``--ipp-backend=asyncio|trio``
    the akernel engines' event loop (default ``asyncio``).
"""

from __future__ import annotations

import sys

import pytest

AKERNEL_ENGINE = [sys.executable, "-m", "akernel.engine"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("akernel-engines", "ipyparallel's suite with akernel engines")
    group.addoption(
        "--ipp-engines",
        choices=("akernel", "ipykernel"),
        default="akernel",
        help="engines for ipyparallel's suite (default: akernel)",
    )
    group.addoption(
        "--ipp-backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="event loop of the akernel engines (default: asyncio)",
    )


def pytest_configure(config: pytest.Config) -> None:
    from ipyparallel.cluster import launcher

    if config.getoption("ipp_engines") == "akernel":
        cmd = list(AKERNEL_ENGINE)
        if config.getoption("ipp_backend") != "asyncio":
            cmd.append(f"--backend={config.getoption('ipp_backend')}")
        # In place: ipyparallel.tests and the engine_cmd trait default hold this object.
        launcher.ipengine_cmd_argv[:] = cmd
    config._ipp_engine_cmd = list(launcher.ipengine_cmd_argv)  # type: ignore[attr-defined]


def pytest_report_header(config: pytest.Config) -> str:
    return "ipyparallel engines: " + " ".join(config._ipp_engine_cmd)  # type: ignore[attr-defined]


@pytest.fixture(autouse=True, scope="session")
def _check_engine_cmd(pytestconfig: pytest.Config) -> None:
    """Fail loudly if something replaced the list instead of using it."""
    import ipyparallel.tests
    from ipyparallel.cluster import launcher

    expected = pytestconfig._ipp_engine_cmd  # type: ignore[attr-defined]
    assert ipyparallel.tests.ipengine_cmd_argv == expected
    assert launcher.LocalEngineLauncher().engine_cmd == expected
    assert launcher.LocalEngineSetLauncher().engine_cmd == expected
