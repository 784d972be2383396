"""Async-native cells: the kernel's own event loop runs them, on asyncio and trio."""

from __future__ import annotations

import queue
import time

import pytest
from jupyter_client.blocking import BlockingKernelClient

from .utils import (
    execute,
    get_reply,
    iopub_until_idle,
    run_ok,
    stream_text,
    user_value,
)


def test_running_loop_is_the_kernels(kc: BlockingKernelClient, backend: str) -> None:
    """A cell sees the backend's running loop: asyncio's loop or trio's token."""
    if backend == "asyncio":
        code = "import asyncio\nprint(type(asyncio.get_running_loop()).__name__)"
        expected = "_UnixSelectorEventLoop\n"
    else:
        code = "import trio\nprint(type(trio.lowlevel.current_trio_token()).__name__)"
        expected = "TrioToken\n"
    assert stream_text(run_ok(kc, code)) == expected
    code = "import sniffio\nprint(sniffio.current_async_library())"
    assert stream_text(run_ok(kc, code)) == f"{backend}\n"


def test_async_for_and_async_with_at_top_level(kc: BlockingKernelClient) -> None:
    code = """\
import anyio
from contextlib import asynccontextmanager

@asynccontextmanager
async def opened(name):
    print("open", name)
    yield name
    print("close", name)

async def ticks(n):
    for i in range(n):
        await anyio.sleep(0)
        yield i

async with opened("a") as name:
    async for i in ticks(3):
        print(name, i)
"""
    assert stream_text(run_ok(kc, code)) == "open a\na 0\na 1\na 2\nclose a\n"


def test_anyio_task_group_in_a_cell(kc: BlockingKernelClient) -> None:
    code = """\
import anyio
order = []
async def worker(name, delay):
    await anyio.sleep(delay)
    order.append(name)
async with anyio.create_task_group() as tg:
    tg.start_soon(worker, "slow", 0.05)
    tg.start_soon(worker, "fast", 0.01)
order
"""
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    results = [m for m in outputs if m["msg_type"] == "execute_result"]
    assert results[0]["content"]["data"]["text/plain"] == "['fast', 'slow']"


def test_context_variables_persist_across_cells(kc: BlockingKernelClient) -> None:
    """A ContextVar set in one cell (sync or async) is seen by later cells."""
    run_ok(kc, "import contextvars\nvar = contextvars.ContextVar('var', default='unset')")
    run_ok(kc, "var.set('from a sync cell')")
    assert user_value(kc, "var.get()") == "'from a sync cell'"
    run_ok(kc, "import anyio\nawait anyio.sleep(0)\nvar.set('from an async cell')")
    _, outputs = execute(kc, "print(var.get())")
    assert stream_text(outputs) == "from an async cell\n"


def wait_for_text(kc: BlockingKernelClient, seen: list[dict], parent_id: str, lines: int) -> str:
    """Read IOPub into ``seen`` until ``parent_id`` has printed ``lines`` lines."""
    deadline = time.monotonic() + 10
    while stream_of(seen, parent_id).count("\n") < lines:
        assert time.monotonic() < deadline, f"output so far: {stream_of(seen, parent_id)!r}"
        try:
            seen.append(kc.get_iopub_msg(timeout=0.5))
        except queue.Empty:
            pass
    return stream_of(seen, parent_id)


def stream_of(messages: list[dict], parent_id: str, name: str = "stdout") -> str:
    return "".join(
        m["content"]["text"]
        for m in messages
        if m["msg_type"] == "stream"
        and m["content"]["name"] == name
        and m["parent_header"].get("msg_id") == parent_id
    )


TICKER = """\
import anyio
ticks = []
async def ticker():
    for i in range(3):
        await anyio.sleep(0.2)
        ticks.append(i)
        print('tick', i)
"""


@pytest.mark.parametrize("starter", ["kernel task group", "asyncio.create_task"])
def test_background_task_outlives_its_cell(kc: BlockingKernelClient, backend: str, starter) -> None:
    """A task started in a cell keeps running after the cell's reply, while other
    cells execute, and its output goes to the cell that started it."""
    if starter == "asyncio.create_task":
        if backend != "asyncio":
            pytest.skip("asyncio.create_task is asyncio-only; trio uses the kernel task group")
        start = "import asyncio\ntask = asyncio.create_task(ticker())"
        finished = "task.done()"
    else:
        start = "import akernel\nakernel.task_group().start_soon(ticker)"
        finished = "len(ticks) == 3"
    start_id = run_ok(kc, TICKER + start)[0]["parent_header"]["msg_id"]
    seen: list[dict] = []
    # Another cell runs while the task goes on; what either produces is kept.
    msg_id = kc.execute("sleeping = True\nawait anyio.sleep(0.3)\nsleeping = False")
    seen += iopub_until_idle(kc, msg_id)
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    assert wait_for_text(kc, seen, start_id, 3) == "tick 0\ntick 1\ntick 2\n"
    assert user_value(kc, f"({finished}, ticks)") == "(True, [0, 1, 2])"


