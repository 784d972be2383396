"""SIGTERM in the middle of a cell: what the cell printed is delivered, then
the kernel dies of the signal, with no reply, so that clients see a dead
kernel (nbclient raises ``DeadKernelError``), not an interrupted cell."""

from __future__ import annotations

import signal

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from .conftest import kernel_name
from .utils import TIMEOUT, wait_for_status

# Printed without a newline, and the signal follows at once: the text is
# still in the kernel's output buffer when the signal lands.
KILLED_CELL = (
    "import os, signal, time\n"
    "print('printed before', end='')\n"
    "os.kill(os.getpid(), signal.SIGTERM)\n"
    "time.sleep(30)\n"
    "print('never')\n"
)


def exit_status(km, timeout: float = TIMEOUT) -> int:
    return km.provisioner.process.wait(timeout=timeout)


def test_sigterm_during_a_cell_ends_the_process_by_it(fresh_kernel) -> None:
    km, kc = fresh_kernel
    msg_id = kc.execute(KILLED_CELL)
    assert exit_status(km) == -signal.SIGTERM
    outputs = []
    while True:
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except Exception:
            break
        if msg["parent_header"].get("msg_id") == msg_id:
            outputs.append(msg)
    streams = [m["content"]["text"] for m in outputs if m["msg_type"] == "stream"]
    assert "".join(streams) == "printed before", outputs
    # No KeyboardInterrupt shown, no reply: the kernel died in the cell.
    assert "error" not in [m["msg_type"] for m in outputs]
    assert not kc.shell_channel.msg_ready()


def test_sigterm_from_outside_during_a_cell(fresh_kernel) -> None:
    km, kc = fresh_kernel
    msg_id = kc.execute("import time\nprint('started', flush=True)\ntime.sleep(1000)")
    wait_for_status(kc, msg_id, "busy")
    while True:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["msg_type"] == "stream" and "started" in msg["content"]["text"]:
            break
    km.provisioner.process.send_signal(signal.SIGTERM)
    assert exit_status(km) == -signal.SIGTERM
    assert not kc.shell_channel.msg_ready()


def test_sigterm_while_idle_is_a_clean_stop(fresh_kernel) -> None:
    km, kc = fresh_kernel
    kc.kernel_info()
    assert kc.get_shell_msg(timeout=TIMEOUT)["content"]["status"] == "ok"
    km.provisioner.process.send_signal(signal.SIGTERM)
    assert exit_status(km) == 0


@pytest.mark.timeout(120)
def test_nbclient_sees_a_dead_kernel(backend: str) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell(KILLED_CELL),
        nbformat.v4.new_code_cell("print('not run')"),
    ]
    client = NotebookClient(
        notebook, kernel_name=kernel_name(backend), timeout=60, startup_timeout=60
    )
    with pytest.raises(DeadKernelError):
        client.execute()
    killed = notebook.cells[1]
    texts = [o.get("text", "") for o in killed.outputs if o["output_type"] == "stream"]
    assert "".join(texts) == "printed before", killed.outputs
    assert notebook.cells[2].outputs == []
