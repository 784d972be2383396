"""pytest plugin: run ipyparallel's own test suite with akernel engines.

Load it with ``-p akernel_engines`` (this folder on ``PYTHONPATH``) and run
``pytest --pyargs ipyparallel.tests -o asyncio_mode=auto`` from an empty
directory (the suite needs pytest-asyncio in auto mode: its conftest marks
coroutine tests only after collection); ``nox -s ipp_suite`` does all that.

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
``--ipp-hang-timeout=SECONDS``
    fail a test still running after this long (default 60, 0: never; the
    slowest test takes about 11 s with ipykernel engines on two cores).
    pytest-timeout's signal method rides on SIGALRM, which the suite takes
    for itself: ClusterTestCase arms its own 30 s alarm, and test_magics'
    keyboard-interrupt tests re-arm it for 2 s, after which nothing bounds
    them: a request an engine never answers would hang the whole run. This
    watchdog interrupts the main thread with SIGUSR2 instead, so such a test
    fails and the run goes on.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Generator

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
        "--ipp-hang-timeout",
        type=float,
        default=60.0,
        help="fail a test still running after this many seconds (0: never; default 60)",
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
    if config.getoption("ipp_hang_timeout") > 0:
        signal.signal(signal.SIGUSR2, _hang_handler)
    # test_mpi starts its controller and engines with mpiexec: more ranks than this
    # machine's two cores, and, as root (CI), Open MPI wants to be told twice.
    os.environ.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
    if os.geteuid() == 0:
        os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # test_slurm is written for ipyparallel's own Slurm test cluster (containers that
    # share /data); where sbatch exists without it, every test fails in setup.
    # akernel engines under a real Slurm: tests/launchers (nox -s launchers).
    skip = pytest.mark.skip(reason="needs ipyparallel's Slurm test cluster (its /data share)")
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__ == "ipyparallel.tests.test_slurm":
            item.add_marker(skip)


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


class TestHang(Exception):
    """A test outlived --ipp-hang-timeout."""


_running: dict[str, str] = {}


def _hang_handler(signum: int, frame: object) -> None:
    raise TestHang(f"{_running.get('nodeid', 'the test')} hung (--ipp-hang-timeout)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    limit = item.config.getoption("ipp_hang_timeout")
    if limit <= 0:
        yield
        return
    done = threading.Event()
    main = threading.main_thread().ident

    def watch() -> None:
        # Interrupt again every 30 s, in case the first one was swallowed.
        wait = limit
        while not done.wait(wait):
            sys.stderr.write(f"\n*** {item.nodeid} still running after {limit:.0f}s\n")
            signal.pthread_kill(main, signal.SIGUSR2)  # type: ignore[arg-type]
            wait = 30

    _running["nodeid"] = item.nodeid
    watcher = threading.Thread(target=watch, name="ipp-hang-watchdog", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
