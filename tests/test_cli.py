"""The ``akernel`` command line, run as subprocesses."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq
from jupyter_client.manager import start_new_kernel

import akernel

from .conftest import stop_kernel
from .launched import RUN_TIMEOUT, LaunchedKernel
from .utils import TIMEOUT, execute, stream_text

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")


def run_akernel(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "akernel", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """A non-zero exit with exactly one line on stderr, containing ``needles``."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def write_json(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def connection_data(**overrides) -> dict:
    data = {
        "transport": "tcp",
        "ip": "127.0.0.1",
        "key": "cli-test-key",
        "signature_scheme": "hmac-sha256",
        **{f"{c}_port": 0 for c in CHANNELS},
    }
    data.update(overrides)
    return data


def wait_for(predicate, what: str, timeout: float = TIMEOUT, process=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            pytest.fail(f"kernel exited with {process.returncode} while waiting for {what}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def ports_filled(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if all(data.get(f"{c}_port") for c in CHANNELS) else None


# -- errors ---------------------------------------------------------------------------------


def test_missing_directory():
    result = run_akernel("launch", "-f", "/nonexistent-dir/x.json")
    assert_one_line_error(result, "/nonexistent-dir")


def test_bad_json_connection_file(tmp_path):
    path = write_json(tmp_path / "conn.json", "{this is not json")
    result = run_akernel("launch", "-f", str(path))
    assert_one_line_error(result, str(path))


@pytest.mark.parametrize(
    "data, needle",
    [
        (connection_data(shell_port="5555"), "shell_port"),
        (connection_data(transport="udp"), "udp"),
        ([1, 2, 3], "conn.json"),
    ],
    ids=["port-type", "transport", "not-an-object"],
)
def test_invalid_connection_file(tmp_path, data, needle):
    path = write_json(tmp_path / "conn.json", data)
    assert_one_line_error(run_akernel("launch", "-f", str(path)), needle)


def test_unknown_flag():
    assert_one_line_error(run_akernel("launch", "--bogus"), "--bogus")


def test_unknown_flag_without_launch():
    assert_one_line_error(run_akernel("--bogus"), "--bogus")


@pytest.mark.parametrize("args", [["--backend", "nope"], ["--backend=nope"]])
def test_bad_backend(args):
    assert_one_line_error(run_akernel("launch", *args), "nope")


def test_option_missing_value():
    assert_one_line_error(run_akernel("launch", "-f"), "-f")


def test_unknown_command():
    assert_one_line_error(run_akernel("frobnicate"), "frobnicate")


def test_bad_trait_value(tmp_path):
    path = write_json(tmp_path / "conn.json", connection_data())
    result = run_akernel("launch", "-f", str(path), "--Kernel.iopub_flush_interval=abc")
    assert_one_line_error(result, "iopub_flush_interval")


def test_port_in_use(tmp_path):
    blocker = socket.socket()
    try:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        path = write_json(tmp_path / "conn.json", connection_data(shell_port=port))
        line = assert_one_line_error(run_akernel("launch", "-f", str(path)), str(port))
        assert "shell" in line
    finally:
        blocker.close()


def test_unknown_profile(tmp_path):
    env = {**os.environ, "IPYTHONDIR": str(tmp_path)}
    result = run_akernel("launch", "--profile", "nosuch", env=env)
    assert_one_line_error(result, "profile 'nosuch' not found", str(tmp_path))


def test_missing_profile_dir(tmp_path):
    missing = tmp_path / "absent"
    result = run_akernel("launch", f"--profile-dir={missing}")
    assert_one_line_error(result, f"profile directory not found: {missing}")


def test_missing_extra_config_file(tmp_path):
    missing = tmp_path / "absent_config.py"
    assert_one_line_error(run_akernel("launch", "--config", str(missing)), str(missing))


def test_ignored_option_still_needs_its_value():
    assert_one_line_error(run_akernel("launch", "--hb"), "--hb")


# -- launching ------------------------------------------------------------------------------


def test_launch_ignores_what_a_manager_may_pass(tmp_path):
    """ipykernel's options akernel has no use for, and a file name (what
    ``jupyter run`` passes), are ignored with a warning; IPython's shell
    options work."""
    path = write_json(tmp_path / "conn.json", connection_data())
    kernel = LaunchedKernel(
        "-f",
        str(path),
        "script.py",
        "--hb=5000",
        "--ident",
        "someone",
        "--no-stdout",
        "--matplotlib",
        "-c",
        "from_c = 1",
        "--colors=nocolor",
        log_dir=tmp_path,
    )
    try:
        wait_for(lambda: ports_filled(path), "ports in the connection file", process=kernel.process)
        client = kernel.connect(path)
        reply, outputs = execute(client, "print(from_c, get_ipython().colors)")
        assert reply["content"]["status"] == "ok", reply["content"]
        assert stream_text(outputs) == "1 nocolor\n"
        assert kernel.shutdown() == 0
        stderr = kernel.stderr
        for ignored in ("'script.py'", "--hb=5000", "--ident someone", "--no-stdout"):
            assert f"ignoring {ignored}" in stderr or f"ignoring argument {ignored}" in stderr
    finally:
        kernel.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_jupyter_run(tmp_path, backend):
    """``jupyter run`` hands the script's name to the kernel too, then sends
    its code: the kernel must survive the name."""
    from .conftest import kernel_name

    script = tmp_path / "script.py"
    script.write_text("print('ran', 6 * 7)\n")
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("jupyter-run")),
            f"--kernel={kernel_name(backend)}",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "ran 42" in result.stdout, result.stdout + result.stderr


def test_launch_without_connection_file(tmp_path):
    runtime = tmp_path / "runtime" / "nested"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime)}
    kernel = LaunchedKernel(env=env)
    try:
        path = runtime / f"kernel-{kernel.process.pid}.json"
        data = wait_for(lambda: ports_filled(path), "the connection file", process=kernel.process)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert data["key"]
        assert data["transport"] == "tcp"
        assert len({data[f"{c}_port"] for c in CHANNELS}) == 5
        client = kernel.connect(path)
        reply, outputs = execute(client, "print('via runtime file')")
        assert reply["content"]["status"] == "ok"
        assert stream_text(outputs) == "via runtime file\n"
        assert kernel.shutdown() == 0
        assert not path.exists()
    finally:
        kernel.close()


