"""Selecting akernel engines in ipyparallel's launchers.

Locally, the ``akernel`` entry point; for batch systems, MPI and SSH, the
launcher's ``engine_cmd`` set to akernel's engine command (as the docs say).
Nothing is submitted: the tests look at the command lines and batch scripts
the launchers build.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ipp = pytest.importorskip("ipyparallel")
from ipyparallel.cluster import launcher as ipp_launcher  # noqa: E402
from traitlets.config import Config  # noqa: E402

from akernel.engine.launcher import AkernelEngineSetLauncher, engine_cmd_argv  # noqa: E402

ENGINE = [sys.executable, "-m", "akernel.engine"]


def test_engine_command() -> None:
    assert engine_cmd_argv == ENGINE


def test_entry_point_selects_akernel_engines(tmp_path: Path) -> None:
    cluster = ipp.Cluster(engines="akernel", profile_dir=str(tmp_path))
    assert cluster.engine_launcher_class is AkernelEngineSetLauncher
    engines = AkernelEngineSetLauncher(profile_dir=str(tmp_path), cluster_id="c1")
    # Each engine of the set is started with this command (the cluster tests
    # check the engine processes' command lines).
    assert engines.engine_cmd == ENGINE


@pytest.mark.parametrize("name", ["Slurm", "PBS", "SGE", "LSF"])
def test_batch_launcher_configured_for_akernel(tmp_path: Path, name: str) -> None:
    config = Config()
    launcher_class = getattr(ipp_launcher, f"{name}EngineSetLauncher")
    config[launcher_class.__name__].engine_cmd = engine_cmd_argv
    launcher = launcher_class(
        work_dir=str(tmp_path), config=config, profile_dir=str(tmp_path), cluster_id="c1"
    )
    launcher.write_batch_script(4)
    script = Path(launcher.batch_file).read_text()
    assert shlex.join(ENGINE) in script, script
    assert "ipyparallel.engine" not in script


def test_mpi_launcher_configured_for_akernel(tmp_path: Path) -> None:
    config = Config()
    config.MPIEngineSetLauncher.engine_cmd = engine_cmd_argv
    launcher = ipp_launcher.MPIEngineSetLauncher(
        work_dir=str(tmp_path), config=config, profile_dir=str(tmp_path)
    )
    launcher.n = 4
    args = launcher.find_args()
    at = args.index(ENGINE[0])
    assert args[at : at + 4] == [*ENGINE, "--mpi"]


def test_ssh_launcher_configured_for_akernel(tmp_path: Path) -> None:
    config = Config()
    config.SSHEngineSetLauncher.engine_cmd = engine_cmd_argv
    launcher = ipp_launcher.SSHEngineSetLauncher(
        work_dir=str(tmp_path), config=config, profile_dir=str(tmp_path)
    )
    assert launcher.engine_cmd == ENGINE


def test_engine_accepts_ipengine_flags() -> None:
    """What ipyparallel's launchers pass to an engine is accepted (the engine
    then fails only because no controller file exists, with a one-line error)."""
    done = subprocess.run(
        [
            *ENGINE,
            "--profile-dir=/nonexistent/profile",
            "--cluster-id=abc",
            "--log-level=20",
            "--InteractiveShell.colors=nocolor",
            "--mpi",
            "--timeout=1",
            "--EngineApp.wait_for_url_file=0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("IPP_")},
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "akernel engine: error: controller connection file not found:"
        " /nonexistent/profile/security/ipcontroller-abc-engine.json"
    ]


def test_engine_reads_the_profiles_ipengine_config(tmp_path: Path, monkeypatch) -> None:
    """ipengine's options in the profile's ipengine_config.py (c.IPEngine.*)
    configure akernel engines; the command line wins over them."""
    from akernel.engine.app import EngineApp

    for name in ("IPP_CLUSTER_ID", "IPP_PROFILE_DIR"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "ipengine_config.py").write_text(
        "c.IPEngine.startup_command = 'from_config = 1'\n"
        "c.IPEngine.enable_nanny = False\n"
        "c.IPEngine.timeout = 7.5\n"
    )
    import logging

    logger = logging.getLogger("akernel")  # initialize() sets up the engine's log
    saved = logger.handlers[:], logger.level, logger.propagate
    try:
        app = EngineApp()
        app.initialize([f"--profile-dir={tmp_path}", "--timeout=2"])
        assert app.startup_command == "from_config = 1"
        assert app.enable_nanny is False
        assert app.timeout == 2.0
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
        EngineApp.clear_instance()
