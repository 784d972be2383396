"""Kernel subshells (JEP 91), over the wire, on asyncio and trio.

Subshells are created, listed and deleted on the control channel; a shell
request with ``subshell_id`` in its header runs in that subshell, concurrently
with the parent shell, which may be blocked in synchronous code meanwhile.

Most tests share a kernel per backend (the ``shells`` fixture leaves it with no
subshell and its parent shell idle); those that shut it down, interrupt it or
need one that never had a subshell start their own.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from jupyter_client.blocking import BlockingKernelClient

from .conftest import start_kernel, stop_kernel
from .utils import TIMEOUT, wait_gone

SUBSHELL_THREADS = (
    "import threading\n"
    "print(sum(t.name.startswith('akernel-subshell') for t in threading.enumerate()))"
)


class Shells:
    """Requests to the parent shell or a subshell, and what comes back."""

    def __init__(self, kc: BlockingKernelClient) -> None:
        self.kc = kc
        self.iopub: list[dict[str, Any]] = []
        self.replies: dict[str, dict[str, Any]] = {}

    def control(self, msg_type: str, **content: Any) -> dict[str, Any]:
        msg = self.kc.session.msg(msg_type, content)
        self.kc.control_channel.send(msg)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                reply = self.kc.get_control_msg(timeout=1)
            except queue.Empty:
                continue
            if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                assert reply["msg_type"] == msg_type.replace("_request", "_reply")
                return reply["content"]
        raise TimeoutError(f"no reply to {msg_type}")

    def create(self) -> str:
        reply = self.control("create_subshell_request")
        assert reply["status"] == "ok", reply
        return reply["subshell_id"]

    def send(self, msg_type: str, subshell: str | None = None, **content: Any) -> str:
        msg = self.kc.session.msg(msg_type, content)
        if subshell is not None:
            msg["header"]["subshell_id"] = subshell
        self.kc.shell_channel.send(msg)
        return msg["header"]["msg_id"]

    def execute(self, code: str, subshell: str | None = None, **options: Any) -> str:
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {}}
        content["allow_stdin"] = options.pop("allow_stdin", False)
        return self.send("execute_request", subshell, **content, **options)

    def reply(self, msg_id: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while msg_id not in self.replies:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no reply to {msg_id} in {timeout} s")
            try:
                msg = self.kc.get_shell_msg(timeout=0.5)
            except queue.Empty:
                continue
            self.replies[msg["parent_header"].get("msg_id")] = msg
        return self.replies[msg_id]

    def wait_idle(self, msg_id: str, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            mine = [m for m in self.iopub if m["parent_header"].get("msg_id") == msg_id]
            if any(
                m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                for m in mine
            ):
                return mine
            if time.monotonic() > deadline:
                raise TimeoutError(f"{msg_id} not idle in {timeout} s")
            try:
                self.iopub.append(self.kc.get_iopub_msg(timeout=0.5))
            except queue.Empty:
                pass

    def wait_started(self, msg_id: str) -> None:
        """Until the cell of execute request ``msg_id`` has begun (its execute_input)."""
        deadline = time.monotonic() + TIMEOUT
        while not any(
            m["msg_type"] == "execute_input" and m["parent_header"].get("msg_id") == msg_id
            for m in self.iopub
        ):
            assert time.monotonic() < deadline, f"{msg_id} did not start"
            self.iopub.append(self.kc.get_iopub_msg(timeout=TIMEOUT))

    def stdout(self, msg_id: str) -> str:
        return "".join(
            m["content"]["text"]
            for m in self.wait_idle(msg_id)
            if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
        )

    def delete_all(self) -> None:
        """Delete every subshell, and wait until their threads have ended and the
        parent shell has answered a cell: the kernel is as a test expects to find it."""
        for subshell in self.control("list_subshell_request")["subshell_id"]:
            self.control("delete_subshell_request", subshell_id=subshell)
        deadline = time.monotonic() + TIMEOUT
        while True:
            probe = self.execute(SUBSHELL_THREADS)
            if self.reply(probe)["content"]["status"] == "ok" and self.stdout(probe) == "0\n":
                return
            assert time.monotonic() < deadline, "subshell threads outlived their deletion"
            time.sleep(0.1)


class Gate:
    """A file the test creates to let a parent-shell cell that waits for it end:
    the cell is busy for as long as the test needs, and no longer."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def wait_code(self, how: str) -> str:
        """A cell that waits for the gate (a minute at most), blocking the main
        thread (``how="sleep"``) or awaiting in the kernel's loop (``"await"``)."""
        pause = {"sleep": "time.sleep(0.02)", "await": "await anyio.sleep(0.02)"}[how]
        return (
            "import os, time, anyio\n"
            "deadline = time.monotonic() + 60\n"
            f"while not os.path.exists({str(self.path)!r}) and time.monotonic() < deadline:\n"
            f"    {pause}\n"
        )

    def open(self) -> None:
        self.path.touch()


