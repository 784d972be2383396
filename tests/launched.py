"""``akernel launch`` subprocesses for tests, each always ended."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jupyter_client.blocking import BlockingKernelClient

from .rawclient import replies_until, request
from .utils import TIMEOUT

RUN_TIMEOUT = 60


class LaunchedKernel:
    """``akernel launch ARGS``, always ended by :meth:`close`; with ``log_dir``,
    its stderr is kept there (:attr:`stderr`)."""

    def __init__(self, *args: str, env: dict | None = None, log_dir: Path | None = None):
        self.stderr_path = log_dir / "kernel-stderr.txt" if log_dir is not None else None
        with open(self.stderr_path or os.devnull, "w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "akernel", "launch", *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL if log_dir is not None else None,
                stderr=stderr if log_dir is not None else None,
            )
        self.client: BlockingKernelClient | None = None

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path else "(stderr not kept)"

    def wait_for_file(self, path: Path, ready) -> dict:
        """The file's contents once ``ready(contents)`` holds."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                data = None
            if data is not None and ready(data):
                return data
            if self.process.poll() is not None:
                pytest.fail(f"kernel exited with {self.process.returncode}: {self.stderr}")
            time.sleep(0.05)
        pytest.fail(f"timed out waiting for {path}: {self.stderr}")

    def connect(self, path: Path) -> BlockingKernelClient:
        client = BlockingKernelClient()
        client.load_connection_file(str(path))
        client.start_channels()
        self.client = client
        client.wait_for_ready(timeout=TIMEOUT)
        return client

    def shutdown(self) -> int | None:
        """Shut down over control; the exit code, or None if it did not exit."""
        assert self.client is not None
        msg_id = request(self.client, "control", "shutdown_request", {"restart": False})
        assert replies_until(self.client, "control", msg_id)[-1]["content"]["status"] == "ok"
        try:
            return self.process.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self.client is not None:
            self.client.stop_channels()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=RUN_TIMEOUT)
