"""The embedding API in process: a kernel served in the test's own event loop.

The test is the host application: it runs on asyncio or trio (anyio's pytest
plugin), serves a kernel with ``akernel.serve_kernel`` or
``akernel.embedded_kernel``, and talks to it with jupyter_client from a
worker thread, as any client would.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import signal
import sys
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from jupyter_client.blocking import BlockingKernelClient

import akernel
from akernel.transport.connection import CHANNELS

from .embed_hosts import free_ports
from .utils import TIMEOUT, get_reply, iopub_until_idle, stream_text

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

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
        with pytest.raises(akernel.KernelStartError, match="already running"):
            async with akernel.embedded_kernel():
                pass
        # Also between a kernel's start and its first served request.
        second = akernel.EmbeddedKernel()
        with pytest.raises(akernel.KernelStartError, match="already running"):
            await second.serve()


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


# --- Stopping the kernel stops the kernel only (issue 16, item 1) ----------------------


async def test_stop_from_the_block_leaves_the_block_running(anyio_backend: str) -> None:
    """The body of ``async with embedded_kernel()`` is the host's code: ``stop()``
    ends the kernel, and the body goes on awaiting what it awaits."""
    went_on = False
    async with akernel.embedded_kernel() as kernel:
        path = Path(kernel.connection_file)
        kernel.stop()
        with anyio.fail_after(TIMEOUT):
            await kernel.wait_stopped()
        assert kernel.stopped and not path.exists()
        # A checkpoint: a body inside the kernel's cancel scope is cancelled here.
        await anyio.sleep(0.01)
        went_on = True
    assert went_on


async def test_stop_from_another_task_leaves_the_hosts_server_running(
    anyio_backend: str,
) -> None:
    """The host serves requests in the block; another task stops the kernel; the
    host's server keeps answering, and ends only when the host says so."""
    send, receive = anyio.create_memory_object_stream[str](10)
    answered: list[str] = []

    async def serve_forever() -> None:  # the host's own server, the block's body
        async for request in receive:
            answered.append(request.upper())

    async with akernel.embedded_kernel() as kernel, anyio.create_task_group() as tg:

        async def operator() -> None:  # e.g. an admin endpoint of the host
            await send.send("before")
            kernel.stop()
            await kernel.wait_stopped()
            await send.send("after")
            await send.aclose()

        tg.start_soon(operator)
        with anyio.fail_after(TIMEOUT):
            await serve_forever()
    assert answered == ["BEFORE", "AFTER"]
    assert kernel.stopped


# --- The host's exceptions, and start-up failures (issue 16, item 2) ---------------------


async def test_exceptions_of_the_block_come_out_unchanged(anyio_backend: str) -> None:
    with pytest.raises(KeyError) as caught:
        async with akernel.embedded_kernel() as kernel:
            raise KeyError("the host's own")
    assert type(caught.value) is KeyError and caught.value.args == ("the host's own",)
    assert kernel.stopped and not Path(kernel.connection_file).exists()
    # The host's own exception group is its own too: not wrapped, not rebuilt.
    group = ExceptionGroup("the host's group", [ValueError(1), TypeError(2)])
    with pytest.raises(ExceptionGroup) as caught_group:
        async with akernel.embedded_kernel():
            raise group
    assert caught_group.value is group
    with pytest.raises(SystemExit) as caught_exit:
        async with akernel.embedded_kernel():
            raise SystemExit(3)
    assert caught_exit.value.code == 3
    # The host's cancellation stays a cancellation.
    with anyio.move_on_after(0.05) as scope:
        async with akernel.embedded_kernel():
            await anyio.sleep_forever()
    assert scope.cancelled_caught


