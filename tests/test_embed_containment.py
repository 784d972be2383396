"""Cell code cannot harm the application an embedded kernel runs in.

The hosts are the example applications (tests/embed_hosts.py): an asyncio HTTP
server, a Starlette app under uvicorn on uvloop, and a trio TCP service, each a
real process, driven through its own protocol and through a jupyter_client
connected to its kernel. What is checked:

* ``SystemExit`` or ``KeyboardInterrupt`` raised in a task a cell started ends
  that task, never the host;
* ``input()``, ``getpass()`` and the debugger do not block the host's loop: they
  fail with a clear error, ``await akernel.ainput()`` waits while the host
  serves, and an interrupt (or a client going away) cannot leave the host stuck;
* the host's own tasks stay the host's while a cell runs (output, errors to the
  host's loop exception handler);
* stopping the kernel leaves what the host changed meanwhile (``sys.stdout``),
  cancels the tasks cells started with ``asyncio.create_task``, and tells the
  client why a running cell ended;
* with ``capture_sigint=True``, Ctrl-C on the idle host reaches the host's own
  handler, and interrupting a cell never stops the host.
"""

from __future__ import annotations

import builtins
import io
import os
import pdb
import queue
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from jupyter_client.blocking import BlockingKernelClient

import akernel

from .embed_hosts import (
    ASYNCIO_APP,
    FLAVORS,
    STOP_TIMEOUT,
    AppProcess,
    Flavor,
    connect,
    wait_until,
)
from .utils import TIMEOUT, execute, get_reply, iopub_until_idle, run_ok, wait_for_stream

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module", params=FLAVORS, ids=[f.name for f in FLAVORS])
def flavor(request: pytest.FixtureRequest) -> Flavor:
    return request.param


