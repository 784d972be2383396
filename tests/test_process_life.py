"""The kernel process's life: a dying parent, SIGTERM, and interrupts at awkward moments.

Every kernel here is a real process; each test kills what it started, whatever
happens (try/finally), and never relies on how long something takes.
"""

from __future__ import annotations

import ast
import os
import queue
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.connect import write_connection_file
from jupyter_client.manager import KernelManager

import akernel

from .conftest import start_kernel, stop_kernel
from .rawclient import replies_until, request
from .utils import (
    TIMEOUT,
    collect_iopub,
    execute,
    get_reply,
    iopub_until_idle,
    is_gone,
    is_idle_of,
    stream_text,
    wait_gone,
)

EXIT_TIMEOUT = 30


# -- processes ------------------------------------------------------------------------------


def kill_quietly(pid: int | None) -> None:
    """SIGKILL ``pid`` if it still runs (cleanup after a failed test)."""
    if pid is None:
        return
    try:
        process = psutil.Process(pid)
        if not is_gone(process):
            process.kill()
    except psutil.NoSuchProcess:
        pass


def kernel_argv(backend: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "akernel", "launch", "--backend", backend, *args]


def connect(connection_file: str | Path) -> BlockingKernelClient:
    """A started client for ``connection_file``, once the kernel answers.

    No heartbeat channel: without a kernel manager, the client would take a
    kernel still starting up on a busy machine for a dead one.
    """
    kc = BlockingKernelClient()
    kc.load_connection_file(str(connection_file))
    kc.start_channels(hb=False)
    try:
        kc.wait_for_ready(timeout=30)
    except BaseException:
        kc.stop_channels()
        raise
    return kc


def new_connection_file(path: Path) -> Path:
    """A connection file with free tcp ports on localhost."""
    write_connection_file(str(path), ip="127.0.0.1", key=uuid.uuid4().hex.encode())
    return path


def wait_started(kc: BlockingKernelClient, msg_id: str, text: str = "started") -> None:
    """Wait until cell ``msg_id`` printed ``text``: it is now running user code."""
    seen = ""
    while text not in seen:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            seen += msg["content"]["text"]


def record_threads_at_exit(kc: BlockingKernelClient, path: Path) -> None:
    """Make the kernel write the names of its live threads to ``path`` when it exits."""
    code = (
        "import atexit, threading\n"
        f"atexit.register(lambda: open({str(path)!r}, 'w').write("
        "repr([t.name for t in threading.enumerate()])))"
    )
    assert execute(kc, code)[0]["content"]["status"] == "ok"


def akernel_threads_left(path: Path) -> list[str]:
    return [n for n in ast.literal_eval(path.read_text()) if n.startswith("akernel")]


# -- (a) the parent process dies ------------------------------------------------------------

# The intermediate parent: starts the kernel (argv[2:]) with JPY_PARENT_PID set to its
# own pid, its output to the log file argv[1]; prints the kernel's pid; then waits.
PARENT_CODE = """\
import os, subprocess, sys, time
with open(sys.argv[1], "w") as log:
    kernel = subprocess.Popen(
        sys.argv[2:],
        env={**os.environ, "JPY_PARENT_PID": str(os.getpid())},
        stdin=subprocess.DEVNULL, stdout=log, stderr=log,
    )
print(kernel.pid, flush=True)
time.sleep(1000)
"""


def read_line(pipe, timeout: float = TIMEOUT) -> str:
    ready, _, _ = select.select([pipe], [], [], timeout)
    assert ready, "the intermediate parent printed nothing"
    return pipe.readline()


BUSY_STATES = {
    "idle": None,
    "sleeping_cell": "import time\nprint('started', flush=True)\ntime.sleep(1000)",
    "busy_loop": "print('started', flush=True)\nwhile True:\n    pass",
    "waiting_for_input": "print('started', flush=True)\ninput('never answered: ')",
}


@pytest.mark.parametrize("state", list(BUSY_STATES))
def test_kernel_exits_when_parent_is_killed(backend: str, tmp_path: Path, state: str) -> None:
    """SIGKILL the process that started the kernel (its JPY_PARENT_PID): the kernel exits."""
    connection_file = new_connection_file(tmp_path / "kernel.json")
    log = tmp_path / "kernel.log"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            PARENT_CODE,
            str(log),
            *kernel_argv(backend, "-f", str(connection_file)),
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    kernel_pid = None
    kc = None
    try:
        kernel_pid = int(read_line(parent.stdout))
        kernel = psutil.Process(kernel_pid)
        assert kernel.ppid() == parent.pid
        kc = connect(connection_file)
        code = BUSY_STATES[state]
        if code is not None:
            msg_id = kc.execute(code, allow_stdin=True)
            wait_started(kc, msg_id)
        parent.kill()
        parent.wait()
        assert wait_gone(kernel), f"kernel outlived its parent; its log:\n{log.read_text()}"
    finally:
        if kc is not None:
            kc.stop_channels()
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
        kill_quietly(kernel_pid)


