"""akernel engines started through ipyparallel's Slurm launcher, on a real one-node Slurm.

The configurations are docs/parallel.md's: plain engines, and MPI engines
(``--mpi``, srun's PMIx), on which the MPI checks run too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from traitlets.config import Config

from akernel.engine.launcher import engine_cmd_argv

from ..cluster_checks import check_cluster, summary
from .daemons import SlurmCluster

ENGINES = 4

pytestmark = pytest.mark.timeout(300)


def slurm_config(backend: str, mpi: bool) -> Config:
    c = Config()
    c.SlurmEngineSetLauncher.engine_cmd = engine_cmd_argv
    c.SlurmEngineSetLauncher.engine_args = [f"--backend={backend}"]
    if mpi:
        c.SlurmEngineSetLauncher.engine_args += ["--mpi"]
        # srun, in the batch script, reads its --mpi option from here.
        c.SlurmEngineSetLauncher.environment = {"SLURM_MPI_TYPE": "pmix"}
    return c


@pytest.fixture
def slurm_env(
    slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> SlurmCluster:
    # sbatch and scancel, run by the launcher, find the test's Slurm through it.
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.config))
    # The launcher writes its batch script, and Slurm the job's output, here.
    monkeypatch.chdir(tmp_path)
    return slurm_cluster


@pytest.mark.parametrize("mpi", [False, True], ids=["plain", "mpi"])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_slurm_engines(
    slurm_env: SlurmCluster, as_root_for_mpi: None, backend: str, mpi: bool, tmp_path: Path
) -> None:
    config = slurm_config(backend, mpi)
    seen = check_cluster(tmp_path / "profile", config, "slurm", ENGINES, backend, mpi=mpi)
    print(f"\n  {summary(seen)}")
    assert seen["ids"] == list(range(ENGINES))
    assert slurm_env.jobs() == [], "the engines' job is still known to Slurm"