def test_kernel_task_group_api(kc: BlockingKernelClient) -> None:
    """``start`` returns what the task reports as started, like anyio's TaskGroup.start;
    the group is also ``get_ipython().kernel.task_group``."""
    code = """\
import akernel, anyio
group = akernel.task_group()
served = []
async def server(greeting, *, task_status=anyio.TASK_STATUS_IGNORED):
    task_status.started(f"{greeting}: listening")
    await anyio.sleep(0.1)
    served.append(greeting)
status = await group.start(server, "hello")
print(status, group is get_ipython().kernel.task_group)
"""
    assert stream_text(run_ok(kc, code)) == "hello: listening True\n"
    deadline = time.monotonic() + 10
    while user_value(kc, "served") != "['hello']":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_background_error_is_shown_in_its_cell(kc: BlockingKernelClient) -> None:
    """A failing task shows its traceback in the cell that started it; the other
    tasks of the group and the kernel go on."""
    code = """\
import akernel, anyio
survivor_beats = 0
async def survivor():
    global survivor_beats
    while True:
        await anyio.sleep(0.05)
        survivor_beats += 1
async def doomed():
    await anyio.sleep(0.2)
    raise ValueError("doomed task failed")
akernel.task_group().start_soon(survivor)
akernel.task_group().start_soon(doomed)
"""
    start_id = run_ok(kc, code)[0]["parent_header"]["msg_id"]
    deadline = time.monotonic() + 10
    while True:
        assert time.monotonic() < deadline, "no error output from the failed task"
        try:
            msg = kc.get_iopub_msg(timeout=0.5)
        except queue.Empty:
            continue
        if msg["msg_type"] == "error" and msg["parent_header"].get("msg_id") == start_id:
            break
    assert msg["content"]["ename"] == "ValueError"
    assert msg["content"]["evalue"] == "doomed task failed"
    traceback = "\n".join(msg["content"]["traceback"])
    assert "doomed" in traceback
    assert "akernel" not in traceback.split("doomed")[0], "kernel frames in the traceback"
    before = int(user_value(kc, "survivor_beats"))
    time.sleep(0.3)
    assert int(user_value(kc, "survivor_beats")) > before, "the failure cancelled its sibling"


def test_unretrieved_asyncio_task_error_is_shown_in_its_cell(
    kc: BlockingKernelClient, backend: str
) -> None:
    """asyncio reports a task exception nobody retrieved: the report goes to the
    cell that created the task, not only to the kernel's log."""
    if backend != "asyncio":
        pytest.skip("asyncio.create_task is asyncio-only; trio uses the kernel task group")
    code = """\
import asyncio
async def forgotten():
    await asyncio.sleep(0.1)
    raise LookupError("nobody awaited me")
asyncio.create_task(forgotten());  # no Out[] entry keeps it alive
"""
    start_id = run_ok(kc, code)[0]["parent_header"]["msg_id"]
    seen: list[dict] = []
    deadline = time.monotonic() + 10
    while "nobody awaited me" not in stream_of(seen, start_id, "stderr"):
        assert time.monotonic() < deadline, "no report of the failed task"
        try:
            seen.append(kc.get_iopub_msg(timeout=0.5))
        except queue.Empty:
            pass
    report = stream_of(seen, start_id, "stderr")
    assert "Task exception was never retrieved" in report
    assert "LookupError: nobody awaited me" in report


def test_interrupting_an_awaiting_cell_spares_background_tasks(fresh_kernel, backend: str) -> None:
    """The interrupted cell ends with KeyboardInterrupt; an earlier cell's task goes on."""
    km, kc = fresh_kernel
    run_ok(
        kc,
        "import akernel, anyio\n"
        "beats = 0\n"
        "async def heartbeat():\n"
        "    global beats\n"
        "    while True:\n"
        "        await anyio.sleep(0.05)\n"
        "        beats += 1\n"
        "akernel.task_group().start_soon(heartbeat)",
    )
    msg_id = kc.execute("print('waiting', flush=True)\nawait anyio.sleep(100)")
    while True:
        msg = kc.get_iopub_msg(timeout=10)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            break
    km.interrupt_kernel()
    reply = get_reply(kc, msg_id)
    # Requests sent before the failed cell's idle are aborted (stop_on_error).
    iopub_until_idle(kc, msg_id)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    before = int(user_value(kc, "beats"))
    time.sleep(0.5)
    assert int(user_value(kc, "beats")) > before, "the background task was cancelled"


def test_background_tasks_are_cancelled_at_shutdown(fresh_kernel, backend: str, tmp_path) -> None:
    """At shutdown, tasks of the kernel's group (and asyncio tasks) are cancelled:
    their cleanup runs, and the kernel exits."""
    km, kc = fresh_kernel
    marker = tmp_path / "cleanup"
    code = f"""\
import akernel, anyio
async def forever(name):
    try:
        await anyio.sleep_forever()
    finally:
        with open({str(marker)!r}, "a") as f:
            f.write(name + " cleaned up\\n")
akernel.task_group().start_soon(forever, "group task")
"""
    if backend == "asyncio":
        code += "import asyncio\nloose = asyncio.create_task(forever('asyncio task'))\n"
    run_ok(kc, code)
    km.shutdown_kernel(now=False)
    assert not km.is_alive()
    lines = sorted(marker.read_text().splitlines())
    expected = ["group task cleaned up"]
    if backend == "asyncio":
        expected = ["asyncio task cleaned up", *expected]
    assert lines == expected
