"""Fixtures for the launcher tests: an sshd on 127.0.0.1 and a one-node Slurm.

This directory is collected only when a path inside it is named on the
command line (``nox -s launchers`` runs ``pytest tests/launchers``, after
installing Debian's openssh-server, slurm-wlm and munge when they are missing),
so the unit test suite leaves it out. If a daemon is missing the tests fail and
say how to install it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..collection import collected_only_when_named
from .daemons import SlurmCluster, SSHServer, slurm, sshd

HERE = Path(__file__).resolve().parent
NEEDED = {
    "/usr/sbin/sshd": "openssh-server",
    "ssh": "openssh-client",
    "munged": "munge",
    "slurmctld": "slurm-wlm",
    "slurmd": "slurm-wlm",
    "mpiexec": "openmpi-bin",
}


pytest_ignore_collect = collected_only_when_named(HERE)


def _require(*commands: str) -> None:
    missing = sorted({NEEDED[c] for c in commands if not shutil.which(c)})
    if missing:
        pytest.fail(
            f"missing: {', '.join(missing)} (apt-get install -y {' '.join(missing)};"
            " nox -s launchers installs them)"
        )
    if os.geteuid() != 0:
        pytest.fail("the launcher tests start sshd and Slurm's daemons: they run as root")


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    _require("/usr/sbin/sshd", "ssh")
    with sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    _require("munged", "slurmctld", "slurmd", "mpiexec")
    with slurm(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


@pytest.fixture
def as_root_for_mpi(monkeypatch: pytest.MonkeyPatch) -> None:
    """Open MPI refuses to run as root unless told twice (these tests run as root)."""
    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT", "1")
    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
