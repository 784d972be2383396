"""Kernel life cycle: shutdown, restart, interrupts, signals, ipc transport."""

from __future__ import annotations

import ast
import os
import signal
import time
from collections.abc import Iterator

import pytest
from jupyter_client.manager import KernelManager

from .conftest import kernel_name, start_kernel, stop_kernel
from .rawclient import replies_until, request
from .utils import TIMEOUT, collect_iopub, execute, get_reply, stream_text

EXIT_TIMEOUT = 30


def drain_iopub(kc) -> None:
    while True:
        try:
            kc.get_iopub_msg(timeout=0.05)
        except Exception:
            return


def wait_exit(km: KernelManager, timeout: float = EXIT_TIMEOUT) -> int | None:
    """The kernel process's exit code once it ends on its own, or None on timeout."""
    process = km.provisioner.process
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            return code
        time.sleep(0.05)
    return None


def kernel_pid(kc) -> int:
    reply, outputs = execute(kc, "import os; print(os.getpid())")
    assert reply["content"]["status"] == "ok"
    return int("".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream"))


def record_threads_at_exit(kc, path) -> None:
    """Make the kernel write the names of its live threads to ``path`` when it exits."""
    code = (
        "import atexit, threading\n"
        f"atexit.register(lambda: open({str(path)!r}, 'w').write("
        "repr([t.name for t in threading.enumerate()])))"
    )
    assert execute(kc, code)[0]["content"]["status"] == "ok"


def akernel_threads_left(path) -> list[str]:
    names = ast.literal_eval(path.read_text())
    return [n for n in names if n.startswith("akernel")]


def wait_started(kc, msg_id: str, text: str = "started") -> None:
    """Wait until the cell ``msg_id`` has printed ``text``: it is now running user code."""
    seen = ""
    while text not in seen:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            seen += msg["content"]["text"]


# -- shutdown ------------------------------------------------------------------------------


def test_shutdown_on_control_exits_cleanly(fresh_kernel, tmp_path):
    km, kc = fresh_kernel
    threads_file = tmp_path / "threads"
    record_threads_at_exit(kc, threads_file)
    msg_id = request(kc, "control", "shutdown_request", {"restart": False})
    reply = replies_until(kc, "control", msg_id)[-1]
    assert reply["msg_type"] == "shutdown_reply"
    assert reply["content"]["status"] == "ok"
    assert reply["content"]["restart"] is False
    assert wait_exit(km) == 0
    assert akernel_threads_left(threads_file) == []


def test_shutdown_on_shell_exits_cleanly(fresh_kernel, tmp_path):
    km, kc = fresh_kernel
    threads_file = tmp_path / "threads"
    record_threads_at_exit(kc, threads_file)
    msg_id = request(kc, "shell", "shutdown_request", {"restart": False})
    reply = replies_until(kc, "shell", msg_id)[-1]
    assert reply["msg_type"] == "shutdown_reply"
    assert reply["content"]["status"] == "ok"
    assert wait_exit(km) == 0
    assert akernel_threads_left(threads_file) == []


def test_shutdown_while_cell_runs(fresh_kernel):
    km, kc = fresh_kernel
    msg_id = kc.execute("import time\nprint('started', flush=True)\ntime.sleep(1000)")
    wait_started(kc, msg_id)
    shutdown_id = request(kc, "control", "shutdown_request", {"restart": False})
    assert replies_until(kc, "control", shutdown_id)[-1]["content"]["status"] == "ok"
    assert wait_exit(km) == 0


def test_restart_kernel(fresh_kernel):
    km, kc = fresh_kernel
    old_pid = kernel_pid(kc)
    assert execute(kc, "before_restart = 1")[0]["content"]["status"] == "ok"
    km.restart_kernel(now=False)
    assert km.is_alive()
    kc.wait_for_ready(timeout=TIMEOUT)
    drain_iopub(kc)
    assert kernel_pid(kc) != old_pid
    reply, outputs = execute(kc, "print('before_restart' in globals())")
    assert reply["content"]["status"] == "ok"
    assert stream_text(outputs) == "False\n"
    reply, outputs = execute(kc, "6 * 7")
    assert reply["content"]["status"] == "ok"
    results = [m for m in outputs if m["msg_type"] == "execute_result"]
    assert results[0]["content"]["data"]["text/plain"] == "42"


# -- interrupts ----------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["signal", "message"])
def mode_kernel(request, backend) -> Iterator[tuple]:
    """A kernel per backend and interrupt mode, shared by the interrupt tests."""
    km, kc = start_kernel(backend, request.param)
    try:
        yield km, kc
    finally:
        stop_kernel(km, kc)


BLOCKING_CELLS = {
    "busy_loop": "while True:\n    pass",
    "time_sleep": "time.sleep(100)",
    "await_sleep": "await anyio.sleep(100)",
    # Interrupts land mostly inside the kernel's flush: deferred to its end.
    "flush_loop": "import sys\nwhile True:\n    sys.stdout.flush()",
}


@pytest.mark.parametrize("cell", list(BLOCKING_CELLS))
def test_interrupt_running_cell(mode_kernel, cell):
    km, kc = mode_kernel
    drain_iopub(kc)
    code = f"import time, anyio\nprint('started', flush=True)\n{BLOCKING_CELLS[cell]}"
    msg_id = kc.execute(code)
    wait_started(kc, msg_id)
    km.interrupt_kernel()
    reply = get_reply(kc, msg_id, timeout=30)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    errors = [m for m in collect_iopub(kc, msg_id) if m["msg_type"] == "error"]
    assert [e["content"]["ename"] for e in errors] == ["KeyboardInterrupt"]
    # The kernel goes on, and the interrupt does not leak into the next cell.
    reply, outputs = execute(kc, "import time\ntime.sleep(0.3)\n6 * 7")
    assert reply["content"]["status"] == "ok"
    assert any(
        m["msg_type"] == "execute_result" and m["content"]["data"]["text/plain"] == "42"
        for m in outputs
    )
    assert km.is_alive()


def test_interrupt_while_idle_is_harmless(mode_kernel):
    km, kc = mode_kernel
    drain_iopub(kc)
    if km.kernel_spec.interrupt_mode == "signal":
        # SIGINT is pending in the kernel before the next request reaches it.
        km.interrupt_kernel()
    else:
        # km.interrupt_kernel() does not wait for the interrupt_reply, and control
        # and shell are not ordered: send it ourselves and wait for the reply.
        msg_id = request(kc, "control", "interrupt_request")
        reply = replies_until(kc, "control", msg_id)[-1]
        assert reply["msg_type"] == "interrupt_reply"
        assert reply["content"]["status"] == "ok"
    reply, _ = execute(kc, "import time\ntime.sleep(0.5)\n'ok'")
    assert reply["content"]["status"] == "ok"
    assert km.is_alive()


def test_control_answers_while_shell_busy(kernel, kc, tmp_path):
    """kernel_info on control is answered while a cell blocks the shell."""
    km, _ = kernel
    release = tmp_path / "release"
    code = (
        "import os, time\n"
        "print('started', flush=True)\n"
        "deadline = time.monotonic() + 60\n"
        f"while not os.path.exists({str(release)!r}) and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        f"print(os.path.exists({str(release)!r}))"
    )
    msg_id = kc.execute(code)
    try:
        wait_started(kc, msg_id)
        info_id = request(kc, "control", "kernel_info_request")
        info = replies_until(kc, "control", info_id)[-1]
        assert info["content"]["status"] == "ok"
        assert info["content"]["implementation"] == "akernel"
    finally:
        release.touch()
    reply = get_reply(kc, msg_id, timeout=90)
    assert reply["content"]["status"] == "ok"
    # The cell saw the release file: it was still running when control answered.
    assert "True" in "".join(
        m["content"]["text"] for m in collect_iopub(kc, msg_id) if m["msg_type"] == "stream"
    )
    assert km.is_alive()


# -- signals and transports ----------------------------------------------------------------


def test_sigterm_exits_cleanly(fresh_kernel, tmp_path):
    km, kc = fresh_kernel
    threads_file = tmp_path / "threads"
    record_threads_at_exit(kc, threads_file)
    os.kill(km.provisioner.process.pid, signal.SIGTERM)
    assert wait_exit(km) == 0
    assert akernel_threads_left(threads_file) == []


def test_sigterm_while_cell_runs(fresh_kernel):
    """SIGTERM ends the kernel even when user code blocks the main thread."""
    km, kc = fresh_kernel
    msg_id = kc.execute("import time\nprint('started', flush=True)\ntime.sleep(1000)")
    wait_started(kc, msg_id)
    os.kill(km.provisioner.process.pid, signal.SIGTERM)
    assert wait_exit(km) in (0, -signal.SIGTERM)


def test_ipc_transport_end_to_end(backend):
    km = KernelManager(kernel_name=kernel_name(backend), transport="ipc")
    km.start_kernel()
    kc = km.client()
    try:
        kc.start_channels()
        kc.wait_for_ready(timeout=TIMEOUT)
        assert km.transport == "ipc"
        assert os.path.exists(f"{km.ip}-{km.shell_port}")
        reply, outputs = execute(kc, "print('over ipc')")
        assert reply["content"]["status"] == "ok"
        assert "over ipc" in "".join(
            m["content"]["text"] for m in outputs if m["msg_type"] == "stream"
        )
        msg_id = request(kc, "control", "kernel_info_request")
        assert replies_until(kc, "control", msg_id)[-1]["content"]["status"] == "ok"
        assert kc.is_alive()
        msg_id = request(kc, "control", "shutdown_request", {"restart": False})
        assert replies_until(kc, "control", msg_id)[-1]["content"]["status"] == "ok"
        assert wait_exit(km) == 0
    finally:
        stop_kernel(km, kc)