@pytest.fixture(scope="module")
def shared_app(flavor: Flavor, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    """One host per flavor for the tests that leave its kernel running."""
    app = AppProcess(flavor, tmp_path_factory.mktemp(f"contain-{flavor.name}"))
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture
def app(shared_app: AppProcess) -> AppProcess:
    assert shared_app.alive(), f"the host died; stderr:\n{shared_app.stderr.text}"
    return shared_app


@pytest.fixture
def kc(app: AppProcess) -> Iterator[BlockingKernelClient]:
    """A client of the shared host's kernel, of this test's own."""
    client = connect(app.connection_file)
    try:
        yield client
    finally:
        client.stop_channels()


def own_app(flavor: Flavor, tmp_path: Path, *options: str) -> AppProcess:
    return AppProcess(flavor, tmp_path, options)


# Tests about asyncio's free-floating tasks run on the asyncio hosts only (trio's
# tasks are started in nurseries, by their owner).
ASYNCIO_FLAVORS = [f for f in FLAVORS if f.backend == "asyncio"]
asyncio_hosts = pytest.mark.parametrize(
    "flavor", ASYNCIO_FLAVORS, ids=[f.name for f in ASYNCIO_FLAVORS], indirect=True
)


def error_of(kc: BlockingKernelClient, msg_id: str) -> dict:
    """The ``error`` output of request ``msg_id`` (reading IOPub up to it)."""
    while True:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["msg_type"] == "error" and msg["parent_header"].get("msg_id") == msg_id:
            return msg["content"]


def send_interrupt(kc: BlockingKernelClient) -> str:
    """An ``interrupt_request`` on control, as a message-mode frontend sends it."""
    msg = kc.session.msg("interrupt_request", {})
    kc.control_channel.send(msg)
    return msg["header"]["msg_id"]


def input_request(kc: BlockingKernelClient) -> dict:
    return kc.get_stdin_msg(timeout=TIMEOUT)


def host_serves(app: AppProcess) -> None:
    """The host answers two requests in a row through its own protocol."""
    first = app.request()
    assert app.request() == first + 1


# --- Item 4: cell tasks cannot end the host by raising ----------------------------------

EXITING_TASKS = """\
import akernel, sys

async def exits():
    sys.exit(3)

async def interrupts():
    raise KeyboardInterrupt

akernel.task_group().start_soon(exits)
akernel.task_group().start_soon(interrupts)
"""


def test_exit_in_a_cell_task_ends_the_task_not_the_host(
    app: AppProcess, kc: BlockingKernelClient
) -> None:
    reply, outputs = execute(kc, EXITING_TASKS + "await __import__('anyio').sleep(0.2)\n")
    assert reply["content"]["status"] == "ok", reply["content"]
    # Shown to the cell, as an error of any other kind would be.
    errors = {m["content"]["ename"] for m in outputs if m["msg_type"] == "error"}
    assert errors == {"SystemExit", "KeyboardInterrupt"}, outputs
    assert app.alive(), app.stderr.text
    host_serves(app)
    assert run_ok(kc, "x = 1 + 1")  # the kernel goes on too


@asyncio_hosts
def test_exit_in_an_asyncio_task_of_a_cell_ends_the_task_not_the_host(
    app: AppProcess, kc: BlockingKernelClient
) -> None:
    """asyncio re-raises SystemExit out of the loop: the kernel ends the task instead."""
    run_ok(
        kc,
        "import asyncio, sys\n"
        "async def exits():\n"
        "    sys.exit(3)\n"
        "exiting = asyncio.create_task(exits())\n"
        "await asyncio.sleep(0.2)\n",
    )
    assert app.alive(), app.stderr.text
    host_serves(app)
    reply, _ = execute(kc, "await exiting")
    assert reply["content"]["ename"] == "CellTaskExit", reply["content"]
    assert "SystemExit" in "".join(reply["content"]["traceback"])


# --- Item 5: waiting for input does not block the host ----------------------------------


@pytest.mark.parametrize("call", ["input('name? ')", "__import__('getpass').getpass()"])
def test_input_in_a_cell_fails_clearly_and_the_host_goes_on(
    app: AppProcess, kc: BlockingKernelClient, call: str
) -> None:
    msg_id = kc.execute(f"print('asking', flush=True)\nanswer = {call}", allow_stdin=True)
    wait_for_stream(kc, msg_id, "asking")
    host_serves(app)  # not blocked by the cell
    reply = get_reply(kc, msg_id)["content"]
    assert reply["ename"] == "BlockingInputError", reply
    assert "await akernel.ainput(" in reply["evalue"]
    with pytest.raises(queue.Empty):
        kc.get_stdin_msg(timeout=0.5)  # the client was never asked


def test_ainput_lets_the_host_serve_until_the_client_answers(
    app: AppProcess, kc: BlockingKernelClient
) -> None:
    count = app.flavor.count
    msg_id = kc.execute(
        f"before = {count}\n"
        "import akernel\n"
        "name = await akernel.ainput('name? ')\n"
        f"print('hello', name, {count} - before)\n",
        allow_stdin=True,
    )
    request = input_request(kc)
    assert request["content"] == {"prompt": "name? ", "password": False}
    host_serves(app)
    host_serves(app)
    kc.input("ada")
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    outputs = [m for m in iopub_until_idle(kc, msg_id) if m["msg_type"] == "stream"]
    assert [m["content"]["text"] for m in outputs] == ["hello ada 4\n"]


def test_ainput_ends_on_interrupt_after_its_client_went_away(app: AppProcess) -> None:
    """The client that was asked goes away without answering: the host goes on
    serving, and another client interrupts the waiting cell."""
    asked = connect(app.connection_file)
    try:
        msg_id = asked.execute(
            "import akernel\nanswer = await akernel.ainput('never answered: ')", allow_stdin=True
        )
        input_request(asked)
    finally:
        asked.stop_channels()
    host_serves(app)
    other = connect(app.connection_file)
    try:
        send_interrupt(other)
        error = error_of(other, msg_id)
        assert error["ename"] == "KeyboardInterrupt", error
        iopub_until_idle(other, msg_id)  # what was queued behind it is aborted until then
        assert run_ok(other, "after = 'the kernel goes on'")
    finally:
        other.stop_channels()
    host_serves(app)


@pytest.mark.parametrize("call", ["breakpoint()", "__import__('pdb').set_trace()"])
def test_debugger_in_a_cell_fails_clearly_and_the_host_goes_on(
    app: AppProcess, kc: BlockingKernelClient, call: str
) -> None:
    msg_id = kc.execute(f"x = 1\n{call}\nx = 2", allow_stdin=True)
    host_serves(app)
    reply = get_reply(kc, msg_id)["content"]
    assert reply["ename"] == "BlockingInputError", reply
    assert "blocking_input=True" in reply["evalue"]
    with pytest.raises(queue.Empty):
        kc.get_stdin_msg(timeout=0.5)


def test_debugger_with_blocking_input_ends_on_interrupt(flavor: Flavor, tmp_path: Path) -> None:
    """A host that accepts pausing (blocking_input=True) gets pdb; an
    interrupt_request ends it, although the kernel has no SIGINT handler."""
    app = own_app(flavor, tmp_path, "blocking_input=True")
    try:
        kc = connect(app.connection_file)
        try:
            msg_id = kc.execute("x = 1\nbreakpoint()\nx = 2", allow_stdin=True)
            assert "ipdb>" in input_request(kc)["content"]["prompt"]
            send_interrupt(kc)
            reply = get_reply(kc, msg_id)["content"]
            assert reply["ename"] == "KeyboardInterrupt", reply
            host_serves(app)
            assert run_ok(kc, "assert x == 1")
        finally:
            kc.stop_channels()
    finally:
        app.stop()


# --- Item 7: the host's tasks stay the host's -------------------------------------------

AWAIT_A_HOST_REQUEST = (
    "import anyio\n"
    "seen = {count}\n"
    "print('waiting', flush=True)\n"
    "with anyio.fail_after(30):\n"
    "    while {count} == seen:\n"
    "        await anyio.sleep(0.02)\n"
)


def test_host_tasks_started_while_a_cell_runs_stay_the_hosts(
    app: AppProcess, kc: BlockingKernelClient
) -> None:
    flavor = app.flavor
    failing = flavor.backend == "asyncio"  # a failing trio task would end the service
    msg_id = kc.execute(AWAIT_A_HOST_REQUEST.format(count=flavor.count))
    wait_for_stream(kc, msg_id, "waiting")
    app.host_task("during-cell", fail=failing)
    app.stdout.wait_for(lambda line: line == f"{flavor.log_prefix}host task during-cell")
    app.request()  # ends the cell
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    outputs = iopub_until_idle(kc, msg_id)
    assert "host task" not in str(outputs)
    if failing:
        wait_until(lambda: "during-cell failed" in str(app.state()["loop_exceptions"]))


@asyncio_hosts
def test_tasks_created_later_in_a_context_a_cell_left_are_the_hosts(
    app: AppProcess, kc: BlockingKernelClient
) -> None:
    """A callback registered while a cell ran (as host code a cell calls may do)
    later creates a task of the host's: not the cell's, although it runs in
    the context the cell left behind."""
    run_ok(
        kc,
        "import asyncio\n"
        "loop = asyncio.get_running_loop()\n"
        "loop.call_later(0.2, loop.create_task, app.host_job('leftover', True))\n",
    )
    app.stdout.wait_for(lambda line: line == "app: host task leftover")
    wait_until(lambda: "leftover failed" in str(app.state()["loop_exceptions"]))
    msg_id = kc.execute("pass")
    get_reply(kc, msg_id)
    assert "leftover" not in str(iopub_until_idle(kc, msg_id))


# --- Item 8 and the kernel's stop: the host keeps what is its own -----------------------


def test_stopping_the_kernel_keeps_the_stdout_the_host_set(flavor: Flavor, tmp_path: Path) -> None:
    app = own_app(flavor, tmp_path)
    try:
        assert app.state()["stdout"]["type"] == "akernel.execution.io.OutStream"
        replaced = app.replace_stdout()
        app.stop_kernel()
        wait_until(lambda: app.state()["kernel"] == "stopped")
        assert app.state()["stdout"] == replaced
        # The host's stream wrapped the kernel's: that one now writes where
        # stdout went before the kernel, so the host's log still shows up.
        app.request("after-stop")
        app.stdout.wait_for(lambda line: "after-stop" in line)
    finally:
        app.stop()


def test_stopping_the_kernel_puts_back_the_stdout_nobody_changed(
    flavor: Flavor, tmp_path: Path
) -> None:
    app = own_app(flavor, tmp_path)
    try:
        app.stop_kernel()
        wait_until(lambda: app.state()["kernel"] == "stopped")
        assert app.state()["stdout"]["is_original"]
    finally:
        app.stop()


def test_a_cell_running_when_the_kernel_stops_says_so(flavor: Flavor, tmp_path: Path) -> None:
    app = own_app(flavor, tmp_path)
    try:
        kc = connect(app.connection_file)
        try:
            msg_id = kc.execute(
                "import anyio\n"
                "async def wait_a_long_time():\n"
                "    await anyio.sleep(60)\n"
                "print('waiting', flush=True)\n"
                "await wait_a_long_time()\n"
            )
            wait_for_stream(kc, msg_id, "waiting")
            app.stop_kernel()
            reply = get_reply(kc, msg_id)["content"]
        finally:
            kc.stop_channels()
        assert reply["ename"] == "KernelStopped", reply
        assert reply["evalue"] == (
            "the kernel was stopped while this cell ran; the cell did not finish"
        )
        traceback = "\n".join(reply["traceback"])
        assert "wait_a_long_time" in traceback  # where the cell was
        for internal in ("cancel scope", "Cancelled", "_backends"):
            assert internal not in traceback
        host_serves(app)
    finally:
        app.stop()


@asyncio_hosts
def test_stopping_the_kernel_cancels_the_tasks_cells_created(
    flavor: Flavor, tmp_path: Path
) -> None:
    """...and only those: the host's own background work goes on."""
    app = own_app(flavor, tmp_path)
    try:
        kc = connect(app.connection_file)
        try:
            run_ok(
                kc,
                "import asyncio\n"
                "async def poll():\n"
                "    try:\n"
                "        while True:\n"
                "            await asyncio.sleep(0.02)\n"
                "    except asyncio.CancelledError:\n"
                "        app.items.append('cell task cancelled')\n"
                "        raise\n"
                "poller = asyncio.create_task(poll())\n",
            )
        finally:
            kc.stop_channels()
        assert "cell task cancelled" not in app.items()
        app.stop_kernel()
        wait_until(lambda: "cell task cancelled" in app.items())
        ticks = app.state()["ticks"]
        wait_until(lambda: app.state()["ticks"] > ticks, what="the host's ticker")
    finally:
        app.stop()


# --- Item 9: SIGINT with capture_sigint=True ---------------------------------------------


def test_ctrl_c_interrupts_cells_and_on_the_idle_host_reaches_the_hosts_handler(
    flavor: Flavor, tmp_path: Path
) -> None:
    app = own_app(flavor, tmp_path, "capture_sigint=True")
    try:
        kc = connect(app.connection_file)
        try:
            # An interrupt of an awaiting cell ends the cell, not the host.
            msg_id = kc.execute("import anyio\nprint('waiting', flush=True)\nawait anyio.sleep(60)")
            wait_for_stream(kc, msg_id, "waiting")
            send_interrupt(kc)
            assert get_reply(kc, msg_id)["content"]["ename"] == "KeyboardInterrupt"
            host_serves(app)
        finally:
            kc.stop_channels()
        # Ctrl-C on the idle host: the host's own handler stops it, as without a kernel.
        app.process.send_signal(signal.SIGINT)
        assert app.process.wait(STOP_TIMEOUT) == 0, app.stderr.text
        app.stdout.wait_closed()
        assert app.stdout.lines[-1] == f"{flavor.log_prefix}stopped"
    finally:
        app.stop()


def test_interrupting_a_busy_cell_never_stops_the_host(flavor: Flavor, tmp_path: Path) -> None:
    """A cell that holds the loop, interrupted by an interrupt_request. A host that
    handles SIGINT with loop.add_signal_handler (the asyncio example) sees every
    SIGINT, and would take the kernel's for Ctrl-C and stop: there, the kernel
    does not send it, and the busy cell runs to its end."""
    app = own_app(flavor, tmp_path, "capture_sigint=True")
    marker = tmp_path / "end-the-busy-cell"
    try:
        kc = connect(app.connection_file)
        try:
            msg_id = kc.execute(
                "import os, time\n"
                "print('busy', flush=True)\n"
                "deadline = time.monotonic() + 60\n"
                f"while not os.path.exists({str(marker)!r}) and time.monotonic() < deadline:\n"
                "    time.sleep(0.01)\n"
            )
            wait_for_stream(kc, msg_id, "busy")
            # Answered once the kernel has sent its SIGINT, if it sends one.
            get_reply(kc, send_interrupt(kc), channel="control")
            marker.touch()
            reply = get_reply(kc, msg_id)["content"]
            if flavor is ASYNCIO_APP:
                assert reply["status"] == "ok", reply
            else:
                assert reply["ename"] == "KeyboardInterrupt", reply
            host_serves(app)
        finally:
            kc.stop_channels()
    finally:
        app.stop()


# --- Item 8 in process: everything the kernel set, put back only where still its own ------


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def process_snapshot() -> dict[str, object]:
    """Process-wide values a kernel (or IPython's shell) sets while it serves."""
    return {
        "stdout": sys.stdout,
        "stderr": sys.stderr,
        "SIGINT": signal.getsignal(signal.SIGINT),
        "__main__": sys.modules["__main__"],
        "ps1": getattr(sys, "ps1", None),
        "display": vars(builtins).get("display"),
        "__IPYTHON__": vars(builtins).get("__IPYTHON__"),
        "PAGER": os.environ.get("PAGER"),
        "warnings": list(warnings.filters),
        "Thread.start": threading.Thread.start,
        "pdb.set_trace": pdb.set_trace,
    }


@pytest.mark.anyio
async def test_the_kernels_stop_puts_back_only_what_is_still_its_own(anyio_backend: str) -> None:
    """The host changes sys.stderr and the SIGINT handler while the kernel runs:
    the stop keeps those; everything else the kernel (and IPython) changed is
    put back; a stream of the kernel's still held writes where stdout went."""
    host_stdout, host_stderr = io.StringIO(), io.StringIO()

    def host_sigint(signum: int, frame: object) -> None:
        """The host's own handler, installed while the kernel runs."""

    embedded_kernel = akernel.embedded_kernel  # imported now: imports have effects of their own
    saved = sys.stdout, sys.stderr, signal.getsignal(signal.SIGINT)
    sys.stdout = host_stdout
    try:
        before = process_snapshot()
        async with embedded_kernel(capture_sigint=True, propagate_thread_context=True) as kernel:
            # Once a client is answered, the kernel has set up all it sets.
            await anyio.to_thread.run_sync(lambda: connect(kernel.connection_file).stop_channels())
            during = process_snapshot()
            kernels_stdout = sys.stdout
            sys.stderr = host_stderr
            signal.signal(signal.SIGINT, host_sigint)
        after = process_snapshot()
        print("written after the stop", file=kernels_stdout, flush=True)
    finally:
        sys.stdout, sys.stderr = saved[:2]
        signal.signal(signal.SIGINT, saved[2])
    changed = {name for name in before if during[name] != before[name]}
    assert changed >= {"stdout", "stderr", "SIGINT", "Thread.start", "pdb.set_trace"}
    assert after.pop("stderr") is host_stderr
    assert after.pop("SIGINT") is host_sigint
    assert after == {name: value for name, value in before.items() if name in after}
    assert host_stdout.getvalue() == "written after the stop\n"