@pytest.fixture
def shells(kc: BlockingKernelClient) -> Iterator[Shells]:
    """The module's kernel (per backend); after the test, no subshell is left."""
    shells = Shells(kc)
    yield shells
    Shells(kc).delete_all()


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    """A gate that is opened after the test whatever happened, so that the
    shared kernel's parent shell is not left waiting."""
    gate = Gate(tmp_path / "gate")
    try:
        yield gate
    finally:
        gate.open()


def test_create_list_delete(shells: Shells) -> None:
    assert shells.control("list_subshell_request") == {"status": "ok", "subshell_id": []}
    first, second = shells.create(), shells.create()
    assert first != second
    listed = shells.control("list_subshell_request")["subshell_id"]
    assert sorted(listed) == sorted([first, second])
    assert shells.control("delete_subshell_request", subshell_id=first) == {"status": "ok"}
    assert shells.control("list_subshell_request")["subshell_id"] == [second]
    again = shells.control("delete_subshell_request", subshell_id=first)
    assert again["status"] == "error" and again["ename"] == "SubshellNotFound"
    assert shells.control("delete_subshell_request")["status"] == "error"


@pytest.mark.parametrize("how", ["sleep", "await"])
def test_subshell_answers_while_the_parent_is_busy(shells: Shells, gate: Gate, how: str) -> None:
    subshell = shells.create()
    parent = shells.execute(f"{gate.wait_code(how)}print('parent done')")
    # The parent's cell has started.
    shells.wait_started(parent)
    child = shells.execute("shared = 6 * 7\nprint('from the subshell', shared)", subshell)
    # The parent's cell cannot end before the gate opens: a subshell that
    # waited for it would get no reply here.
    reply = shells.reply(child)
    assert reply["content"]["status"] == "ok"
    assert parent not in shells.replies, "the subshell waited for the parent shell"
    gate.open()
    # Each cell's output goes to its own request, whichever shell runs it.
    assert shells.stdout(child) == "from the subshell 42\n"
    assert shells.reply(parent)["content"]["status"] == "ok"
    assert shells.stdout(parent) == "parent done\n"
    # One namespace for all shells.
    check = shells.execute("print(shared)")
    assert shells.stdout(check) == "42\n"


def test_requests_in_order_within_a_subshell(shells: Shells) -> None:
    subshell = shells.create()
    ids = [
        shells.execute(f"import time; time.sleep({0.2 - n * 0.05}); print({n})", subshell)
        for n in range(4)
    ]
    for msg_id in ids:
        assert shells.reply(msg_id)["content"]["status"] == "ok"
    counts = [shells.reply(msg_id)["content"]["execution_count"] for msg_id in ids]
    assert counts == sorted(counts) and len(set(counts)) == 4
    kinds = shells.send("kernel_info_request", subshell)
    assert shells.reply(kinds)["content"]["status"] == "ok"


