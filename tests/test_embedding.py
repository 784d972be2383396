"""Kernels embedded in running applications: the examples, run as real processes.

``examples/embed_asyncio_http.py`` (an asyncio HTTP app, ``app`` in the kernel)
and ``examples/embed_trio_service.py`` (a trio line-based TCP service,
``service`` in the kernel) each run as a subprocess and are driven two ways at
once: through their own protocol (HTTP GET / a TCP line) and through a
``BlockingKernelClient`` connected with the connection file they wrote.

Each app runs once per module (per xdist worker) for the tests that leave it
running; tests that shut the kernel down or stop the app get their own process.
A tiny plain script also runs ``akernel.embed_kernel()`` on both backends.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from jupyter_client.blocking import BlockingKernelClient

from .utils import (
    TIMEOUT,
    execute,
    get_reply,
    iopub_until_idle,
    run_ok,
    stream_text,
    user_value,
    wait_for_stream,
)

pytestmark = pytest.mark.timeout(120)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
START_TIMEOUT = 30  # process start until its ready line (imports IPython, binds sockets)
STOP_TIMEOUT = 20  # SIGTERM until the process is gone
REQUEST_TIMEOUT = 10  # one HTTP request or TCP line
READY = re.compile(r"^ready (?P<address>\S+) connection_file=(?P<path>.+)$")
EXISTING = re.compile(r"jupyter console --existing (?P<path>\S+)")


# --- Subprocesses ---------------------------------------------------------------------


class LineReader:
    """Collects the lines of a text pipe in a daemon thread, to wait on them."""

    def __init__(self, pipe) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._changed = threading.Condition()
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe) -> None:
        try:
            for line in pipe:
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        finally:
            pipe.close()
            with self._changed:
                self.closed = True
                self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, found: Callable[[str], object], timeout: float = TIMEOUT) -> object:
        """The first truthy ``found(line)`` over all lines, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            checked = 0
            while True:
                for line in self.lines[checked:]:
                    result = found(line)
                    if result:
                        return result
                checked = len(self.lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed:
                    lines = "\n".join(self.lines)
                    raise AssertionError(f"not found in output (closed={self.closed}):\n{lines}")
                self._changed.wait(remaining)

    def wait_closed(self, timeout: float = TIMEOUT) -> None:
        """Wait until the pipe is read to its end (the process exited and all is read)."""
        with self._changed:
            assert self._changed.wait_for(lambda: self.closed, timeout), "pipe still open"


def spawn(args: list[str], cwd: Path) -> tuple[subprocess.Popen, LineReader, LineReader]:
    """Start ``python ARGS`` with stdout and stderr read line by line.

    Without ``PYTHONUNBUFFERED``: the scripts must flush what they print themselves.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    return process, LineReader(process.stdout), LineReader(process.stderr)


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM) -> int | None:
    """Ask ``process`` to stop with ``sig``, kill it if it does not; its exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
    return process.returncode


def connect(connection_file: str | Path) -> BlockingKernelClient:
    kc = BlockingKernelClient()
    kc.load_connection_file(str(connection_file))
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=TIMEOUT)
    except Exception:
        kc.stop_channels()
        raise
    return kc


def wait_until(condition: Callable[[], object], timeout: float = TIMEOUT, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.05)


# --- The two apps, behind one interface ---------------------------------------------


def http_get(port: int, path: str) -> object:
    """GET ``path`` from the asyncio app; the decoded JSON body (no proxies involved)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status in (200, 404), (response.status, body)
    return json.loads(body)


def tcp_line(port: int, line: str) -> str:
    """Send one line to the trio service; its one-line answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as sock:
        sock.sendall(line.encode() + b"\n")
        with sock.makefile("r", encoding="utf-8") as answers:
            answer = answers.readline()
    assert answer.endswith("\n"), f"no answer to {line!r}: {answer!r}"
    return answer.rstrip("\n")


@dataclass(frozen=True)
class Flavor:
    """One example app, and how to talk to it."""

    name: str
    script: str
    ns: str  # the app's name in the kernel
    counter: str  # attribute counted by each request
    log_prefix: str  # start of the app's own stdout lines
    in_app_loop: str  # expression, True in a cell running in the app's event loop

    @property
    def count(self) -> str:
        """The expression for the counter, in a cell."""
        return f"{self.ns}.{self.counter}"