def test_kernel_exits_when_watched_process_dies(backend: str, tmp_path: Path) -> None:
    """JPY_PARENT_PID naming a process that is not the kernel's parent: its death ends
    the kernel too, cleanly (exit code 0)."""
    connection_file = new_connection_file(tmp_path / "kernel.json")
    watched = subprocess.Popen(["sleep", "1000"])
    kernel = subprocess.Popen(
        kernel_argv(backend, "-f", str(connection_file)),
        env={**os.environ, "JPY_PARENT_PID": str(watched.pid)},
        stdin=subprocess.DEVNULL,
    )
    kc = None
    try:
        kc = connect(connection_file)
        watched.kill()
        watched.wait()  # reaped: the pid no longer exists
        assert kernel.wait(timeout=EXIT_TIMEOUT) == 0
    finally:
        if kc is not None:
            kc.stop_channels()
        for process in (watched, kernel):
            process.kill()
            process.wait()


def test_unusable_parent_pid_is_ignored(backend: str, tmp_path: Path) -> None:
    """A JPY_PARENT_PID that is not a number does not stop the kernel from serving."""
    connection_file = new_connection_file(tmp_path / "kernel.json")
    kernel = subprocess.Popen(
        kernel_argv(backend, "-f", str(connection_file)),
        env={**os.environ, "JPY_PARENT_PID": "not-a-pid"},
        stdin=subprocess.DEVNULL,
    )
    kc = None
    try:
        kc = connect(connection_file)
        reply, outputs = execute(kc, "print('serving')")
        assert reply["content"]["status"] == "ok"
        assert stream_text(outputs) == "serving\n"
        assert kernel.poll() is None
    finally:
        if kc is not None:
            kc.stop_channels()
        kernel.kill()
        kernel.wait()


# -- (b) SIGTERM ----------------------------------------------------------------------------

_CONNECT_HINT = re.compile(r"--existing (\S+\.json)")


def launch_without_connection_file(
    backend: str, runtime_dir: Path, log: Path, *args: str
) -> tuple[subprocess.Popen, Path]:
    """``akernel launch`` with no -f: it writes its own connection file in ``runtime_dir``."""
    runtime_dir.mkdir(parents=True, exist_ok=True)
    with log.open("w") as log_file:
        kernel = subprocess.Popen(
            kernel_argv(backend, *args),
            env={**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime_dir)},
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
    deadline = time.monotonic() + TIMEOUT
    while True:
        match = _CONNECT_HINT.search(log.read_text())
        if match:
            return kernel, Path(match.group(1))
        if kernel.poll() is not None or time.monotonic() > deadline:
            kernel.kill()
            kernel.wait()
            raise AssertionError(f"no connection file announced:\n{log.read_text()}")
        time.sleep(0.05)


SIGTERM_STATES = {
    "idle": None,
    "sleeping_cell": "import time\nprint('started', flush=True)\ntime.sleep(1000)",
    # A child process of user code holds the kernel's stdout and stderr open.
    "child_process": "import subprocess\n"
    "child = subprocess.Popen(['sleep', '1000'])\n"
    "print('started', child.pid, flush=True)",
}


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
@pytest.mark.parametrize("state", list(SIGTERM_STATES))
def test_sigterm_cleans_up(backend: str, tmp_path: Path, state: str, transport: str) -> None:
    """SIGTERM: the kernel exits, removes the connection file (and ipc sockets) it
    created, and leaves no thread of its own running."""
    runtime = tmp_path / "runtime"
    log = tmp_path / "kernel.log"
    kernel, connection_file = launch_without_connection_file(
        backend, runtime, log, "--transport", transport
    )
    threads_file = tmp_path / "threads"
    kc = None
    child_pid = None
    try:
        assert connection_file.parent == runtime
        assert connection_file.exists()
        kc = connect(connection_file)
        record_threads_at_exit(kc, threads_file)
        assert psutil.Process(kernel.pid).children() == []
        cell = SIGTERM_STATES[state]
        if cell is not None:
            msg_id = kc.execute(cell)
            seen = ""
            while "started" not in seen:
                msg = kc.get_iopub_msg(timeout=TIMEOUT)
                if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                    seen += msg["content"]["text"]
            if state == "child_process":
                child_pid = int(seen.split()[1].strip())
                get_reply(kc, msg_id)
        created = sorted(p.name for p in runtime.iterdir())
        kernel.send_signal(signal.SIGTERM)
        exit_code = kernel.wait(timeout=EXIT_TIMEOUT)
        assert exit_code in (0, -signal.SIGTERM), log.read_text()
        if state == "idle":
            assert exit_code == 0, log.read_text()
        assert not connection_file.exists()
        left = sorted(p.name for p in runtime.iterdir())
        assert left == [], f"created {created}, left behind {left}"
        assert akernel_threads_left(threads_file) == []
    finally:
        if kc is not None:
            kc.stop_channels()
        kernel.kill()
        kernel.wait()
        kill_quietly(child_pid)


