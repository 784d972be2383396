"""akernel engines started through ipyparallel's SSH launcher, on a real sshd.

The configuration is docs/parallel.md's, with the test's own ssh client
configuration (a user would have it in ``~/.ssh/config``) and a remote
profile directory apart from the local one (on one machine, scp would
otherwise copy each connection file onto itself).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from traitlets.config import Config

from ..cluster_checks import check_cluster, summary
from .daemons import SSHServer

ENGINES = 2

pytestmark = pytest.mark.timeout(300)


def ssh_config(server: SSHServer, backend: str, remote_profile_dir: Path) -> Config:
    c = Config()
    # docs/parallel.md: the remote interpreter, for the engines and for the
    # launcher's own helper commands (remote_python: "python3" by default).
    c.SSHEngineSetLauncher.engines = {server.host: ENGINES}
    c.SSHEngineSetLauncher.remote_python = sys.executable
    c.SSHEngineSetLauncher.engine_cmd = [sys.executable, "-m", "akernel.engine"]
    c.SSHEngineSetLauncher.engine_args = [f"--backend={backend}"]
    # This test's sshd.
    c.SSHEngineSetLauncher.ssh_args = ["-F", str(server.client_config)]
    c.SSHEngineSetLauncher.scp_args = ["-F", str(server.client_config)]
    c.SSHEngineSetLauncher.remote_profile_dir = str(remote_profile_dir)
    return c


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ssh_engines(ssh_server: SSHServer, backend: str, tmp_path: Path) -> None:
    config = ssh_config(ssh_server, backend, tmp_path / "remote-profile")
    seen = check_cluster(tmp_path / "profile", config, "ssh", ENGINES, backend)
    print(f"\n  {summary(seen)}")
    assert seen["ids"] == list(range(ENGINES))
    # The engines came through sshd (the launcher's remote helper started them).
    assert (tmp_path / "remote-profile" / "security").is_dir()