ASYNCIO_APP = Flavor(
    name="asyncio",
    script="embed_asyncio_http.py",
    ns="app",
    counter="hits",
    log_prefix="app: ",
    in_app_loop="id(__import__('asyncio').get_running_loop()) == app.loop_id",
)
TRIO_APP = Flavor(
    name="trio",
    script="embed_trio_service.py",
    ns="service",
    counter="count",
    log_prefix="service: ",
    in_app_loop="__import__('trio').lowlevel.current_root_task() is service.root_task",
)
FLAVORS = [ASYNCIO_APP, TRIO_APP]


class AppProcess:
    """A running example app: its process, its output, its port and connection file."""

    def __init__(self, flavor: Flavor, workdir: Path) -> None:
        self.flavor = flavor
        wanted = workdir / f"{flavor.name}-kernel.json"
        script = str(EXAMPLES / flavor.script)
        args = [script, "--port", "0", "--connection-file", str(wanted)]
        self.process, self.stdout, self.stderr = spawn(args, workdir)
        try:
            ready = self.stdout.wait_for(READY.match, START_TIMEOUT)
        except AssertionError:
            self.stop()
            raise AssertionError(f"no ready line; stderr:\n{self.stderr.text}") from None
        assert isinstance(ready, re.Match)
        self.address = ready["address"]
        self.port = int(self.address.rsplit(":", 1)[1])
        self.connection_file = Path(ready["path"])
        assert self.connection_file == wanted
        assert self.connection_file.exists()

    def request(self, tag: str = "ping") -> int:
        """One counted request (GET /, or a line); the counter in the answer.

        ``tag`` ends up in the app's log line for the request.
        """
        if self.flavor.name == "asyncio":
            body = http_get(self.port, f"/?tag={tag}")
            assert isinstance(body, dict), body
            return body["hits"]
        count, echoed = tcp_line(self.port, tag).split(" ", 1)
        assert echoed == tag.upper()
        return int(count)

    def items(self) -> list[str]:
        """The items the app holds, asked through its own protocol."""
        if self.flavor.name == "asyncio":
            items = http_get(self.port, "/items")
        else:
            items = json.loads(tcp_line(self.port, "items"))
        assert isinstance(items, list), items
        return items

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop the process with ``sig``; its exit code, once all its output is read."""
        returncode = stop_process(self.process, sig)
        self.stdout.wait_closed()
        self.stderr.wait_closed()
        return returncode


# --- Fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=FLAVORS, ids=[f.name for f in FLAVORS])
def flavor(request: pytest.FixtureRequest) -> Flavor:
    return request.param


@pytest.fixture(scope="module")
def shared_app(flavor: Flavor, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    """One app process for the tests of this module that leave its kernel running."""
    app = AppProcess(flavor, tmp_path_factory.mktemp(f"embed-{flavor.name}"))
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="module")
def shared_client(shared_app: AppProcess) -> Iterator[BlockingKernelClient]:
    kc = connect(shared_app.connection_file)
    try:
        yield kc
    finally:
        kc.stop_channels()


@pytest.fixture
def app(shared_app: AppProcess) -> AppProcess:
    assert shared_app.alive(), f"the app died; stderr:\n{shared_app.stderr.text}"
    return shared_app


@pytest.fixture
def kc(shared_client: BlockingKernelClient, app: AppProcess) -> BlockingKernelClient:
    """The shared app's kernel client, with what earlier tests left on IOPub dropped."""
    while True:
        try:
            shared_client.get_iopub_msg(timeout=0.05)
        except queue.Empty:
            return shared_client


@pytest.fixture
def own_app(flavor: Flavor, tmp_path: Path) -> Iterator[AppProcess]:
    """An app process of the test's own, for tests that stop its kernel or itself."""
    app = AppProcess(flavor, tmp_path)
    try:
        yield app
    finally:
        app.stop()


# --- Kernel helpers ---------------------------------------------------------------------


def all_stream_text(messages: list[dict]) -> str:
    """Stream text of every message, whatever its parent or stream name."""
    return "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")


def send_interrupt(kc: BlockingKernelClient) -> str:
    """An ``interrupt_request`` on the control channel, as a message-mode frontend sends."""
    msg = kc.session.msg("interrupt_request", {})
    kc.control_channel.send(msg)
    return msg["header"]["msg_id"]


# --- The apps with a kernel running -------------------------------------------------------


def test_app_serves_while_the_kernel_is_idle(app: AppProcess) -> None:
    first = app.request()
    assert app.request() == first + 1
    assert {"apple", "banana"} <= set(app.items())


def test_cell_reads_and_changes_the_live_app(app: AppProcess, kc: BlockingKernelClient) -> None:
    count = app.flavor.count
    served = app.request()
    assert user_value(kc, count) == str(served)
    run_ok(kc, f"{count} = 1000")
    assert app.request() == 1001
    assert user_value(kc, count) == "1001"