async def test_start_failures_raise_kernel_start_error(anyio_backend: str, tmp_path: Path) -> None:
    """Every entry point raises the one public exception type, the cause chained,
    and a bad file is left as it was."""
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert issubclass(akernel.KernelStartError, RuntimeError)
    with pytest.raises(akernel.KernelStartError, match="not valid JSON") as caught:
        async with akernel.embedded_kernel(connection_file=bad):
            pass
    assert caught.value.__cause__ is not None
    async with anyio.create_task_group() as tg:
        with pytest.raises(akernel.KernelStartError, match="not valid JSON"):
            await tg.start(partial(akernel.serve_kernel, connection_file=bad))
    kernel = akernel.EmbeddedKernel(connection_file=bad)
    async with anyio.create_task_group() as tg:
        tg.start_soon(swallow_start_error, kernel)
        with anyio.fail_after(TIMEOUT), pytest.raises(akernel.KernelStartError):
            await kernel.ready()
    assert kernel.stopped
    assert bad.read_text() == "{not json"
    stopped_early = akernel.EmbeddedKernel()
    stopped_early.stop()
    with pytest.raises(akernel.KernelStartError, match="stopped before it started"):
        await stopped_early.ready()
    with pytest.raises(akernel.KernelStartError, match="stopped before it started"):
        await stopped_early.serve()
    with pytest.raises(akernel.KernelStartError, match="ports: unknown channel"):
        akernel.EmbeddedKernel(ports={"shel": 5000})
    misspelt = r"unknown kernel option\(s\): capture_sigin "
    with pytest.raises(akernel.KernelStartError, match=misspelt):
        akernel.EmbeddedKernel(capture_sigin=True)
    with pytest.raises(akernel.KernelStartError, match="empty key"):
        async with akernel.embedded_kernel(key=""):
            pass
    # Nothing was left holding the process's kernel slot.
    async with akernel.embedded_kernel() as kernel:
        assert Path(kernel.connection_file).exists()


async def swallow_start_error(kernel: akernel.EmbeddedKernel) -> None:
    with pytest.raises(akernel.KernelStartError):
        await kernel.serve()


def test_start_without_a_running_loop_raises_kernel_start_error() -> None:
    coroutine = akernel.serve_kernel()
    with pytest.raises(akernel.KernelStartError, match="running asyncio or trio loop"):
        coroutine.send(None)
    coroutine.close()


@pytest.mark.parametrize("loop_backend", ["asyncio", "trio"])
def test_embed_kernel_start_failure_raises_kernel_start_error(
    tmp_path: Path, loop_backend: str
) -> None:
    with free_ports(1) as [port], pytest.raises(akernel.KernelStartError, match=str(port)):
        akernel.embed_kernel(backend=loop_backend, ports={"control": port})


# --- A known address: connection files and explicit ports (issue 16, item 6) -------------


async def test_a_given_connection_file_is_honoured(anyio_backend: str, tmp_path: Path) -> None:
    """Its ports and key are the kernel's; it is neither rewritten nor removed."""
    ports = dict(zip(CHANNELS, free_ports(5).release(), strict=True))
    given = tmp_path / "known.json"
    info = {f"{channel}_port": port for channel, port in ports.items()}
    info |= {"ip": "127.0.0.1", "transport": "tcp", "key": "a-key-the-service-chose"}
    info |= {"signature_scheme": "hmac-sha256", "kernel_name": ""}
    given.write_text(json.dumps(info))
    written = given.read_bytes()
    async with akernel.embedded_kernel(connection_file=given) as kernel:
        assert kernel.connection_file == str(given)
        assert given.read_bytes() == written
        assert {k: kernel.connection_info[k] for k in info} == info
        kc = await in_thread(connect, str(given))
        try:
            assert kc.session.key == b"a-key-the-service-chose"
            assert kc.shell_port == ports["shell"]
            content, outputs = await in_thread(run, kc, "print('on the known address')")
            assert content["status"] == "ok" and stream_text(outputs) == "on the known address\n"
        finally:
            await in_thread(kc.stop_channels)
        assert given.read_bytes() == written
    assert given.read_bytes() == written  # not the kernel's file: left where it was
    # A file that lacks a key and ports gets them, and says so; it stays afterwards.
    partial_file = tmp_path / "partial.json"
    partial_file.write_text(json.dumps({"ip": "127.0.0.1", "shell_port": ports["shell"]}))
    async with akernel.embedded_kernel(connection_file=partial_file) as kernel:
        completed = json.loads(partial_file.read_text())
        assert completed == kernel.connection_info
        assert completed["shell_port"] == ports["shell"] and completed["key"]
        assert all(completed[f"{c}_port"] > 0 for c in CHANNELS)
    assert json.loads(partial_file.read_text()) == completed


