"""Async-native cells: the kernel's own event loop runs them, on asyncio and trio."""

from __future__ import annotations

import queue
import time

import pytest
from jupyter_client.blocking import BlockingKernelClient

from .utils import execute, get_reply, iopub_until_idle, stream_text, user_value


def run_ok(kc: BlockingKernelClient, code: str) -> list[dict]:
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    return outputs


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


def test_asyncio_task_outlives_its_cell(kc: BlockingKernelClient, backend: str) -> None:
    """On asyncio, a task created in a cell keeps running after the cell's reply,
    while other cells execute, and its output goes to the cell that created it."""
    if backend != "asyncio":
        pytest.skip("trio has no free-floating tasks: the kernel nursery is not built yet")
    start_outputs = run_ok(
        kc,
        "import asyncio\n"
        "ticks = []\n"
        "async def ticker():\n"
        "    for i in range(3):\n"
        "        await asyncio.sleep(0.2)\n"
        "        ticks.append(i)\n"
        "        print('tick', i)\n"
        "task = asyncio.create_task(ticker())",
    )
    start_id = start_outputs[0]["parent_header"]["msg_id"]
    seen: list[dict] = []
    # Another cell runs while the task goes on; what either produces is kept.
    msg_id = kc.execute("sleeping = True\nawait asyncio.sleep(0.3)\nsleeping = False")
    seen += iopub_until_idle(kc, msg_id)
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    deadline = time.monotonic() + 10
    while stream_of(seen, start_id).count("\n") < 3:
        assert time.monotonic() < deadline, f"ticks so far: {stream_of(seen, start_id)!r}"
        try:
            seen.append(kc.get_iopub_msg(timeout=0.5))
        except queue.Empty:
            pass
    assert stream_of(seen, start_id) == "tick 0\ntick 1\ntick 2\n"
    assert user_value(kc, "(task.done(), ticks)") == "(True, [0, 1, 2])"


def stream_of(messages: list[dict], parent_id: str) -> str:
    return "".join(
        m["content"]["text"]
        for m in messages
        if m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == parent_id
    )


def test_interrupting_an_awaiting_cell_spares_background_tasks(fresh_kernel, backend: str) -> None:
    """The interrupted cell ends with KeyboardInterrupt; an earlier cell's task goes on."""
    km, kc = fresh_kernel
    if backend != "asyncio":
        pytest.skip("trio has no free-floating tasks: the kernel nursery is not built yet")
    run_ok(
        kc,
        "import asyncio\n"
        "beats = 0\n"
        "async def heartbeat():\n"
        "    global beats\n"
        "    while True:\n"
        "        await asyncio.sleep(0.05)\n"
        "        beats += 1\n"
        "beating = asyncio.create_task(heartbeat())",
    )
    msg_id = kc.execute("print('waiting', flush=True)\nawait asyncio.sleep(100)")
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
    assert user_value(kc, "beating.cancelled() or beating.done()") == "False"
    run_ok(kc, "beating.cancel()")
