"""Every process the hostile scenarios start, so that all of them are killed at the end."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from jupyter_client.manager import KernelManager


class Reaper:
    """Every process this script starts, so that all of them are killed at the end."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.managers: list[KernelManager] = []

    def popen(self, argv: list[str], log: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own process group: the kernel's children (os.system) die with it,
                # and a Ctrl-C here reaches only this script, which then cleans up.
                start_new_session=True,
            )
        self.processes.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        """Kill the process and its group, unless it was already reaped."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        with contextlib.suppress(ValueError):
            self.processes.remove(proc)

    def manage(self, km: KernelManager) -> KernelManager:
        self.managers.append(km)
        return km

    def kill_manager(self, km: KernelManager) -> None:
        """Kill a KernelManager's kernel now and remove its files."""
        with contextlib.suppress(Exception):
            if km.has_kernel:
                km.shutdown_kernel(now=True)
        with contextlib.suppress(Exception):
            km.cleanup_resources()
        with contextlib.suppress(ValueError):
            self.managers.remove(km)

    def kill_all(self) -> None:
        for km in list(self.managers):
            self.kill_manager(km)
        for proc in list(self.processes):
            self.kill(proc)
