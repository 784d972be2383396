"""A real MPI cluster of akernel engines: ``engines="mpi"`` with akernel's engine command.

Open MPI's ``mpiexec`` starts the engines (``nox -s tests`` installs Debian's
openmpi-bin when it is missing), with the configuration docs/parallel.md gives;
the checks are those of every launcher (tests/cluster_checks.py), with MPI's:
one rank per engine, ``mpi_rank``/``mpi_size`` defined, an mpi4py allreduce
through ``%px``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from traitlets.config import Config

from akernel.engine.launcher import engine_cmd_argv

from .cluster_checks import check_cluster, summary

ENGINES = 4

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def mpiexec(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    path = shutil.which("mpiexec")
    if path is None:
        pytest.fail(
            "mpiexec not found: this test needs Open MPI"
            " (apt-get install -y openmpi-bin; nox -s tests installs it)"
        )
    if os.geteuid() == 0:
        # Open MPI refuses to run as root unless told twice (CI runs as root).
        monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT", "1")
        monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    yield path


def mpi_config(backend: str) -> Config:
    """docs/parallel.md's MPI configuration, on ``backend``."""
    c = Config()
    c.MPIEngineSetLauncher.engine_cmd = engine_cmd_argv
    c.MPIEngineSetLauncher.engine_args = [f"--backend={backend}"]
    # More ranks than this machine has cores.
    c.MPIEngineSetLauncher.mpi_args = ["--oversubscribe"]
    return c


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_mpi_cluster(mpiexec: str, backend: str, tmp_path) -> None:
    seen = check_cluster(
        tmp_path / "profile", mpi_config(backend), "mpi", ENGINES, backend, mpi=True
    )
    print(f"\n  {summary(seen)}")
    assert seen["ids"] == list(range(ENGINES))
    assert "mpiexec" in seen["processes"] or "orterun" in seen["processes"], seen["processes"]
