"""JupyterLab's visual debugger, driven over the wire as JupyterLab drives it.

The tests share a kernel per backend, asyncio and trio, as a user's kernel
sees one debug session after another, and speak DAP through ``debug_request``
on the control channel (tests/debug_client.py). Each test ends its session
(``disconnect``) and leaves no cell running: the ``debug`` fixture checks it,
and restarts the kernel if it cannot, so one failure does not spread. Tests
that restart or interrupt a kernel, or need one started with other options,
start their own.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.blocking import BlockingKernelClient

from akernel.debugging.cells import HASH_SEED, murmur2
from akernel.kernelspec import kernel_json

from .conftest import start_kernel, stop_kernel
from .debug_client import DebugClient

CELL = textwrap.dedent(
    """\
    def add(a, b):
        total = a + b
        return total

    result = add(2, 3)
    print("done", result)
    """
)


def _reply(kc: BlockingKernelClient, msg_id: str, timeout: float = 30) -> dict:
    while True:
        msg = kc.get_shell_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg["content"]


def end_debugging(debug: DebugClient) -> None:
    """End the debug session, if any, wait for the shell to be free (a cell stopped
    at a breakpoint goes on when the session ends), and check that nothing of the
    session is left."""
    if debug.ok("debugInfo")["isStarted"]:
        debug.ok("disconnect", restart=False, terminateDebuggee=True)
    # A request queued behind a cell that failed is aborted: ask again.
    for _ in range(3):
        status = _reply(debug.kc, debug.kc.execute("pass"))["status"]
        if status != "aborted":
            break
    assert status == "ok"
    info = debug.ok("debugInfo")
    assert info["isStarted"] is False
    assert info["breakpoints"] == [] and info["stoppedThreads"] == []


@pytest.fixture
def debug(kernel, kc: BlockingKernelClient) -> Iterator[DebugClient]:
    """A frontend's debugger on the module's kernel; the session is ended after the test."""
    km, _ = kernel
    yield DebugClient(kc)
    try:
        end_debugging(DebugClient(kc))
    except BaseException:
        # Left stopped or still debugging: the next test gets a new kernel.
        km.restart_kernel(now=True)
        kc.wait_for_ready(timeout=30)
        raise


def _paths(frames: list[dict]) -> list[str]:
    return [frame["source"].get("path", "") for frame in frames]


def _stream(messages: list[dict]) -> str:
    return "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")


def _stop_at_breakpoint(debug: DebugClient, code: str, lines: list[int]) -> tuple[str, dict]:
    """Start the debugger, break at ``lines`` of ``code``, run it: (msg_id, stopped event)."""
    debug.start()
    debug.break_in_cell(code, lines)
    debug.ok("setExceptionBreakpoints", filters=[])
    debug.finish_configuration()
    msg_id = debug.kc.execute(code)
    return msg_id, debug.wait_event("stopped")


def test_advertised(debug: DebugClient) -> None:
    info = debug.kc.kernel_info(reply=True, timeout=10)["content"]
    assert "debugger" in info["supported_features"]
    assert info["debugger"] is True
    assert kernel_json()["metadata"]["debugger"] is True


def test_debug_info_before_start_and_cell_names(debug: DebugClient) -> None:
    info = debug.ok("debugInfo")
    assert info["isStarted"] is False
    assert info["hashMethod"] == "Murmur2"
    assert info["tmpFilePrefix"].endswith(os.sep)
    assert info["breakpoints"] == [] and info["stoppedThreads"] == []
    assert info["richRendering"] is True and info["copyToGlobals"] is True
    started = debug.start()
    assert started["isStarted"] is True
    # The frontend computes a cell's file name itself; the kernel must agree.
    path = debug.ok("dumpCell", code=CELL)["sourcePath"]
    expected = murmur2(CELL.encode(), info["hashSeed"])
    assert info["hashSeed"] == HASH_SEED
    assert path == f"{info['tmpFilePrefix']}{expected}{info['tmpFileSuffix']}"
    assert Path(path).read_text() == CELL


def test_full_sequence_break_step_continue(debug: DebugClient) -> None:
    msg_id, stopped = _stop_at_breakpoint(debug, CELL, [2])
    assert stopped["body"]["reason"] == "breakpoint"
    thread = stopped["body"]["threadId"]
    assert debug.ok("debugInfo")["stoppedThreads"] == [thread]
    # Control is served while the main thread is stopped.
    info = debug.kc.session.msg("kernel_info_request")
    debug.kc.control_channel.send(info)
    assert debug.control_reply(info["header"]["msg_id"])["status"] == "ok"

    frames = debug.stopped_frames(thread)
    cell_file = debug.ok("dumpCell", code=CELL)["sourcePath"]
    # User frames only: the function, then the cell; nothing of the kernel's.
    assert [(f["name"], f["line"]) for f in frames] == [("add", 2), ("<module>", 5)]
    assert _paths(frames) == [cell_file, cell_file]
    assert debug.frame_locals(frames[0]["id"]) == {"a": "2", "b": "3"}

    debug.ok("next", threadId=thread)
    debug.wait_event("stopped")
    frames = debug.stopped_frames(thread)
    assert frames[0]["line"] == 3
    assert debug.frame_locals(frames[0]["id"])["total"] == "5"

    debug.ok("continue", threadId=thread)
    debug.wait_event("continued")
    assert "done 5" in _stream(debug.wait_idle(msg_id))
    assert _reply(debug.kc, msg_id)["status"] == "ok"
    assert debug.ok("debugInfo")["breakpoints"] == [
        {"source": cell_file, "breakpoints": [{"line": 2}]}
    ]

    debug.ok("disconnect", restart=False, terminateDebuggee=True)
    assert debug.ok("debugInfo")["isStarted"] is False
    # The kernel goes on, and breakpoints are gone with the debugger.
    msg_id = debug.kc.execute(CELL)
    assert _reply(debug.kc, msg_id)["status"] == "ok"
    assert "done 5" in _stream(debug.wait_idle(msg_id))


def test_step_past_the_end_of_a_cell(debug: DebugClient) -> None:
    code = "first = 1\nsecond = 2\n"
    msg_id, stopped = _stop_at_breakpoint(debug, code, [2])
    thread = stopped["body"]["threadId"]
    # A step from the last line has nowhere to stop: the kernel's frames are hidden.
    debug.ok("next", threadId=thread)
    debug.wait_idle(msg_id)
    assert _reply(debug.kc, msg_id)["status"] == "ok"
    # Nor is it left pending: the next cell does not stop without a breakpoint.
    msg_id = debug.kc.execute("third = 3\nprint('third', third)\n")
    assert "third 3" in _stream(debug.wait_idle(msg_id))
    assert not [
        m
        for m in debug.iopub
        if m["msg_type"] == "debug_event" and m["content"]["event"] == "stopped"
    ][1:]


def test_step_in_never_enters_the_kernel(debug: DebugClient) -> None:
    # akernel's own functions (installed editable, so not "library" code for
    # justMyCode), IPython's, and the user's: only the last is stepped into.
    code = textwrap.dedent(
        """\
        def mine():
            return 1

        parent = get_ipython().kernel.get_parent("shell")
        print("shown")
        value = mine()
        """
    )
    msg_id, stopped = _stop_at_breakpoint(debug, code, [4])
    thread = stopped["body"]["threadId"]
    for line in (5, 6):
        debug.ok("stepIn", threadId=thread)
        debug.wait_event("stopped")
        frames = debug.stopped_frames(thread)
        assert (frames[0]["name"], frames[0]["line"]) == ("<module>", line), frames
    debug.ok("stepIn", threadId=thread)
    debug.wait_event("stopped")
    assert debug.stopped_frames(thread)[0]["name"] == "mine"
    debug.ok("continue", threadId=thread)
    assert _reply(debug.kc, msg_id)["status"] == "ok"


def test_breakpoint_in_an_imported_module(debug: DebugClient, tmp_path: Path) -> None:
    module = tmp_path / "dbg_helper_module.py"
    module.write_text("def double(x):\n    doubled = x * 2\n    return doubled\n")
    debug.kc.execute_interactive(f"import sys; sys.path.insert(0, {str(tmp_path)!r})", timeout=10)
    debug.start()
    body = debug.ok("setBreakpoints", source={"path": str(module)}, breakpoints=[{"line": 2}])
    assert body["breakpoints"][0]["verified"] is True
    debug.finish_configuration()
    code = "import dbg_helper_module\nvalue = dbg_helper_module.double(21)\nprint(value)\n"
    msg_id = debug.kc.execute(code)
    stopped = debug.wait_event("stopped")
    thread = stopped["body"]["threadId"]
    frames = debug.stopped_frames(thread)
    assert frames[0]["source"]["path"] == str(module) and frames[0]["line"] == 2
    assert frames[1]["name"] == "<module>" and len(frames) == 2
    assert debug.frame_locals(frames[0]["id"]) == {"x": "21"}
    source = debug.ok("source", source={"path": str(module)})
    assert source["content"] == module.read_text()
    debug.ok("continue", threadId=thread)
    assert "42" in _stream(debug.wait_idle(msg_id))
    # The kernel is shared: it forgets the module and its directory.
    forget = f"sys.path.remove({str(tmp_path)!r}); del sys.modules['dbg_helper_module']"
    assert debug.kc.execute_interactive(forget, timeout=10)["content"]["status"] == "ok"


def test_exception_breakpoint(debug: DebugClient) -> None:
    debug.start()
    debug.ok("setExceptionBreakpoints", filters=["raised"])
    debug.finish_configuration()
    code = "try:\n    int('not a number')\nexcept ValueError:\n    print('caught')\n"
    msg_id = debug.kc.execute(code)
    stopped = debug.wait_event("stopped")
    assert stopped["body"]["reason"] == "exception"
    thread = stopped["body"]["threadId"]
    info = debug.ok("exceptionInfo", threadId=thread)
    assert "ValueError" in info["exceptionId"]
    assert debug.stopped_frames(thread)[0]["line"] == 2
    debug.ok("continue", threadId=thread)
    assert "caught" in _stream(debug.wait_idle(msg_id))
    assert _reply(debug.kc, msg_id)["status"] == "ok"


def test_async_function_step_over_await(debug: DebugClient) -> None:
    code = textwrap.dedent(
        """\
        import anyio

        async def work(n):
            before = n + 1
            await anyio.sleep(0.01)
            after = before * 2
            return after

        out = await work(4)
        print("async", out)
        """
    )
    msg_id, stopped = _stop_at_breakpoint(debug, code, [4])
    thread = stopped["body"]["threadId"]
    frames = debug.stopped_frames(thread)
    assert frames[0]["name"] == "work" and frames[0]["line"] == 4
    debug.ok("next", threadId=thread)
    debug.wait_event("stopped")
    assert debug.stopped_frames(thread)[0]["line"] == 5
    debug.ok("next", threadId=thread)  # over the await: the event loop runs meanwhile
    debug.wait_event("stopped")
    frames = debug.stopped_frames(thread)
    assert frames[0]["name"] == "work" and frames[0]["line"] == 6
    assert debug.frame_locals(frames[0]["id"])["before"] == "5"
    debug.ok("continue", threadId=thread)
    assert "async 10" in _stream(debug.wait_idle(msg_id))


def test_variables_when_not_stopped(debug: DebugClient) -> None:
    debug.kc.execute_interactive(
        "config = {'depth': 3, 'name': 'x'}\nitems = [10, 20]\n_index = 7", timeout=10
    )
    debug.start()
    variables = {v["name"]: v for v in debug.ok("inspectVariables")["variables"]}
    assert {"config", "items", "_index"} <= set(variables)
    # What IPython puts in the namespace is not the user's.
    assert not {"In", "Out", "get_ipython", "exit", "_i1", "__builtins__"} & set(variables)
    reference = variables["config"]["variablesReference"]
    assert reference > 0
    children = debug.ok("variables", variablesReference=reference)["variables"]
    assert {c["value"] for c in children} >= {"3", "'x'"}
    missing = debug.request("variables", variablesReference=10**9)
    assert missing["success"] is False


RICH = textwrap.dedent(
    """\
    class Card:
        def _repr_html_(self):
            return "<b>card</b>"

    def show():
        local_card = Card()
        return local_card

    card = Card()
    """
)


def test_rich_inspect_and_copy_to_globals(debug: DebugClient) -> None:
    debug.kc.execute_interactive(RICH, timeout=10)
    debug.start()
    idle = debug.ok("richInspectVariables", variableName="card")
    assert idle["data"]["text/html"] == "<b>card</b>"
    assert "text/plain" in idle["data"]
    assert debug.request("richInspectVariables", variableName="nothing_here")["success"] is False

    code = "shown = show()\n"
    debug.ok(
        "setBreakpoints",
        source={"path": debug.ok("dumpCell", code=RICH)["sourcePath"]},
        breakpoints=[{"line": 7}],
    )
    debug.finish_configuration()
    msg_id = debug.kc.execute(code)
    thread = debug.wait_event("stopped")["body"]["threadId"]
    frame = debug.stopped_frames(thread)[0]
    assert frame["name"] == "show"
    stopped = debug.ok("richInspectVariables", variableName="local_card", frameId=frame["id"])
    assert stopped["data"]["text/html"] == "<b>card</b>"
    debug.ok(
        "copyToGlobals",
        srcVariableName="local_card",
        dstVariableName="copied_card",
        srcFrameId=frame["id"],
    )
    debug.ok("continue", threadId=thread)
    debug.wait_idle(msg_id)
    assert _reply(debug.kc, msg_id)["status"] == "ok"
    result = debug.kc.execute_interactive("print(type(copied_card).__name__)", timeout=10)
    assert result["content"]["status"] == "ok"
    names = {v["name"] for v in debug.ok("inspectVariables")["variables"]}
    assert "copied_card" in names


@pytest.mark.parametrize("how", ["signal", "message"])
def test_interrupt_while_stopped(backend: str, how: str) -> None:
    km, kc = start_kernel(backend, interrupt_mode=how)
    try:
        debug = DebugClient(kc)
        code = "for step in range(3):\n    value = step * 10\nprint('finished')\n"
        msg_id, _ = _stop_at_breakpoint(debug, code, [2])
        km.interrupt_kernel()
        reply = _reply(kc, msg_id)
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
        assert "finished" not in _stream(debug.wait_idle(msg_id))
        assert debug.ok("debugInfo")["stoppedThreads"] == []
        # Still debugging: the breakpoint hits again on the next run.
        msg_id = kc.execute(code)
        thread = debug.wait_event("stopped")["body"]["threadId"]
        assert debug.stopped_frames(thread)[0]["line"] == 2
        debug.ok("disconnect", restart=False, terminateDebuggee=True)
        assert "finished" in _stream(debug.wait_idle(msg_id))
        assert _reply(kc, msg_id)["status"] == "ok"
    finally:
        stop_kernel(km, kc)


def test_disconnect_while_stopped_then_debug_again(debug: DebugClient) -> None:
    msg_id, stopped = _stop_at_breakpoint(debug, CELL, [2])
    # Closing the debugger panel: the cell goes on, the kernel stays.
    debug.ok("disconnect", restart=False, terminateDebuggee=True)
    assert "done 5" in _stream(debug.wait_idle(msg_id))
    assert _reply(debug.kc, msg_id)["status"] == "ok"
    # A second session in the same kernel.
    msg_id, stopped = _stop_at_breakpoint(debug, CELL, [3])
    thread = stopped["body"]["threadId"]
    assert debug.stopped_frames(thread)[0]["line"] == 3
    debug.ok("continue", threadId=thread)
    assert "done 5" in _stream(debug.wait_idle(msg_id))


def test_restart_while_stopped(fresh_kernel) -> None:
    km, kc = fresh_kernel
    _stop_at_breakpoint(DebugClient(kc), CELL, [2])
    km.restart_kernel(now=False)
    kc.wait_for_ready(timeout=30)
    result = kc.execute_interactive("print('restarted')", timeout=15)
    assert result["content"]["status"] == "ok"
    assert DebugClient(kc).ok("debugInfo")["isStarted"] is False


def test_bad_debug_requests_get_error_replies(debug: DebugClient) -> None:
    for content in ({}, {"type": "request", "command": "threads"}, {"seq": 1}):
        response = debug.reply(debug.send_content(content))
        assert response["success"] is False and response["message"]
    # Before initialize, only what needs no debugger is answered.
    assert debug.request("threads")["success"] is False
    debug.start()
    for command in ("launch", "terminate"):
        response = debug.request(command)
        assert response["success"] is False and response["message"]
    assert debug.request("variables", variablesReference="x")["success"] is False
    assert debug.ok("threads")["threads"]
    # The kernel is fine.
    result = debug.kc.execute_interactive("print('ok')", timeout=10)
    assert result["content"]["status"] == "ok"


def test_kernel_threads_are_hidden(debug: DebugClient) -> None:
    debug.start()
    debug.finish_configuration()
    names = [thread["name"] for thread in debug.ok("threads")["threads"]]
    assert names == ["MainThread"], names
    modules = debug.ok("modules")
    assert modules["totalModules"] >= len(modules["modules"]) > 0
    assert any(module["name"] == "akernel.kernel" for module in modules["modules"])


def test_debugger_can_be_turned_off() -> None:
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="akernel-test")
    km.start_kernel(extra_arguments=["--Kernel.debugger=False"])
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        info = kc.kernel_info(reply=True, timeout=10)["content"]
        assert info["debugger"] is False and "debugger" not in info["supported_features"]
        # A frontend that asks anyway gets an answer, not silence.
        response = DebugClient(kc).request("initialize", adapterID="python")
        assert response["success"] is False and "debugger" in response["message"]
    finally:
        stop_kernel(km, kc)
