"""Serve a kernel inside an application's own event loop, asyncio or trio.

The kernel becomes a few more tasks in the host's loop: cells run there and
can ``await`` the application's own objects, and the application keeps
running while the kernel is idle. Any Jupyter client can connect with the
connection file the kernel writes (``jupyter console --existing FILE``).

Differences from a kernel started by a Jupyter frontend, so the host keeps
what is its own:

* SIGINT and SIGTERM stay with the host. An ``interrupt_request`` cancels a
  cell suspended in ``await`` (the cell ends with ``KeyboardInterrupt``); a
  cell that holds the loop cannot be interrupted unless the kernel is asked
  to take SIGINT (``capture_sigint=True``).
* Output written by cells (and by tasks and threads they start with their
  context) goes to the client; the host's own output stays where it went.
  File descriptors 1 and 2 are not redirected.
* ``threading.Thread.start`` is not patched; the GIL switch interval is
  left alone.
* A ``shutdown_request`` (or cancelling the kernel) stops the kernel only.

One kernel at a time per process: IPython's shell is a process singleton.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import anyio.abc
import zmq
from traitlets.config import Config

from .execution import running_task_group_or_none
from .kernel import Kernel
from .transport import ConnectionInfo, bind_kernel_sockets
from .wire import new_id

log = logging.getLogger("akernel")

EMBEDDED_DEFAULTS: dict[str, Any] = {
    "capture_sigint": False,
    "handle_sigterm": False,
    "capture_fd_output": False,
    "propagate_thread_context": False,
    "orphan_output_to_last_cell": False,
    "gil_switch_interval": 0.0,
    "parent_pid": 0,
}

_file_numbers = itertools.count(1)


def current_backend() -> str:
    """``"trio"`` or ``"asyncio"``: the event loop running the caller."""
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
            return "trio"
        except RuntimeError:
            pass
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError("an embedded kernel needs a running asyncio or trio loop") from None
    return "asyncio"


async def serve_kernel(
    *,
    connection_file: str | os.PathLike[str] | None = None,
    user_ns: dict[str, Any] | None = None,
    user_module: ModuleType | None = None,
    transport: str = "tcp",
    ip: str = "",
    curve: bool = False,
    config: Config | None = None,
    task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
    **traits: Any,
) -> None:
    """Serve a kernel in the running event loop until a client shuts it down,
    or until cancelled.

    ``connection_file`` is where to write the connection file (default: a new
    file in Jupyter's runtime directory); it is removed when the kernel stops.
    ``user_ns`` (and ``user_module``) are the namespace cells run in.
    ``curve`` encrypts every socket with CurveZMQ (a fresh keypair, written to
    the connection file for clients; jupyter_client's
    ``KernelClient.load_connection_file`` uses it, ``jupyter console
    --existing`` does not yet).
    ``traits`` set :class:`akernel.kernel.Kernel` options, over the embedded
    defaults (e.g. ``capture_sigint=True``). With ``await tg.start(...)``,
    the connection file's path is returned once clients can connect.
    """
    backend = current_backend()
    _check_none_running()
    path = Path(connection_file) if connection_file else _new_connection_file()
    info = ConnectionInfo(transport=transport, key=new_id())
    info.ip = ip or ("127.0.0.1" if transport == "tcp" else str(path.with_suffix("")) + "-ipc")
    if curve:
        if not zmq.has("curve"):
            raise RuntimeError("curve=True needs a libzmq built with CurveZMQ support")
        info.make_curve_keys()
    sockets = bind_kernel_sockets(info)
    try:
        info.write(path)
        kernel = Kernel(
            info,
            sockets,
            backend=backend,
            config=config,
            user_ns=user_ns,
            user_module=user_module,
            connection_file=path.resolve(),
            **{**EMBEDDED_DEFAULTS, **traits},
        )
        log.info("embedded kernel: connect with: %s", connect_hint(path, info.uses_curve))
        if warning := info.unencrypted_warning():
            log.warning(warning)
        task_status.started(str(path))
        await kernel.serve()
    finally:
        sockets.close()
        # Each kernel has its own zmq context (and I/O thread): end it.
        sockets.context.destroy(linger=0)
        path.unlink(missing_ok=True)


class EmbeddedKernel:
    """A kernel served by :func:`embedded_kernel`, seen from the host."""

    def __init__(self, connection_file: str, stopped: anyio.Event, scope: anyio.CancelScope):
        self.connection_file = connection_file
        self._stopped = stopped
        self._scope = scope

    @property
    def stopped(self) -> bool:
        """Whether the kernel has stopped (a client shut it down, or :meth:`stop`)."""
        return self._stopped.is_set()

    async def wait_stopped(self) -> None:
        """Wait until a client shuts the kernel down."""
        await self._stopped.wait()

    def stop(self) -> None:
        """Stop the kernel; the host goes on."""
        self._scope.cancel()


@asynccontextmanager
async def embedded_kernel(**kwargs: Any) -> AsyncIterator[EmbeddedKernel]:
    """Serve a kernel in the background of the ``async with`` block.

    Takes the arguments of :func:`serve_kernel`. The kernel stops when the
    block ends, or earlier if a client shuts it down (the block goes on)::

        async with akernel.embedded_kernel(user_ns={"app": app}) as kernel:
            print("connect with: jupyter console --existing", kernel.connection_file)
            await app.serve_forever()
    """
    _check_none_running()
    stopped = anyio.Event()

    async def serve(*, task_status: anyio.abc.TaskStatus[str]) -> None:
        try:
            await serve_kernel(task_status=task_status, **kwargs)
        finally:
            stopped.set()

    async with anyio.create_task_group() as tg:
        path = await tg.start(serve)
        try:
            yield EmbeddedKernel(path, stopped, tg.cancel_scope)
        finally:
            tg.cancel_scope.cancel()


def embed_kernel(
    local_ns: dict[str, Any] | None = None,
    module: ModuleType | None = None,
    *,
    backend: str = "asyncio",
    **kwargs: Any,
) -> None:
    """Serve a kernel in the caller's namespace until a client shuts it down.

    For plain (not async) code, like ``IPython.embed_kernel``: blocks, runs an
    event loop of its own (``backend``), and prints how to connect.
    ``local_ns`` and ``module`` default to the caller's locals and module.
    Ctrl-C stops the kernel and returns.
    """
    caller = sys._getframe(1)
    if local_ns is None:
        local_ns = caller.f_locals
    if module is None:
        module = sys.modules.get(caller.f_globals.get("__name__", "")) or _module_of(
            caller.f_globals
        )

    # Ctrl-C stops the kernel, as a signal the loop receives: a
    # KeyboardInterrupt raised wherever the loop happens to be could corrupt
    # trio's cancel scopes. (With capture_sigint, Ctrl-C interrupts cells.)
    stop_on_ctrl_c = not kwargs.get("capture_sigint", False)

    async def main() -> None:
        async with (
            embedded_kernel(user_ns=local_ns, user_module=module, **kwargs) as kernel,
            anyio.create_task_group() as tg,
        ):
            if stop_on_ctrl_c:
                tg.start_soon(_stop_on_signal, kernel, signal.SIGINT)
            hint = connect_hint(kernel.connection_file, kwargs.get("curve"))
            print(f"akernel: connect with: {hint}", file=sys.stderr)
            await kernel.wait_stopped()
            tg.cancel_scope.cancel()

    try:
        anyio.run(main, backend=backend)
    except KeyboardInterrupt:  # before the signal receiver was in place
        pass


async def _stop_on_signal(kernel: EmbeddedKernel, signum: int) -> None:
    with anyio.open_signal_receiver(signum) as received:
        async for _ in received:
            kernel.stop()
            return


def connect_hint(connection_file: str | os.PathLike[str], curve: bool | None) -> str:
    """How a user connects to a kernel serving ``connection_file``."""
    if curve:
        # jupyter_client 8.10's console app reads the keys but connects without them.
        return (
            f"a jupyter_client KernelClient that loads {connection_file}"
            " (CurveZMQ: jupyter console cannot encrypt yet)"
        )
    return f"jupyter console --existing {connection_file}"


def _check_none_running() -> None:
    if running_task_group_or_none() is not None:
        raise RuntimeError("an akernel kernel is already running in this process")


def _module_of(namespace: dict[str, Any]) -> ModuleType:
    module = ModuleType(namespace.get("__name__", "__embedded__"))
    module.__dict__.update(namespace)
    return module


def _new_connection_file() -> Path:
    from jupyter_core.paths import jupyter_runtime_dir

    runtime = Path(jupyter_runtime_dir())
    runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
    return runtime / f"kernel-{os.getpid()}-{next(_file_numbers)}.json"