def test_unknown_subshell_gets_an_error_reply(fresh_kernel) -> None:
    shells = Shells(fresh_kernel[1])
    # Before any subshell was ever created (a kernel of its own), and after one
    # was created and deleted.
    for _ in range(2):
        msg_id = shells.execute("print('never')", "no-such-subshell")
        reply = shells.reply(msg_id)["content"]
        assert reply["status"] == "error" and reply["ename"] == "SubshellNotFound"
        states = [
            m["content"]["execution_state"]
            for m in shells.wait_idle(msg_id)
            if m["msg_type"] == "status"
        ]
        assert states == ["busy", "idle"]
        deleted = shells.create()
        shells.control("delete_subshell_request", subshell_id=deleted)
    assert "never" not in str(shells.iopub)


def test_stdin_from_a_subshell(shells: Shells) -> None:
    subshell = shells.create()
    msg_id = shells.execute("answer = input('name? ')", subshell, allow_stdin=True)
    request = shells.kc.get_stdin_msg(timeout=TIMEOUT)
    assert request["msg_type"] == "input_request"
    assert request["content"]["prompt"] == "name? "
    # The input request says which request (and so which subshell) asks.
    assert request["parent_header"]["msg_id"] == msg_id
    assert request["parent_header"]["subshell_id"] == subshell
    shells.kc.input("Ada")
    assert shells.reply(msg_id)["content"]["status"] == "ok"
    check = shells.execute("print(answer)")
    assert shells.stdout(check) == "Ada\n"


def test_parent_shell_after_the_hand_over(shells: Shells) -> None:
    shells.create()
    # The parent shell now gets its requests from the router: all kinds still work.
    msg_id = shells.execute("import anyio\nawait anyio.sleep(0.01)\nvalue = 5\nvalue")
    assert shells.reply(msg_id)["content"]["status"] == "ok"
    results = [m for m in shells.wait_idle(msg_id) if m["msg_type"] == "execute_result"]
    assert results[0]["content"]["data"]["text/plain"] == "5"
    complete = shells.send("complete_request", code="val", cursor_pos=3)
    assert "value" in shells.reply(complete)["content"]["matches"]
    failing = shells.execute("1 / 0")
    queued = shells.execute("print('aborted?')")
    assert shells.reply(failing)["content"]["status"] == "error"
    assert shells.reply(queued)["content"]["status"] == "aborted"


def test_shutdown_with_live_subshells(fresh_kernel) -> None:
    km, kc = fresh_kernel
    shells = Shells(kc)
    process = psutil.Process(km.provisioner.process.pid)
    busy = shells.create()
    shells.create()
    shells.execute("import anyio; await anyio.sleep(60)", busy)
    km.shutdown_kernel(now=False)
    assert wait_gone(process, timeout=30), "the kernel did not end with live subshells"


def test_subshells_leave_nothing_behind(shells: Shells) -> None:
    probe = (
        "import os, threading\n"
        "print(len(os.listdir('/proc/self/fd')),"
        " sum(t.name.startswith('akernel-subshell') for t in threading.enumerate()))"
    )
    # The router owns the socket from the first subshell on; count from here
    # (the shared kernel may have had subshells before).
    shells.create()
    first = shells.execute(probe)
    fds, threads = map(int, shells.stdout(first).split())
    assert threads == 1
    for _ in range(20):
        subshell = shells.create()
        ran = shells.execute("pass", subshell)
        assert shells.reply(ran)["content"]["status"] == "ok"
        shells.control("delete_subshell_request", subshell_id=subshell)
    deadline = time.monotonic() + TIMEOUT
    while True:
        again = shells.execute(probe)
        now_fds, now_threads = map(int, shells.stdout(again).split())
        if (now_fds, now_threads) == (fds, threads) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (now_fds, now_threads) == (fds, threads)


