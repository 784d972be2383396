"""Kernel processes started on connection files the scenarios write, and the lab they share."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import zmq
from bench_kernel import KernelKind, connection_info  # benchmarks/, the script's directory

from .client import Peer
from .config import Config
from .processes import Reaper

PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


class Kernel:
    """A kernel process started on a connection file this script wrote."""

    def __init__(self, lab: Lab, kind: KernelKind, info: dict[str, Any]) -> None:
        self.lab = lab
        self.kind = kind
        stem = f"{kind.name}-{lab.next_number()}"
        self.connection_file = lab.workdir / f"{stem}.json"
        self.log_path = lab.workdir / f"{stem}.log"
        fd = os.open(self.connection_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        self.info = info
        argv = [sys.executable, *kind.argv]
        argv = [a.replace("{connection_file}", str(self.connection_file)) for a in argv]
        self.proc = lab.reaper.popen(argv, self.log_path, dict(os.environ), lab.workdir)
        self.peers: list[Peer] = []
        lab.kernels.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def exit_text(self) -> str:
        return f"exit status {self.proc.returncode}"

    def file_info(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            return json.loads(self.connection_file.read_text())
        return {}

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def peer(
        self, *, key: bytes | None = None, iopub: bool = True, info: dict | None = None
    ) -> Peer:
        peer = Peer(self.lab.ctx, info or self.info, key=key, iopub=iopub, alive=self.alive)
        self.peers.append(peer)
        return peer

    def wait_exit(self, timeout: float) -> int | None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.proc.wait(timeout)
        return None

    def wait_listening(self, port: int, timeout: float) -> bool:
        """Whether the process listens on ``port`` within ``timeout`` (False if it exits)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            with contextlib.suppress(psutil.Error):
                for conn in psutil.Process(self.pid).net_connections("tcp"):
                    if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
                        return True
            time.sleep(0.05)
        return False

    def still_runs(self, peer: Peer, timeout: float) -> str | None:
        """None if the kernel is alive and ``1+1`` gives 2; else what is wrong."""
        if not self.alive():
            return f"kernel died ({self.exit_text()})"
        run = peer.execute("1+1", timeout)
        if run.reply is None:
            if not self.alive():
                return f"kernel died ({self.exit_text()})"
            return f"1+1 unanswered in {timeout:g} s"
        results = [
            m.content.get("data", {}).get("text/plain") for m in run.of_type("execute_result")
        ]
        if run.status != "ok" or results != ["2"]:
            return f"1+1 gave {run.status} {results}"
        return None

    def stop(self) -> None:
        """Ask for a shutdown on control (with a client that signs); kill whatever is left."""
        peer = next((p for p in self.peers if p.key), None)
        if self.alive() and peer is not None:
            with contextlib.suppress(Exception):
                msg_id = peer.request("control", "shutdown_request", {"restart": False})
                if peer.wait_reply(msg_id, 3.0) is not None:
                    self.wait_exit(5.0)
        for peer in self.peers:
            peer.close()
        self.peers.clear()
        self.lab.reaper.kill(self.proc)
        self.connection_file.unlink(missing_ok=True)


class Lab:
    """What every scenario shares: the zmq context, the settings, the work directory."""

    def __init__(self, ctx: zmq.Context, cfg: Config, workdir: Path, reaper: Reaper) -> None:
        self.ctx = ctx
        self.cfg = cfg
        self.workdir = workdir
        self.reaper = reaper
        self.kernels: list[Kernel] = []
        self._counter = 0

    def next_number(self) -> int:
        self._counter += 1
        return self._counter

    def path(self, name: str) -> Path:
        return self.workdir / f"{name}-{self.next_number()}"

    def launch(self, kind: KernelKind, info: dict[str, Any] | None = None) -> Kernel:
        return Kernel(self, kind, connection_info() if info is None else info)

    def start(self, kind: KernelKind) -> tuple[Kernel, Peer]:
        """A fresh kernel that answered kernel_info, with a client whose IOPub is live."""
        kernel = self.launch(kind)
        peer = kernel.peer()
        msg_id = peer.request("shell", "kernel_info_request")
        if peer.wait_reply(msg_id, self.cfg.startup_timeout) is None:
            raise RuntimeError(
                f"{kind.name} did not start ({'alive' if kernel.alive() else kernel.exit_text()})"
                f": {kernel.log()[-500:]}"
            )
        if not peer.settle(self.cfg.startup_timeout):
            raise RuntimeError(f"{kind.name}: IOPub never became live")
        return kernel, peer

    def stop_all(self) -> None:
        for kernel in self.kernels:
            kernel.stop()
        self.kernels.clear()