def test_cell_awaits_the_apps_own_coroutine_in_its_loop(
    app: AppProcess, kc: BlockingKernelClient
) -> None:
    ns = app.flavor.ns
    outputs = run_ok(
        kc,
        "import os\n"
        f"n = await {ns}.add_item('added-by-a-cell')\n"
        f"print(n == len({ns}.items), {app.flavor.in_app_loop}, os.getpid())",
    )
    assert stream_text(outputs) == f"True True {app.process.pid}\n"
    assert "added-by-a-cell" in app.items()


def test_app_serves_while_a_cell_awaits(app: AppProcess, kc: BlockingKernelClient) -> None:
    """The cell only ends once the app has served a request the test sends meanwhile."""
    count = app.flavor.count
    cell = kc.execute(
        "import anyio\n"
        f"seen = {count}\n"
        "print('waiting', flush=True)\n"
        "with anyio.fail_after(30):\n"
        f"    while {count} == seen:\n"
        "        await anyio.sleep(0.05)\n"
        f"print('served', {count} - seen)\n"
    )
    wait_for_stream(kc, cell, "waiting")
    before = app.request()
    assert app.request() == before + 1
    reply = get_reply(kc, cell)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert "served " in stream_text(iopub_until_idle(kc, cell))


def test_cell_output_goes_to_the_client_and_app_output_stays_in_the_process(
    app: AppProcess, kc: BlockingKernelClient
) -> None:
    """The app logs each request to its real stdout, also while a cell runs."""
    prefix, count = app.flavor.log_prefix, app.flavor.count
    app.request("while-idle")
    app.stdout.wait_for(lambda line: "while-idle" in line)
    cell = kc.execute(
        "import anyio\n"
        f"seen = {count}\n"
        "print('from the cell', flush=True)\n"
        "with anyio.fail_after(30):\n"
        f"    while {count} == seen:\n"
        "        await anyio.sleep(0.05)\n"
        "print('cell done')\n"
    )
    messages = wait_for_stream(kc, cell, "from the cell")
    app.request("while-a-cell-runs")
    assert get_reply(kc, cell)["content"]["status"] == "ok"
    messages += iopub_until_idle(kc, cell)
    # Once more with the kernel idle, then everything IOPub had until this idle.
    app.request("idle-again")
    app.stdout.wait_for(lambda line: "idle-again" in line)
    messages += execute(kc, "pass")[1]
    assert stream_text([m for m in messages if m["parent_header"].get("msg_id") == cell]) == (
        "from the cell\ncell done\n"
    )
    published = all_stream_text(messages)
    assert prefix not in published
    for tag in ("while-idle", "while-a-cell-runs", "idle-again"):
        assert tag not in published
        app.stdout.wait_for(lambda line, tag=tag: line.startswith(prefix) and tag in line)


def test_interrupt_request_cancels_an_awaiting_cell(
    app: AppProcess, kc: BlockingKernelClient
) -> None:
    cell = kc.execute(
        "import anyio\nprint('sleeping', flush=True)\nawait anyio.sleep(100)\nprint('woke up')"
    )
    wait_for_stream(kc, cell, "sleeping")
    served = app.request()  # served while the cell sleeps
    assert app.request() == served + 1
    interrupt = send_interrupt(kc)
    assert get_reply(kc, interrupt, channel="control")["content"]["status"] == "ok"
    reply = get_reply(kc, cell)
    assert reply["content"]["status"] == "error", reply["content"]
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert "woke up" not in stream_text(iopub_until_idle(kc, cell))
    # The kernel and the app go on.
    assert app.request() == served + 2
    assert user_value(kc, "6 * 7") == "42"
    assert app.alive()


def test_background_task_outlives_its_cell(app: AppProcess, kc: BlockingKernelClient) -> None:
    ns = app.flavor.ns
    run_ok(
        kc,
        "import akernel, anyio\n"
        "gate = anyio.Event()\n"
        "async def fill():\n"
        "    await gate.wait()\n"
        "    for i in range(3):\n"
        f"        await {ns}.add_item(f'background-{{i}}')\n"
        "        await anyio.sleep(0.01)\n"
        "akernel.task_group().start_soon(fill)\n",
    )
    assert not [item for item in app.items() if item.startswith("background-")]
    run_ok(kc, "gate.set()")  # another cell: the task is still there, waiting

    def filled() -> bool:
        return [i for i in app.items() if i.startswith("background-")] == [
            "background-0",
            "background-1",
            "background-2",
        ]

    wait_until(filled, what="the background task's items")