# -- (c) interrupts -------------------------------------------------------------------------


class KernelSlot:
    """A kernel shared by the tests of one backend and interrupt mode.

    A test that leaves it dead or stuck gets it replaced, so one failure does
    not cascade into the tests after it.
    """

    def __init__(self, backend: str, mode: str) -> None:
        self.backend = backend
        self.mode = mode
        self.km: KernelManager | None = None
        self.kc: BlockingKernelClient | None = None

    def _drain(self) -> None:
        kc = self.kc
        assert kc is not None
        for get in (kc.get_iopub_msg, kc.get_stdin_msg, kc.get_shell_msg, kc.get_control_msg):
            while True:
                try:
                    get(timeout=0.05)
                except queue.Empty:
                    break

    def _usable(self) -> bool:
        """Alive, answering, and with channels that still parse (no corrupt frames)."""
        assert self.km is not None and self.kc is not None
        if not self.km.is_alive():
            return False
        try:
            get_reply(self.kc, self.kc.kernel_info(), timeout=10)
            self._drain()
        except Exception:  # queue.Empty, or ValueError for frames that do not parse
            return False
        return True

    def get(self) -> tuple[KernelManager, BlockingKernelClient]:
        if self.km is not None and not self._usable():
            self.close()
        if self.km is None:
            self.km, self.kc = start_kernel(self.backend, self.mode)
            self._drain()
        assert self.kc is not None
        return self.km, self.kc

    def close(self) -> None:
        if self.km is not None and self.kc is not None:
            stop_kernel(self.km, self.kc)
        self.km = self.kc = None


@pytest.fixture(scope="module", params=["signal", "message"])
def slot(request: pytest.FixtureRequest, backend: str) -> Iterator[KernelSlot]:
    kernel_slot = KernelSlot(backend, request.param)
    try:
        yield kernel_slot
    finally:
        kernel_slot.close()


@pytest.fixture
def mode_kernel(slot: KernelSlot) -> tuple[KernelManager, BlockingKernelClient]:
    return slot.get()


def interrupt(km: KernelManager, kc: BlockingKernelClient) -> None:
    """Interrupt the kernel the way its kernelspec says: SIGINT, or interrupt_request.

    Interrupt requests go through ``kc``: the manager's own requests reuse the
    client's session id with a separate counter, so their msg_ids can equal the
    client's, and IOPub messages would be attributed to the wrong request.
    """
    if km.kernel_spec.interrupt_mode == "message":
        request(kc, "control", "interrupt_request")
    else:
        km.interrupt_kernel()


def assert_interrupted(kc: BlockingKernelClient, msg_id: str) -> list[dict]:
    """The cell ``msg_id`` ended with KeyboardInterrupt; its IOPub messages.

    IOPub is read first: a client that stops reading it while the kernel
    floods it with output is, by design, a client that loses messages.
    """
    outputs = collect_iopub(kc, msg_id, timeout=EXIT_TIMEOUT)
    reply = get_reply(kc, msg_id, timeout=EXIT_TIMEOUT)
    assert reply["content"]["status"] == "error", reply["content"]
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    errors = [m["content"]["ename"] for m in outputs if m["msg_type"] == "error"]
    assert errors, "no error message on IOPub for the interrupted cell"
    assert set(errors) == {"KeyboardInterrupt"}, errors
    return outputs


def read_iopub_for(kc: BlockingKernelClient, seconds: float) -> list[dict]:
    """Every IOPub message that arrives within ``seconds``."""
    received = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            received.append(kc.get_iopub_msg(timeout=left))
        except queue.Empty:
            break
    return received