async def test_explicit_ports_and_key(anyio_backend: str, tmp_path: Path) -> None:
    """Explicit ports (some, the others chosen) and key are served and written to
    the file, which the kernel made and so removes."""
    shell, control = free_ports(2).release()
    path = tmp_path / "explicit.json"
    async with akernel.embedded_kernel(
        connection_file=path,
        ports={"shell": shell, "control": control},
        key="chosen",
        ip="127.0.0.1",
    ) as kernel:
        written = json.loads(path.read_text())
        assert (written["shell_port"], written["control_port"]) == (shell, control)
        assert written["key"] == "chosen" and written["ip"] == "127.0.0.1"
        assert all(written[f"{c}_port"] > 0 for c in CHANNELS)
        assert kernel.connection_info == written
        kc = await in_thread(connect, str(path))
        try:
            content, _ = await in_thread(run, kc, "1")
            assert content["status"] == "ok"
        finally:
            await in_thread(kc.stop_channels)
    assert not path.exists()


async def test_a_port_in_use_is_named(anyio_backend: str, tmp_path: Path) -> None:
    path = tmp_path / "busy.json"
    with free_ports(1) as [busy]:
        with pytest.raises(akernel.KernelStartError, match=f"shell port {busy} is already in use"):
            async with akernel.embedded_kernel(connection_file=path, ports={"shell": busy}):
                pass
    assert not path.exists()  # nothing left behind


# --- Readiness on every entry point (issue 16, item 11) ----------------------------------


async def test_ready_returns_the_connection_file_once_clients_can_connect(
    anyio_backend: str,
) -> None:
    """``EmbeddedKernel.serve`` in a task of its own (``asyncio.create_task`` on
    asyncio), and ``await kernel.ready()``."""
    kernel = akernel.EmbeddedKernel(user_ns={"n": 41})
    async with anyio.create_task_group() as tg:
        if anyio_backend == "asyncio":
            task = asyncio.create_task(kernel.serve())
        else:
            tg.start_soon(kernel.serve)
        with anyio.fail_after(TIMEOUT):
            path = await kernel.ready()
        assert path == kernel.connection_file
        assert json.loads(Path(path).read_text()) == kernel.connection_info
        assert kernel.connection_info["shell_port"] > 0
        kc = await in_thread(connect, path)
        try:
            content, outputs = await in_thread(run, kc, "print(n + 1)")
            assert content["status"] == "ok" and stream_text(outputs) == "42\n"
        finally:
            await in_thread(kc.stop_channels)
        kernel.stop()
        if anyio_backend == "asyncio":
            with anyio.fail_after(TIMEOUT):
                await task
        with anyio.fail_after(TIMEOUT):
            await kernel.wait_stopped()
    assert not Path(path).exists()
    # serve_kernel with TaskGroup.start returns the path once clients can connect.
    async with anyio.create_task_group() as tg:
        path = await tg.start(akernel.serve_kernel)
        assert Path(path).exists()
        kc = await in_thread(connect, path)
        await in_thread(kc.stop_channels)
        tg.cancel_scope.cancel()
    assert not Path(path).exists()


# --- Type information for users' type checkers (issue 16, item 10) -----------------------


def test_the_package_is_marked_typed() -> None:
    """PEP 561: type checkers use an installed package's annotations only when
    its directory holds ``py.typed``."""
    marker = importlib.resources.files("akernel") / "py.typed"
    assert marker.is_file()
