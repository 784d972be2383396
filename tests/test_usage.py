"""usage_request on control: what jupyter-resource-usage shows of a kernel."""

from __future__ import annotations

import os
import shlex
import socket
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import KernelManager

from .conftest import start_kernel, stop_kernel
from .rawclient import request
from .utils import collect_iopub, execute, get_reply, run_ok, user_value, wait_for_status

MiB = 2**20


def usage(kc: BlockingKernelClient) -> dict:
    """The content of the kernel's usage_reply."""
    msg_id = request(kc, "control", "usage_request")
    reply = get_reply(kc, msg_id, channel="control")
    assert reply["msg_type"] == "usage_reply"
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply["content"]


def kernel_pid(kc: BlockingKernelClient) -> int:
    return int(user_value(kc, "__import__('os').getpid()"))


def test_reply_fields_and_types(kc: BlockingKernelClient) -> None:
    first = usage(kc)
    second = usage(kc)
    for content in (first, second):
        assert content["hostname"] == socket.gethostname()
        assert content["pid"] == kernel_pid(kc)
        assert content["cpu_count"] == psutil.cpu_count(logical=True)
        assert isinstance(content["kernel_cpu"], (int, float)) and content["kernel_cpu"] >= 0
        assert isinstance(content["kernel_memory"], int) and content["kernel_memory"] > MiB
        memory = content["host_virtual_memory"]
        assert set(memory) == set(psutil.virtual_memory()._fields)
        assert memory["total"] == psutil.virtual_memory().total
        assert all(isinstance(value, (int, float)) for value in memory.values())
    # The host's CPU is measured between two requests: the second has it.
    assert isinstance(second["host_cpu_percent"], (int, float))
    assert 0 <= second["host_cpu_percent"] <= 100


def test_kernel_cpu_counts_what_the_kernel_spent(kc: BlockingKernelClient) -> None:
    usage(kc)  # the start of the measured interval
    run_ok(
        kc, "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    )
    assert usage(kc)["kernel_cpu"] > 0


def test_kernel_memory_grows_and_shrinks_with_an_allocation(kc: BlockingKernelClient) -> None:
    before = usage(kc)["kernel_memory"]
    # b"x" * n writes every page, so they are all resident.
    run_ok(kc, f"_usage_blob = b'x' * {200 * MiB}")
    grown = usage(kc)["kernel_memory"]
    assert grown - before > 150 * MiB, (before, grown)
    run_ok(kc, "del _usage_blob")
    assert grown - usage(kc)["kernel_memory"] > 150 * MiB


def test_children_are_counted(kc: BlockingKernelClient, tmp_path: Path) -> None:
    """The memory of a process the kernel started, through a shell (a grandchild),
    counts as the kernel's until it ends."""
    ready = tmp_path / "ready"
    child = textwrap.dedent(
        f"""
        import pathlib, time
        blob = b"x" * {200 * MiB}
        pathlib.Path({str(ready)!r}).touch()
        time.sleep(120)
        """
    )
    # "; :" keeps the shell from replacing itself with the child.
    command = f"{shlex.quote(sys.executable)} -c {shlex.quote(child)}; :"
    before = usage(kc)["kernel_memory"]
    run_ok(kc, f"import subprocess\n_usage_child = subprocess.Popen(['sh', '-c', {command!r}])")
    try:
        run_ok(kc, f"import os, time\nwhile not os.path.exists({str(ready)!r}): time.sleep(0.02)")
        with_child = usage(kc)["kernel_memory"]
        assert with_child - before > 150 * MiB, (before, with_child)
    finally:
        run_ok(
            kc,
            "import psutil\n"
            "for _p in psutil.Process(_usage_child.pid).children(recursive=True): _p.kill()\n"
            "_usage_child.kill(); _usage_child.wait()",
        )
    assert with_child - usage(kc)["kernel_memory"] > 150 * MiB


def test_reply_while_the_shell_is_busy(kc: BlockingKernelClient, tmp_path: Path) -> None:
    release = tmp_path / "release"
    msg_id = kc.execute(
        f"import os, time\nwhile not os.path.exists({str(release)!r}): time.sleep(0.02)"
    )
    wait_for_status(kc, msg_id, "busy")
    try:
        content = usage(kc)
        # The cell cannot end before the file exists: the reply came while it ran.
        assert not kc.shell_channel.msg_ready()
    finally:
        release.touch()
    assert content["kernel_memory"] > 0
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    collect_iopub(kc, msg_id)


@pytest.fixture
def kernel_without_psutil(
    backend: str, tmp_path: Path
) -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    hidden = tmp_path / "hide-psutil"
    hidden.mkdir()
    (hidden / "psutil.py").write_text("raise ImportError('psutil is hidden for this test')\n")
    path = os.pathsep.join(filter(None, [str(hidden), os.environ.get("PYTHONPATH")]))
    km, kc = start_kernel(backend, env={**os.environ, "PYTHONPATH": path})
    try:
        yield km, kc
    finally:
        stop_kernel(km, kc)


def test_without_psutil(kernel_without_psutil: tuple[KernelManager, BlockingKernelClient]) -> None:
    _, kc = kernel_without_psutil
    reply, _ = execute(kc, "import psutil")
    assert reply["content"]["ename"] == "ImportError"  # the test's premise
    for _ in range(2):
        content = usage(kc)
        assert content["hostname"] == socket.gethostname()
        assert content["pid"] == kernel_pid(kc)
        assert content["cpu_count"] == os.cpu_count()
        assert "kernel_memory" not in content and "host_virtual_memory" not in content
    run_ok(kc, "1+1")