# --- Stopping the kernel, or the app ----------------------------------------------------


def test_shutdown_request_stops_only_the_kernel(own_app: AppProcess) -> None:
    app = own_app
    kc = connect(app.connection_file)
    try:
        run_ok(kc, f"{app.flavor.count} = 500")
        reply = get_reply(kc, kc.shutdown(), channel="control")
        assert reply["content"]["status"] == "ok", reply["content"]
        wait_until(lambda: not app.connection_file.exists(), what="the connection file to go")
    finally:
        kc.stop_channels()
    app.stdout.wait_for(lambda line: "kernel stopped, still serving" in line)
    # The app goes on, with the state the kernel left it, and its output where it was.
    assert app.request("after-shutdown") == 501
    assert app.request() == 502
    app.stdout.wait_for(lambda line: "after-shutdown" in line)
    assert app.alive()
    assert app.stop() == 0
    assert app.stdout.lines[-1] == f"{app.flavor.log_prefix}stopped"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_app_and_its_kernel_cleanly(own_app: AppProcess, sig: int) -> None:
    """SIGTERM and SIGINT are the host's: it stops, and its kernel with it."""
    app = own_app
    kc = connect(app.connection_file)
    try:
        assert user_value(kc, "1 + 1") == "2"
        assert app.stop(sig) == 0, app.stderr.text
    finally:
        kc.stop_channels()
    assert not app.connection_file.exists()
    assert app.stdout.lines[-1] == f"{app.flavor.log_prefix}stopped"
    assert "Traceback" not in app.stderr.text, app.stderr.text


# --- embed_kernel() in a plain script ---------------------------------------------------

PLAIN_SCRIPT = """\
import signal
import sys

import akernel

# Ctrl-C as in a terminal, even if this process was started with SIGINT ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)
x = 41
akernel.embed_kernel(backend=sys.argv[1])
print("after", x, flush=True)
"""


def start_plain_script(
    tmp_path: Path, backend: str
) -> tuple[subprocess.Popen, LineReader, LineReader, Path]:
    """Run PLAIN_SCRIPT; the process, its output, and the connection file it announced."""
    script = tmp_path / "plain.py"
    script.write_text(PLAIN_SCRIPT)
    process, stdout, stderr = spawn([str(script), backend], tmp_path)
    try:
        found = stderr.wait_for(EXISTING.search, START_TIMEOUT)
    except AssertionError:
        stop_process(process)
        raise
    assert isinstance(found, re.Match)
    return process, stdout, stderr, Path(found["path"])


@pytest.mark.parametrize("loop_backend", ["asyncio", "trio"])
def test_embed_kernel_in_a_plain_script(tmp_path: Path, loop_backend: str) -> None:
    """The kernel sees (and changes) the module's globals; the script goes on after shutdown."""
    process, stdout, stderr, connection_file = start_plain_script(tmp_path, loop_backend)
    try:
        # Not given a connection file: a new one in Jupyter's runtime directory.
        assert connection_file.parent == Path(os.environ["JUPYTER_RUNTIME_DIR"])
        assert connection_file.exists()
        kc = connect(connection_file)
        try:
            assert user_value(kc, "x") == "41"
            library = user_value(kc, "__import__('sniffio').current_async_library()")
            assert library == repr(loop_backend)
            run_ok(kc, "x += 1")
            assert user_value(kc, "x") == "42"
            reply = get_reply(kc, kc.shutdown(), channel="control")
            assert reply["content"]["status"] == "ok", reply["content"]
        finally:
            kc.stop_channels()
        assert process.wait(STOP_TIMEOUT) == 0, stderr.text
        stdout.wait_closed()
        assert stdout.lines == ["after 42"]
        assert not connection_file.exists()
    finally:
        stop_process(process)


@pytest.mark.parametrize("loop_backend", ["asyncio", "trio"])
def test_embed_kernel_returns_on_ctrl_c(tmp_path: Path, loop_backend: str) -> None:
    """embed_kernel's docstring: "Ctrl-C stops the kernel and returns"."""
    process, stdout, stderr, connection_file = start_plain_script(tmp_path, loop_backend)
    try:
        kc = connect(connection_file)
        try:
            assert user_value(kc, "x") == "41"
        finally:
            kc.stop_channels()
        process.send_signal(signal.SIGINT)
        returncode = process.wait(STOP_TIMEOUT)
        stdout.wait_closed()
        stderr.wait_closed()
        assert not connection_file.exists()
        assert (returncode, stdout.lines) == (0, ["after 41"]), stderr.text
    finally:
        stop_process(process)