def assert_intact(messages: list[dict]) -> None:
    """No message carries binary buffers: none swallowed the frames of another."""
    for m in messages:
        assert not m.get("buffers"), (m["msg_type"], len(m["buffers"]))


def assert_usable(kc: BlockingKernelClient) -> None:
    """A cell runs normally and its output arrives whole, message by message."""
    big = 200_000
    code = f"print('after')\nprint('y' * {big})\n6 * 7"
    msg_id = kc.execute(code)
    received = iopub_until_idle(kc, msg_id)
    reply = get_reply(kc, msg_id)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert_intact(received)
    outputs = [m for m in received if m["parent_header"].get("msg_id") == msg_id]
    assert stream_text(outputs) == "after\n" + "y" * big + "\n"
    types = [m["msg_type"] for m in outputs]
    assert types[:2] == ["status", "execute_input"]
    assert types[-2:] == ["execute_result", "status"]
    assert set(types[2:-2]) == {"stream"}
    assert outputs[-2]["content"]["data"]["text/plain"] == "42"


def test_interrupt_during_input(mode_kernel) -> None:
    """Interrupting input(): a KeyboardInterrupt error; the unanswered request does not
    confuse the next input(), which gets its own request and answer."""
    km, kc = mode_kernel
    msg_id = kc.execute("print('started', flush=True)\ninput('first? ')", allow_stdin=True)
    stale = kc.get_stdin_msg(timeout=TIMEOUT)
    assert stale["msg_type"] == "input_request"
    assert stale["parent_header"]["msg_id"] == msg_id
    interrupt(km, kc)
    assert_interrupted(kc, msg_id)

    msg_id = kc.execute("second = input('second? ')\nprint('got', second)", allow_stdin=True)
    fresh = kc.get_stdin_msg(timeout=TIMEOUT)
    assert fresh["parent_header"]["msg_id"] == msg_id
    assert fresh["content"]["prompt"] == "second? "
    kc.input("the answer")
    reply = get_reply(kc, msg_id)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert stream_text(collect_iopub(kc, msg_id)) == "got the answer\n"
    assert_usable(kc)


def test_two_interrupts_back_to_back(mode_kernel) -> None:
    """A second interrupt while the first is handled: one KeyboardInterrupt, no crash,
    IOPub frames intact. Repeated, so the second one lands in different places."""
    km, kc = mode_kernel
    for _ in range(3):
        msg_id = kc.execute("print('started', flush=True)\nwhile True:\n    pass")
        wait_started(kc, msg_id)
        interrupt(km, kc)
        interrupt(km, kc)
        outputs = assert_interrupted(kc, msg_id)
        assert_intact(outputs)
        assert_usable(kc)
        assert km.is_alive()


def test_interrupt_tight_print_loop(mode_kernel) -> None:
    """Interrupting a cell that prints as fast as it can never cuts a message in half:
    everything before and after parses, and the next cell's output is whole."""
    km, kc = mode_kernel
    line = "x" * 100
    for _ in range(5):
        msg_id = kc.execute(f"while True:\n    print({line!r})")
        before = []
        while not before or before[-1]["msg_type"] != "stream":
            msg = kc.get_iopub_msg(timeout=TIMEOUT)
            if msg["parent_header"].get("msg_id") == msg_id:
                before.append(msg)
        interrupt(km, kc)
        outputs = before + assert_interrupted(kc, msg_id)
        assert_intact(outputs)
        text = stream_text(outputs)
        # Whole lines, possibly the last one without its newline.
        assert set(text) <= {"x", "\n"}
        assert all(len(chunk) == 100 for chunk in text.split("\n")[:-1])
        assert len(text.split("\n")[-1]) in (0, 100)
        assert_usable(kc)


# The cell keeps producing output until the stop file exists, catching the interrupts
# that land in the producing loop. "comm" messages have a JSON frame and then a binary
# buffer: an interrupt between the two would leave the buffer for the next message.
STORM_CELLS = {
    "print": ("def produce():\n    print('x' * 100)\n"),
    "comm": (
        "import comm\n"
        "storm_comm = comm.create_comm(target_name='storm')\n"
        "def produce():\n"
        "    storm_comm.send({'text': 'x' * 100_000}, buffers=[b'tail'])\n"
    ),
}
STORM_LOOP = """\
import os
def spin(stop):
    while not os.path.exists(stop):
        produce()
hits = 0
print("started", flush=True)
while not os.path.exists({stop!r}):
    try:
        spin({stop!r})
    except KeyboardInterrupt:
        hits += 1
"""


