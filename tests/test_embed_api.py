"""The embedding API in process: a kernel served in the test's own event loop.

The test is the host application: it runs on asyncio or trio (anyio's pytest
plugin), serves a kernel with ``akernel.serve_kernel`` or
``akernel.embedded_kernel``, and talks to it with jupyter_client from a
worker thread, as any client would.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from jupyter_client.blocking import BlockingKernelClient

import akernel

from .utils import TIMEOUT, get_reply, iopub_until_idle, stream_text

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def connect(path: str) -> BlockingKernelClient:
    kc = BlockingKernelClient(connection_file=path)
    kc.load_connection_file()
    kc.start_channels()
    kc.wait_for_ready(timeout=TIMEOUT)
    return kc


def run(kc: BlockingKernelClient, code: str) -> tuple[dict, list[dict]]:
    """Execute ``code``: its reply content and its own IOPub messages."""
    msg_id = kc.execute(code)
    reply = get_reply(kc, msg_id)
    own = [m for m in iopub_until_idle(kc, msg_id) if m["parent_header"].get("msg_id") == msg_id]
    return reply["content"], own


async def in_thread(func: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking client function without blocking the host's loop."""
    return await anyio.to_thread.run_sync(func, *args)


async def test_kernel_serves_in_the_hosts_loop(tmp_path: Path, anyio_backend: str) -> None:
    """Cells run in the host's loop and await its objects; the host goes on
    meanwhile; a client's shutdown stops the kernel, not the host."""
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    thread_start, switch_interval = threading.Thread.start, sys.getswitchinterval()
    saved_stdout = sys.stdout
    ticks = 0
    released = anyio.Event()
    namespace: dict[str, Any] = {"released": released, "host_ticks": lambda: ticks}

    async def host_work() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    connection_file = tmp_path / "embedded.json"
    async with anyio.create_task_group() as tg:
        tg.start_soon(host_work)
        path = await tg.start(
            lambda task_status: akernel.serve_kernel(
                connection_file=connection_file, user_ns=namespace, task_status=task_status
            )
        )
        assert path == str(connection_file) and connection_file.exists()
        # Nothing of the host's was taken.
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
        assert threading.Thread.start is thread_start
        assert sys.getswitchinterval() == switch_interval
        kc = await in_thread(connect, path)
        try:
            # The cell waits for the host to set its event.
            msg_id = kc.execute(
                "import sniffio\n"
                "before = host_ticks()\n"
                "await released.wait()\n"
                "print(sniffio.current_async_library(), host_ticks() > before)"
            )
            await anyio.sleep(0.3)
            released.set()
            reply = await in_thread(get_reply, kc, msg_id)
            assert reply["content"]["status"] == "ok", reply["content"]
            outputs = await in_thread(iopub_until_idle, kc, msg_id)
            assert stream_text(outputs) == f"{anyio_backend} True\n"
            # The host's own dict is the user namespace.
            content, _ = await in_thread(run, kc, "from_the_kernel = 42")
            assert content["status"] == "ok"
            assert namespace["from_the_kernel"] == 42
            await in_thread(kc.shutdown)
        finally:
            await in_thread(kc.stop_channels)
        with anyio.fail_after(TIMEOUT):
            while connection_file.exists():
                await anyio.sleep(0.05)
        ticks_after_stop = ticks
        await anyio.sleep(0.1)
        assert ticks > ticks_after_stop, "the host stopped with the kernel"
        tg.cancel_scope.cancel()
    assert sys.stdout is saved_stdout
    assert namespace["from_the_kernel"] == 42  # the namespace is the host's, left as is


async def test_cancelling_the_kernel_leaves_the_host_running(anyio_backend: str) -> None:
    async with akernel.embedded_kernel() as kernel:
        path = Path(kernel.connection_file)
        assert path.exists() and not kernel.stopped
        kernel.stop()
        with anyio.fail_after(TIMEOUT):
            await kernel.wait_stopped()
    assert not path.exists()
    # Another kernel can start once the first has stopped.
    async with akernel.embedded_kernel(user_ns={"n": 1}) as kernel:
        kc = await in_thread(connect, kernel.connection_file)
        try:
            content, outputs = await in_thread(run, kc, "print(n + 1)")
            assert content["status"] == "ok"
            assert stream_text(outputs) == "2\n"
        finally:
            await in_thread(kc.stop_channels)


async def test_one_kernel_per_process(anyio_backend: str) -> None:
    async with akernel.embedded_kernel():
        with pytest.raises(RuntimeError, match="already running"):
            async with akernel.embedded_kernel():
                pass


async def test_interrupt_request_cancels_an_awaiting_cell(anyio_backend: str) -> None:
    """No SIGINT handler in embedded mode: an interrupt_request cancels the awaiting cell."""
    async with akernel.embedded_kernel() as kernel:
        kc = await in_thread(connect, kernel.connection_file)
        try:
            msg_id = kc.execute(
                "import anyio\nprint('waiting', flush=True)\nawait anyio.sleep(100)"
            )

            def wait_then_interrupt() -> dict:
                while True:
                    msg = kc.get_iopub_msg(timeout=TIMEOUT)
                    if msg["msg_type"] == "stream" and msg["parent_header"].get("msg_id") == msg_id:
                        break
                kc.control_channel.send(kc.session.msg("interrupt_request", {}))
                return get_reply(kc, msg_id)

            reply = await in_thread(wait_then_interrupt)
            assert reply["content"]["status"] == "error"
            assert reply["content"]["ename"] == "KeyboardInterrupt"
            await in_thread(iopub_until_idle, kc, msg_id)
            content, outputs = await in_thread(run, kc, "print('still here')")
            assert content["status"] == "ok"
            assert stream_text(outputs) == "still here\n"
        finally:
            await in_thread(kc.stop_channels)


async def test_host_output_stays_with_the_host(
    anyio_backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the host prints goes to its stdout, what a cell prints goes to the client."""
    async with akernel.embedded_kernel() as kernel, anyio.create_task_group() as tg:
        kc = await in_thread(connect, kernel.connection_file)

        async def host_logging() -> None:
            while True:
                print("host log line")
                await anyio.sleep(0.02)

        try:
            tg.start_soon(host_logging)
            msg_id = kc.execute(
                "import anyio\n"
                "for i in range(3):\n"
                "    print('cell', i)\n"
                "    await anyio.sleep(0.05)"
            )
            everything = await in_thread(iopub_until_idle, kc, msg_id)
            assert stream_text(everything) == "cell 0\ncell 1\ncell 2\n"
            tg.cancel_scope.cancel()
        finally:
            await in_thread(kc.stop_channels)
    captured = capsys.readouterr().out
    assert "host log line" in captured
    assert "cell" not in captured