def test_launch_fills_zero_ports_and_keeps_file(tmp_path):
    path = write_json(tmp_path / "conn.json", connection_data())
    kernel = LaunchedKernel("-f", str(path))
    try:
        wait_for(lambda: ports_filled(path), "ports in the connection file", process=kernel.process)
        client = kernel.connect(path)
        assert execute(client, "1 + 1")[0]["content"]["status"] == "ok"
        assert kernel.shutdown() == 0
        # The file was given to the kernel: it is left in place.
        assert ports_filled(path)["key"] == "cli-test-key"
    finally:
        kernel.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_launch_ipc_connection_file(short_tmp, backend):
    path = write_json(
        short_tmp / "conn.json", connection_data(transport="ipc", ip=str(short_tmp / "k"))
    )
    kernel = LaunchedKernel("-f", str(path), "--backend", backend)
    try:
        data = wait_for(lambda: ports_filled(path), "ipc ports", process=kernel.process)
        for channel in CHANNELS:
            assert os.path.exists(f"{short_tmp / 'k'}-{data[f'{channel}_port']}")
        client = kernel.connect(path)
        reply, outputs = execute(client, "print('ipc ok')")
        assert reply["content"]["status"] == "ok"
        assert stream_text(outputs) == "ipc ok\n"
        assert kernel.shutdown() == 0
    finally:
        kernel.close()


def test_version():
    result = run_akernel("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == akernel.__version__
    assert run_akernel("-V").stdout.strip() == akernel.__version__


# -- kernelspecs ----------------------------------------------------------------------------


def test_install_and_uninstall(tmp_path):
    prefix = tmp_path / "prefix"
    result = run_akernel(
        "install",
        "--prefix",
        str(prefix),
        "--name",
        "ak-cli-test",
        "--display-name",
        "AK CLI Test",
        "--backend",
        "trio",
        "--env",
        "AK_TEST_VAR",
        "hello world",
        "--interrupt-mode",
        "message",
    )
    assert result.returncode == 0, result.stderr
    spec_dir = prefix / "share" / "jupyter" / "kernels" / "ak-cli-test"
    spec = json.loads((spec_dir / "kernel.json").read_text())
    argv = spec["argv"]
    assert argv[0] == sys.executable
    assert argv[1:3] == ["-m", "akernel"]
    assert "launch" in argv
    assert argv[argv.index("-f") + 1] == "{connection_file}"
    assert argv[argv.index("--backend") + 1] == "trio"
    assert spec["display_name"] == "AK CLI Test"
    assert spec["language"] == "python"
    assert spec["interrupt_mode"] == "message"
    assert spec["env"] == {"AK_TEST_VAR": "hello world"}

    env = {
        **os.environ,
        "JUPYTER_PATH": str(prefix / "share" / "jupyter"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
    }
    result = run_akernel("uninstall", "--name", "ak-cli-test", env=env)
    assert result.returncode == 0, result.stderr
    assert not spec_dir.exists()
    assert_one_line_error(run_akernel("uninstall", "--name", "ak-cli-test", env=env), "ak-cli-test")


def test_install_defaults(tmp_path):
    result = run_akernel("install", "--prefix", str(tmp_path))
    assert result.returncode == 0, result.stderr
    spec = json.loads((tmp_path / "share/jupyter/kernels/akernel/kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    assert "--backend" not in spec["argv"]
    assert spec["interrupt_mode"] == "signal"
    assert spec["language"] == "python"
    # jupyter_client provisions CurveZMQ keys only for kernels that say they use them.
    expected = ["curve"] if zmq.has("curve") else None
    assert spec["metadata"].get("supported_encryption") == expected


def test_install_bad_argument(tmp_path):
    result = run_akernel("install", "--prefix", str(tmp_path), "--backend", "nope")
    assert_one_line_error(result, "nope")


def test_installed_kernelspec_runs(tmp_path, monkeypatch):
    prefix = tmp_path / "prefix"
    result = run_akernel(
        "install",
        "--prefix",
        str(prefix),
        "--name",
        "ak-cli-run",
        "--backend",
        "trio",
        "--env",
        "AK_TEST_VAR",
        "from-spec",
    )
    assert result.returncode == 0, result.stderr
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    km, kc = start_new_kernel(kernel_name="ak-cli-run", startup_timeout=30)
    try:
        reply, outputs = execute(kc, "import os\nprint(os.environ['AK_TEST_VAR'])")
        assert reply["content"]["status"] == "ok"
        assert stream_text(outputs) == "from-spec\n"
        # trio's own sleep only works when the kernel's loop is trio.
        reply, _ = execute(kc, "import trio\nawait trio.sleep(0)")
        assert reply["content"]["status"] == "ok"
    finally:
        stop_kernel(km, kc)
