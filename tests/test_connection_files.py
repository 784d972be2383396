"""Connection files that would leave a kernel open or unreachable, served by
``akernel launch -f FILE`` on both backends.

A missing key is made and written back; an empty key is refused unless
``--allow-unsigned``; ports the kernel chose are written back; a file the
kernel cannot rewrite stops it with one line.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .launched import RUN_TIMEOUT, LaunchedKernel
from .rawclient import build_frames, replies_until, send_raw
from .test_security import execute_content
from .utils import execute, iopub_until_idle, stream_text

pytestmark = pytest.mark.timeout(180)

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
UNENCRYPTED = "without encryption"


@pytest.fixture
def launch(tmp_path: Path) -> Iterator:
    """Start ``akernel launch`` processes; every one is ended after the test."""
    started: list[LaunchedKernel] = []

    def start(*args: str) -> LaunchedKernel:
        kernel = LaunchedKernel(*args, log_dir=tmp_path)
        started.append(kernel)
        return kernel

    yield start
    for kernel in started:
        kernel.close()


def run_launch(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "akernel", "launch", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def write_file(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def has_ports(data: dict) -> bool:
    return all(data.get(f"{channel}_port") for channel in CHANNELS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- a missing key ------------------------------------------------------------------------


def test_missing_key_is_made_and_written_back(launch, tmp_path, backend):
    path = write_file(
        tmp_path / "conn.json",
        {"transport": "tcp", "ip": "127.0.0.1", "signature_scheme": "hmac-sha256",
         "jupyter_session": "kept.ipynb"},
    )  # fmt: skip
    kernel = launch("-f", str(path), "--backend", backend, "--log-level=INFO")
    data = kernel.wait_for_file(path, lambda d: d.get("key") and has_ports(d))
    assert "has no key" in kernel.stderr
    assert len(data["key"]) == 32 and int(data["key"], 16) >= 0
    assert data["jupyter_session"] == "kept.ipynb"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    kc = kernel.connect(path)
    # An unsigned execute, as a client without the key sends it, is dropped;
    # sent first on the same socket, it would be answered first.
    marker = tmp_path / "marker"
    bad_id, frames = build_frames(
        kc, "execute_request", execute_content(f"open({str(marker)!r}, 'w').write('ran')")
    )
    frames[1] = b""
    send_raw(kc, "shell", frames)
    good_id = kc.execute("print('signed')")
    replies = replies_until(kc, "shell", good_id)
    assert [r["parent_header"]["msg_id"] for r in replies] == [good_id]
    outputs = iopub_until_idle(kc, good_id)
    assert bad_id not in {m["parent_header"].get("msg_id") for m in outputs}
    assert stream_text(outputs) == "signed\n"
    assert not marker.exists()
    assert kernel.shutdown() == 0
    assert path.exists()  # the file was given to the kernel: it stays


# -- an empty key ---------------------------------------------------------------------------


def test_empty_key_is_refused(tmp_path):
    path = write_file(tmp_path / "conn.json", {"key": "", "ip": "127.0.0.1"})
    before = path.read_text()
    line = one_line_error(run_launch("-f", str(path)))
    assert "empty key" in line
    assert "--allow-unsigned" in line and "LaunchApp.allow_unsigned" in line
    assert path.read_text() == before


def test_empty_key_runs_with_allow_unsigned(launch, tmp_path, backend):
    path = write_file(tmp_path / "conn.json", {"key": "", "ip": "127.0.0.1"})
    kernel = launch("-f", str(path), "--allow-unsigned", "--backend", backend)
    data = kernel.wait_for_file(path, has_ports)
    assert data["key"] == ""
    kc = kernel.connect(path)
    assert kc.session.key == b""
    reply, outputs = execute(kc, "print('unsigned')")
    assert reply["content"]["status"] == "ok"
    assert stream_text(outputs) == "unsigned\n"
    assert "empty key" in kernel.stderr
    assert kernel.shutdown() == 0


# -- ports the kernel chose -----------------------------------------------------------------


@pytest.mark.parametrize("ports", ["absent", "some_zero"])
def test_chosen_ports_are_written_back(launch, tmp_path, backend, ports):
    data = {"key": "port-test-key", "ip": "127.0.0.1", "transport": "tcp"}
    given = free_port()
    if ports == "some_zero":
        data.update(shell_port=given, iopub_port=0, control_port=0)  # stdin, hb: absent
    path = write_file(tmp_path / "conn.json", data)
    kernel = launch("-f", str(path), "--backend", backend)
    written = kernel.wait_for_file(path, has_ports)
    assert len({written[f"{c}_port"] for c in CHANNELS}) == 5
    if ports == "some_zero":
        assert written["shell_port"] == given
    assert written["key"] == "port-test-key"
    kc = kernel.connect(path)
    reply, outputs = execute(kc, "print(6 * 7)")
    assert reply["content"]["status"] == "ok"
    assert stream_text(outputs) == "42\n"
    assert kernel.shutdown() == 0


def test_complete_file_is_left_as_it_is(launch, tmp_path):
    data = {f"{c}_port": free_port() for c in CHANNELS}
    data.update(key="complete", ip="127.0.0.1", transport="tcp")
    path = tmp_path / "conn.json"
    path.write_text(json.dumps(data))
    path.chmod(0o640)
    kernel = launch("-f", str(path))
    kc = kernel.connect(path)
    assert execute(kc, "1")[0]["content"]["status"] == "ok"
    assert path.read_text() == json.dumps(data)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert kernel.shutdown() == 0


# -- a file that cannot be rewritten ---------------------------------------------------------


def _drop_dac_override() -> None:
    """In the child, before exec: drop CAP_DAC_OVERRIDE from the bounding set,
    so that root's kernel process obeys file modes."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override = 24, 1
    if libc.prctl(pr_capbset_drop, cap_dac_override, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.fixture
def read_only_dir() -> Iterator[tuple[Path, dict]]:
    """A directory the kernel cannot write to, and Popen arguments that make
    it so: a privileged test process runs the kernel as ``nobody``."""
    directory = Path(tempfile.mkdtemp(prefix="ak-ro-"))
    kwargs: dict = {}
    try:
        directory.chmod(0o555)
        try:
            (directory / "probe").touch()
        except PermissionError:
            pass  # the mode holds for us
        else:
            (directory / "probe").unlink()
            if not sys.platform.startswith("linux") or os.geteuid() != 0:
                pytest.skip("cannot make a read-only directory here")
            # Root ignores modes: the kernel runs without that privilege.
            kwargs = {"preexec_fn": _drop_dac_override}
        yield directory, kwargs
    finally:
        directory.chmod(0o755)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("lacks", ["key", "ports"])
def test_file_that_cannot_be_rewritten_stops_the_kernel(read_only_dir, lacks):
    directory, kwargs = read_only_dir
    data = {f"{c}_port": free_port() for c in CHANNELS}
    data.update(key="k", ip="127.0.0.1")
    del data["key" if lacks == "key" else "hb_port"]
    path = directory / "conn.json"
    directory.chmod(0o755)
    write_file(path, data).chmod(0o644)
    directory.chmod(0o555)
    line = one_line_error(run_launch("-f", str(path), **kwargs))
    assert "cannot write connection file" in line and str(path) in line
    assert json.loads(path.read_text()) == data
    assert os.listdir(directory) == ["conn.json"]  # no temporary file left


# -- the warning about plain text over tcp ---------------------------------------------------


def test_tcp_without_curve_warns_once(launch, tmp_path):
    path = write_file(tmp_path / "conn.json", {"key": "k", "ip": "127.0.0.1"})
    kernel = launch("-f", str(path))
    kernel.wait_for_file(path, has_ports)
    kc = kernel.connect(path)
    assert execute(kc, "1")[0]["content"]["status"] == "ok"
    assert kernel.stderr.count(UNENCRYPTED) == 1, kernel.stderr
    assert kernel.shutdown() == 0


def test_ipc_does_not_warn(launch, short_tmp):
    path = write_file(
        short_tmp / "conn.json", {"key": "k", "transport": "ipc", "ip": str(short_tmp / "k")}
    )
    kernel = launch("-f", str(path))
    kernel.wait_for_file(path, has_ports)
    kc = kernel.connect(path)
    assert execute(kc, "1")[0]["content"]["status"] == "ok"
    assert UNENCRYPTED not in kernel.stderr
    assert kernel.shutdown() == 0
