"""A kernel that dies is restarted on the same connection file and says how its
predecessor died; ``%recover`` brings the variables back. Both backends, real
kernel processes restarted through jupyter_client."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from .conftest import start_kernel, stop_kernel
from .utils import TIMEOUT


def _run(kc, code: str) -> tuple[str, str, str]:
    """(status, stdout, stderr) of a cell."""
    streams = {"stdout": "", "stderr": ""}

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            streams[msg["content"]["name"]] += msg["content"]["text"]

    reply = kc.execute_interactive(code, timeout=TIMEOUT, output_hook=hook)
    return reply["content"]["status"], streams["stdout"], streams["stderr"]


def _die_and_restart(km, kc, death: str | None) -> None:
    """End the kernel by ``death`` (code run in a cell, or None for SIGKILL),
    then restart it on the same connection file, as the restarter does."""
    pid = km.provisioner.process.pid
    if death is None:
        os.kill(pid, signal.SIGKILL)
    else:
        kc.execute(death)
    deadline = time.monotonic() + TIMEOUT
    while km.is_alive():
        assert time.monotonic() < deadline, "the kernel did not die"
        time.sleep(0.1)
    km.restart_kernel(now=True)
    kc.wait_for_ready(timeout=TIMEOUT)


@pytest.fixture
def kernel_pair(backend: str):
    km, kc = start_kernel(backend)
    try:
        yield km, kc
    finally:
        stop_kernel(km, kc)


CELLS = ["base = 40", "1 / 0", "total = base + 2"]


@pytest.mark.parametrize(
    ("death", "expected"),
    [
        ("import ctypes\nctypes.string_at(0)", "SIGSEGV"),
        ("import os\nos.abort()", "SIGABRT"),
        (None, "killed without a trace"),
    ],
    ids=["segfault", "abort", "sigkill"],
)
def test_report_and_recover(kernel_pair, death: str | None, expected: str) -> None:
    km, kc = kernel_pair
    for code in CELLS:
        _run(kc, code)
    _die_and_restart(km, kc, death)
    status, out, err = _run(kc, "print('first cell')")
    assert status == "ok" and out == "first cell\n"
    assert expected in err, err
    if death is not None:
        # The cell that was running, and the stack ending in the user's line.
        assert death.splitlines()[-1] in err, err
    # Shown once; %crashinfo shows it again.
    assert _run(kc, "print('second')")[2] == ""
    assert expected in _run(kc, "%crashinfo")[1]
    listed = _run(kc, "%recover --list")[1]
    assert "base = 40" in listed and "total = base + 2" in listed
    assert "1 / 0" not in listed, "a cell that failed is not replayed"
    status, out, _ = _run(kc, "%recover")
    assert status == "ok" and "recovered 2 cell(s)" in out
    assert _run(kc, "print(base, total)")[1] == "40 42\n"


def test_clean_restart_reports_nothing(kernel_pair) -> None:
    km, kc = kernel_pair
    _run(kc, "value = 1")
    km.restart_kernel(now=False)
    kc.wait_for_ready(timeout=TIMEOUT)
    assert _run(kc, "print('fresh')")[2] == ""
    assert "ended cleanly" in _run(kc, "%crashinfo")[1]


def test_journal_is_private_and_goes_with_the_kernel(kernel_pair) -> None:
    km, kc = kernel_pair
    _run(kc, "secret = 'x'")
    stem = Path(km.connection_file).with_suffix("")
    journal = stem.with_name(stem.name + ".akernel-journal")
    assert journal.exists()
    assert journal.stat().st_mode & 0o777 == 0o600
    km.shutdown_kernel(now=False)
    assert not journal.exists(), "a final shutdown leaves no journal behind"