@pytest.mark.parametrize("output", list(STORM_CELLS))
def test_interrupt_storm_on_producing_cell(mode_kernel, tmp_path: Path, output: str) -> None:
    """Many interrupts land in a cell that catches them and keeps producing output.

    Each is a chance to cut an IOPub message in two: every message must still
    parse and carry exactly its own frames, and the kernel must stay usable.
    (An interrupt landing between the cell's ``except`` and its next ``try``
    ends the cell early with KeyboardInterrupt; that is fine.)
    """
    km, kc = mode_kernel
    stop = tmp_path / "stop"
    msg_id = kc.execute(STORM_CELLS[output] + STORM_LOOP.format(stop=str(stop)))
    received = []

    def cell_done() -> bool:
        return any(is_idle_of(m, msg_id) for m in received)

    try:
        while "started" not in stream_text(received):
            received.append(kc.get_iopub_msg(timeout=TIMEOUT))
        for _ in range(150):
            if cell_done():
                break
            interrupt(km, kc)
            # Keep reading, as a frontend does, so the kernel is never held up.
            received += read_iopub_for(kc, 0.01)
    finally:
        stop.touch()
    if not cell_done():
        received += iopub_until_idle(kc, msg_id, timeout=EXIT_TIMEOUT)
    reply = get_reply(kc, msg_id, timeout=EXIT_TIMEOUT)
    assert reply["content"]["status"] in ("ok", "error")
    if reply["content"]["status"] == "error":
        assert reply["content"]["ename"] == "KeyboardInterrupt"
    comm_msgs = [m for m in received if m["msg_type"] == "comm_msg"]
    for m in comm_msgs:
        assert [bytes(b) for b in m["buffers"]] == [b"tail"]
        assert m["content"]["data"] == {"text": "x" * 100_000}
    assert_intact([m for m in received if m["msg_type"] != "comm_msg"])
    text = stream_text([m for m in received if m["parent_header"].get("msg_id") == msg_id])
    rest = text.replace("started\n", "", 1)
    assert set(rest) <= {"x", "\n"}, re.sub("x{2,}", "x..x", rest)[:2000]
    if output == "comm":
        assert comm_msgs
    assert_usable(kc)


def test_interrupt_when_idle_is_harmless(mode_kernel) -> None:
    """Interrupts with nothing running change nothing: cells, input() and a later
    interrupt of a running cell all work as usual."""
    km, kc = mode_kernel
    for _ in range(3):
        if km.kernel_spec.interrupt_mode == "message":
            msg_id = request(kc, "control", "interrupt_request")
            reply = replies_until(kc, "control", msg_id)[-1]
            assert reply["msg_type"] == "interrupt_reply"
            assert reply["content"]["status"] == "ok"
            caused = collect_iopub(kc, msg_id)
            assert [m["msg_type"] for m in caused] == ["status", "status"]
        else:
            interrupt(km, kc)
    # A shell round trip: the kernel is serving requests again.
    get_reply(kc, kc.kernel_info())
    assert_usable(kc)
    msg_id = kc.execute("value = input('? ')\nprint(value)", allow_stdin=True)
    assert kc.get_stdin_msg(timeout=TIMEOUT)["parent_header"]["msg_id"] == msg_id
    kc.input("still fine")
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    assert stream_text(collect_iopub(kc, msg_id)) == "still fine\n"
    msg_id = kc.execute("import time\nprint('started', flush=True)\ntime.sleep(1000)")
    wait_started(kc, msg_id)
    interrupt(km, kc)
    assert_interrupted(kc, msg_id)
    assert km.is_alive()


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_interrupt_traceback_shows_user_code_only(mode_kernel) -> None:
    """The KeyboardInterrupt traceback ends in the cell, with no frame of the kernel's own."""
    km, kc = mode_kernel
    msg_id = kc.execute("import time\nprint('started', flush=True)\ntime.sleep(1000)")
    wait_started(kc, msg_id)
    interrupt(km, kc)
    outputs = assert_interrupted(kc, msg_id)
    (error,) = [m for m in outputs if m["msg_type"] == "error"]
    traceback = _ANSI.sub("", "\n".join(error["content"]["traceback"]))
    assert "time.sleep(1000)" in traceback
    package_dir = os.path.dirname(akernel.__file__)
    assert package_dir not in traceback, traceback