@pytest.mark.parametrize("mode", ["signal", "message"])
def test_interrupt_reaches_every_shell(backend: str, mode: str) -> None:
    km, kc = start_kernel(backend, interrupt_mode=mode)
    try:
        shells = Shells(kc)
        subshell = shells.create()
        waiting = shells.execute("import anyio; await anyio.sleep(60)", subshell)
        parent = shells.execute("import time; time.sleep(60)")
        deadline = time.monotonic() + TIMEOUT
        started = set()
        while started != {waiting, parent}:
            assert time.monotonic() < deadline, "the cells did not start"
            msg = kc.get_iopub_msg(timeout=TIMEOUT)
            shells.iopub.append(msg)
            if msg["msg_type"] == "execute_input":
                started.add(msg["parent_header"]["msg_id"])
        km.interrupt_kernel()
        # Both cells end with KeyboardInterrupt, long before their minute is up.
        for msg_id in (waiting, parent):
            reply = shells.reply(msg_id, timeout=20)["content"]
            assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
            # (What a failed cell's shell has queued when it is done is aborted.)
            shells.wait_idle(msg_id)
        # And both shells go on.
        for shell in (subshell, None):
            check = shells.execute("print('alive')", shell)
            assert shells.stdout(check) == "alive\n", (shell, shells.reply(check)["content"])
    finally:
        stop_kernel(km, kc)


WIDGET = """\
import ipywidgets
slider = ipywidgets.IntSlider(value=1)
seen = []
def on_value(change):
    seen.append(change["new"])
    print("observer saw", change["new"])
slider.observe(on_value, names="value")
slider.comm.comm_id
"""


def test_widget_callback_runs_while_the_parent_blocks(shells: Shells, gate: Gate) -> None:
    opened = shells.execute(WIDGET)
    assert shells.reply(opened)["content"]["status"] == "ok"
    results = [m for m in shells.wait_idle(opened) if m["msg_type"] == "execute_result"]
    comm_id = results[0]["content"]["data"]["text/plain"].strip("'")
    subshell = shells.create()  # as JupyterLab does, one for the widget comm target
    parent = shells.execute(f"{gate.wait_code('sleep')}print('parent done')")
    shells.wait_started(parent)
    # The frontend moves the slider: a comm message on the subshell.
    update = shells.send(
        "comm_msg",
        subshell,
        comm_id=comm_id,
        data={"method": "update", "state": {"value": 7}, "buffer_paths": []},
    )
    # The parent's cell cannot end before the gate opens: a callback that
    # waited for it would never be idle here.
    answered = shells.wait_idle(update)
    assert parent not in shells.replies, "the callback waited for the parent's cell"
    gate.open()
    assert "observer saw 7\n" in [m["content"].get("text") for m in answered]
    # ipywidgets echoes the new state back to the frontends, parented to the update.
    echoes = [m for m in answered if m["msg_type"] == "comm_msg"]
    assert echoes and echoes[0]["content"]["data"]["method"] == "echo_update"
    assert shells.reply(parent)["content"]["status"] == "ok"
    check = shells.execute("print(seen, slider.value)")
    assert shells.stdout(check) == "[7] 7\n"


def test_subshell_magic(shells: Shells) -> None:
    before = shells.execute("%subshell")
    lines = dict(line.split(": ", 1) for line in shells.stdout(before).splitlines())
    assert lines["subshell id"] == "None" and lines["subshell list"] == "[]"
    assert lines["thread id"] == lines["main thread id"]
    subshell = shells.create()
    inside = shells.execute("%subshell", subshell)
    lines = dict(line.split(": ", 1) for line in shells.stdout(inside).splitlines())
    assert lines["subshell id"] == subshell
    assert lines["subshell list"] == repr([subshell])
    assert lines["thread id"] != lines["main thread id"]


def test_advertised(shells: Shells) -> None:
    shell_info = shells.send("kernel_info_request")
    features = shells.reply(shell_info)["content"]["supported_features"]
    assert "kernel subshells" in features
    control_info = shells.control("kernel_info_request")
    assert "kernel subshells" in control_info["supported_features"]
