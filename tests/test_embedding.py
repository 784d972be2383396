"""Kernels embedded in running applications: the example hosts, run as real processes.

The three hosts of tests/embed_hosts.py (an asyncio HTTP app, a Starlette app under
uvicorn on uvloop, a trio TCP service) each run as a subprocess and are driven two
ways at once: through their own protocol (HTTP GET / a TCP line) and through a
``BlockingKernelClient`` connected with the connection file they wrote.

Each host runs once per module (per xdist worker) for the tests that leave it
running; tests that stop the kernel, the host, or give it a connection file get their
own process. A tiny plain script also runs ``akernel.embed_kernel()`` on both backends.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.blocking import BlockingKernelClient

from akernel.transport.connection import CHANNELS

from .embed_hosts import (
    EXISTING,
    FLAVORS,
    START_TIMEOUT,
    STOP_TIMEOUT,
    AppProcess,
    Flavor,
    LineReader,
    connect,
    free_ports,
    spawn,
    stop_process,
    wait_until,
)
from .utils import (
    execute,
    get_reply,
    iopub_until_idle,
    run_ok,
    stream_text,
    user_value,
    wait_for_stream,
)

pytestmark = pytest.mark.timeout(120)


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


def test_the_host_stopping_its_kernel_stops_only_the_kernel(own_app: AppProcess) -> None:
    """``kernel.stop()`` from the host's own code (issue 16, item 1): the kernel goes,
    the host's server and its own background job go on."""
    app = own_app
    kc = connect(app.connection_file)
    try:
        assert user_value(kc, app.flavor.count) == "0"
        served = app.request()
        app.stop_kernel()
        wait_until(lambda: app.state()["kernel"] == "stopped", what="the kernel to stop")
        wait_until(lambda: not app.connection_file.exists(), what="the connection file to go")
    finally:
        kc.stop_channels()
    app.stdout.wait_for(lambda line: "kernel stopped, still serving" in line)
    assert app.request() == served + 1
    ticks = app.state()["ticks"]
    wait_until(lambda: app.state()["ticks"] > ticks, what="the host's background job")
    assert app.alive()
    assert app.stop() == 0, app.stderr.text
    assert app.stdout.lines[-1] == f"{app.flavor.log_prefix}stopped"
    assert "Traceback" not in app.stderr.text, app.stderr.text


def test_the_host_serves_its_kernel_on_a_known_address(flavor: Flavor, tmp_path: Path) -> None:
    """A connection file given to the host is honoured (issue 16, item 6): clients
    holding that file reach the kernel; the file is neither rewritten nor removed."""
    ports = free_ports(5).release()
    known = tmp_path / "known-kernel.json"
    info = {f"{channel}_port": port for channel, port in zip(CHANNELS, ports, strict=True)}
    info |= {"ip": "127.0.0.1", "transport": "tcp", "key": "the-service-key"}
    info |= {"signature_scheme": "hmac-sha256", "kernel_name": ""}
    known.write_text(json.dumps(info, indent=1))
    written = known.read_bytes()
    app = AppProcess(flavor, tmp_path, connection_file=known)
    try:
        kc = connect(known)
        try:
            assert (kc.shell_port, kc.control_port) == (info["shell_port"], info["control_port"])
            assert kc.session.key == b"the-service-key"
            assert user_value(kc, app.flavor.count) == "0"
            assert app.request() == 1
            assert user_value(kc, app.flavor.count) == "1"
        finally:
            kc.stop_channels()
        assert known.read_bytes() == written
        assert app.stop() == 0, app.stderr.text
    finally:
        app.stop()
    assert known.read_bytes() == written


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
