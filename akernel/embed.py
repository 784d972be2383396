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
* Stopping the kernel (a client's ``shutdown_request``, :meth:`EmbeddedKernel.stop`,
  cancelling :func:`serve_kernel`) stops the kernel only.
* A kernel that cannot start raises :class:`akernel.KernelStartError`.

One kernel at a time per process: IPython's shell is a process singleton.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import anyio.abc
import zmq
from traitlets.config import Config

from . import KernelStartError
from .execution import running_task_group_or_none
from .kernel import Kernel
from .transport import ConnectionError_, ConnectionInfo, KernelSockets, bind_kernel_sockets
from .transport.connection import connection_to_serve, explicit_connection_fields

log = logging.getLogger("akernel")

EMBEDDED_DEFAULTS: dict[str, Any] = {
    # Not a user option: what the kernel does differently in someone else's process
    # (Ctrl-C on an idle kernel goes to the host's handler, input() never blocks the loop).
    "embedded": True,
    "capture_sigint": False,
    "handle_sigterm": False,
    "capture_fd_output": False,
    "propagate_thread_context": False,
    "orphan_output_to_last_cell": False,
    "gil_switch_interval": 0.0,
    "parent_pid": 0,
}

_file_numbers = itertools.count(1)
# The kernel that holds this process's one kernel slot, from its start to its end
# (the shell's own marker is only set once the kernel serves).
_claimed: EmbeddedKernel | None = None


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


class EmbeddedKernel:
    """A kernel to serve in the running event loop, seen from the host.

    Takes the arguments of :func:`serve_kernel`; nothing happens until
    :meth:`serve` is awaited. For plain asyncio, where there is no
    ``TaskGroup.start`` to report readiness::

        kernel = akernel.EmbeddedKernel(user_ns={"app": app})
        task = asyncio.create_task(kernel.serve())
        path = await kernel.ready()  # clients can connect now

    Use it from the event loop it serves in (not from other threads).
    """

    def __init__(
        self,
        *,
        connection_file: str | os.PathLike[str] | None = None,
        user_ns: dict[str, Any] | None = None,
        user_module: ModuleType | None = None,
        transport: str | None = None,
        ip: str | None = None,
        ports: Mapping[str, int] | None = None,
        key: str | None = None,
        curve: bool = False,
        config: Config | None = None,
        **traits: Any,
    ) -> None:
        self._path = Path(connection_file) if connection_file is not None else None
        self._user_ns = user_ns
        self._user_module = user_module
        try:
            self._explicit = explicit_connection_fields(transport, ip, ports, key)
        except ConnectionError_ as e:
            raise KernelStartError(str(e)) from e
        options = Kernel.class_trait_names(config=True)
        if unknown := sorted(set(traits) - set(options)):
            # traitlets would ignore them: a misspelt option must not pass unseen.
            raise KernelStartError(
                f"unknown kernel option(s): {', '.join(unknown)}"
                f" (options: {', '.join(sorted(options))})"
            )
        self._curve = curve
        self._config = config
        self._traits = traits
        self._info: ConnectionInfo | None = None
        self._owned_file: Path | None = None
        self._sockets: KernelSockets | None = None
        self._kernel: Kernel | None = None
        self._served = False
        self._stop_requested = False
        self._scope: anyio.CancelScope | None = None
        self._start_error: KernelStartError | None = None
        self._settled = anyio.Event()  # started, or failed to
        self._stopped = anyio.Event()

    # -- the host's view ----------------------------------------------------------

    @property
    def connection_file(self) -> str:
        """The connection file's path (once the kernel is ready)."""
        if self._info is None:
            raise RuntimeError("the kernel is not ready yet: await kernel.ready() first")
        return str(self._path)

    @property
    def connection_info(self) -> dict[str, Any]:
        """What the connection file says (ports, key, ...), once the kernel is ready:
        what jupyter_client's ``KernelClient.load_connection_info`` takes."""
        if self._info is None:
            raise RuntimeError("the kernel is not ready yet: await kernel.ready() first")
        return self._info.to_dict()

    async def ready(self) -> str:
        """Wait until clients can connect; the connection file's path.

        Raises :class:`akernel.KernelStartError` if the kernel could not start
        (also when it was stopped before it started).
        """
        await self._settled.wait()
        if self._start_error is not None:
            raise self._start_error
        return self.connection_file

    @property
    def stopped(self) -> bool:
        """Whether the kernel has stopped (a client shut it down, :meth:`stop`, or
        it could not start)."""
        return self._stopped.is_set()

    async def wait_stopped(self) -> None:
        """Wait until the kernel has stopped and released what it held."""
        await self._stopped.wait()

    def stop(self) -> None:
        """Stop the kernel; the host goes on. Returns at once (see :meth:`wait_stopped`).

        Before :meth:`serve`, it makes the kernel never start (:meth:`ready` raises)."""
        self._stop_requested = True
        if self._scope is not None:
            self._scope.cancel()
        elif not self._served:
            self._served = True
            self._failed_start(KernelStartError("the kernel was stopped before it started"))

    # -- serving ------------------------------------------------------------------

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until a client shuts the kernel down, :meth:`stop`, or cancellation.

        Raises :class:`akernel.KernelStartError` if it cannot start. With anyio's
        ``await tg.start(kernel.serve)``, the connection file's path is returned
        once clients can connect.
        """
        self._start()
        task_status.started(self.connection_file)
        await self._run()

    def _start(self) -> None:
        """Bind the sockets and write the connection file: from here on clients can
        connect. Raises :class:`KernelStartError`, leaving nothing behind."""
        global _claimed
        if self._start_error is not None:
            raise self._start_error
        try:
            if self._served:
                raise KernelStartError("this EmbeddedKernel has served already: make a new one")
            self._served = True
            try:
                backend = current_backend()
            except RuntimeError as e:
                raise KernelStartError(str(e)) from e
            if _claimed is not None or running_task_group_or_none() is not None:
                raise KernelStartError("an akernel kernel is already running in this process")
            _claimed = self
            try:
                self._bind_and_build(backend)
            except BaseException as e:
                _claimed = None
                if isinstance(e, Exception) and not isinstance(e, KernelStartError):
                    raise KernelStartError(f"cannot start the kernel: {e}") from e
                raise
        except KernelStartError as e:
            self._failed_start(e)
            raise
        self._settled.set()

    def _failed_start(self, error: KernelStartError) -> None:
        self._start_error = error
        self._settled.set()
        self._stopped.set()

    def _bind_and_build(self, backend: str) -> None:
        given = self._path is not None
        path = self._path or _new_connection_file()
        info, existed, original = connection_to_serve(path, given, self._explicit)
        if self._curve and not info.uses_curve:
            if not zmq.has("curve"):
                raise KernelStartError("curve=True needs a libzmq built with CurveZMQ support")
            info.make_curve_keys()
        sockets = bind_kernel_sockets(info)
        created = False
        try:
            # Clients only learn what the kernel chose (ports, a key) from the file;
            # a file given complete is left exactly as it was.
            if info.to_dict() != original:
                info.write(path)
            created = not existed
            kernel = Kernel(
                info,
                sockets,
                backend=backend,
                config=self._config,
                user_ns=self._user_ns,
                user_module=self._user_module,
                connection_file=path.resolve(),
                **{**EMBEDDED_DEFAULTS, **self._traits},
            )
        except BaseException:
            _close(sockets)
            if created:
                path.unlink(missing_ok=True)
            raise
        self._path, self._info, self._sockets, self._kernel = path, info, sockets, kernel
        self._owned_file = path.resolve() if created else None
        log.info("embedded kernel: connect with: %s", connect_hint(path, info.uses_curve))
        if warning := info.unencrypted_warning():
            log.warning(warning)

    async def _run(self) -> None:
        """Serve the started kernel; only :meth:`stop` (or the caller's own
        cancellation) ends it early. Releases everything at the end."""
        global _claimed
        assert self._kernel is not None and self._sockets is not None
        try:
            # The kernel's own scope: stop() cancels the kernel, never its caller.
            with anyio.CancelScope() as self._scope:
                if self._stop_requested:
                    self._scope.cancel()
                await self._kernel.serve()
        finally:
            _close(self._sockets)
            if self._owned_file is not None:  # only a file the kernel created
                self._owned_file.unlink(missing_ok=True)
            if _claimed is self:
                _claimed = None
            self._stopped.set()


async def serve_kernel(
    *,
    connection_file: str | os.PathLike[str] | None = None,
    user_ns: dict[str, Any] | None = None,
    user_module: ModuleType | None = None,
    transport: str | None = None,
    ip: str | None = None,
    ports: Mapping[str, int] | None = None,
    key: str | None = None,
    curve: bool = False,
    config: Config | None = None,
    task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
    **traits: Any,
) -> None:
    """Serve a kernel in the running event loop until a client shuts it down,
    or until cancelled.

    ``connection_file``: where the connection file is (default: a new file in
    Jupyter's runtime directory). A file that exists is read and honoured (its
    ip, transport, ports, key and signature scheme); it is only rewritten if the
    kernel had to choose something it lacks (a port 0, a key). The kernel
    removes the file when it stops only if it created it.
    ``transport`` (``"tcp"`` or ``"ipc"``), ``ip``, ``ports`` (a port per channel
    name: ``shell``, ``iopub``, ``stdin``, ``control``, ``hb``; others are chosen
    free) and ``key`` fix the address and key, over what the file says.
    ``user_ns`` (and ``user_module``) are the namespace cells run in.
    ``curve`` encrypts every socket with CurveZMQ (a fresh keypair, written to
    the connection file for clients; jupyter_client's
    ``KernelClient.load_connection_file`` uses it, ``jupyter console
    --existing`` does not yet).
    ``traits`` set :class:`akernel.kernel.Kernel` options, over the embedded
    defaults (e.g. ``capture_sigint=True``); ``config`` is a traitlets ``Config``.
    With ``await tg.start(...)``, the connection file's path is returned once
    clients can connect. Raises :class:`akernel.KernelStartError` if the kernel
    cannot start.
    """
    kernel = EmbeddedKernel(
        connection_file=connection_file,
        user_ns=user_ns,
        user_module=user_module,
        transport=transport,
        ip=ip,
        ports=ports,
        key=key,
        curve=curve,
        config=config,
        **traits,
    )
    await kernel.serve(task_status=task_status)


@asynccontextmanager
async def embedded_kernel(
    *,
    connection_file: str | os.PathLike[str] | None = None,
    user_ns: dict[str, Any] | None = None,
    user_module: ModuleType | None = None,
    transport: str | None = None,
    ip: str | None = None,
    ports: Mapping[str, int] | None = None,
    key: str | None = None,
    curve: bool = False,
    config: Config | None = None,
    **traits: Any,
) -> AsyncIterator[EmbeddedKernel]:
    """Serve a kernel in the background of the ``async with`` block.

    Takes the arguments of :func:`serve_kernel`. The block starts once clients
    can connect; the kernel stops when the block ends, or earlier if a client
    shuts it down or :meth:`EmbeddedKernel.stop` is called (the block goes on)::

        async with akernel.embedded_kernel(user_ns={"app": app}) as kernel:
            print("connect with: jupyter console --existing", kernel.connection_file)
            await app.serve_forever()

    Exceptions of the block come out unchanged; a kernel that cannot start
    raises :class:`akernel.KernelStartError` from ``async with``.
    """
    kernel = EmbeddedKernel(
        connection_file=connection_file,
        user_ns=user_ns,
        user_module=user_module,
        transport=transport,
        ip=ip,
        ports=ports,
        key=key,
        curve=curve,
        config=config,
        **traits,
    )
    kernel._start()  # before the task group: a start failure is not wrapped in a group
    block_error: BaseException | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(_run_logging_failure, kernel)
        try:
            yield kernel
        except anyio.get_cancelled_exc_class():
            raise  # the host's cancellation: its own scopes handle it
        except BaseException as error:
            # Held, not raised through the task group, which would wrap it in an
            # exception group the host's ``except`` clauses do not match.
            block_error = error
        finally:
            kernel.stop()
    if block_error is not None:
        raise block_error


async def _run_logging_failure(kernel: EmbeddedKernel) -> None:
    # A kernel that fails while serving (a bug in akernel) must not cancel the
    # host's block: it is logged and counts as stopped.
    try:
        await kernel._run()
    except Exception:
        log.exception("the embedded kernel failed; the host goes on without it")


def embed_kernel(
    local_ns: dict[str, Any] | None = None,
    module: ModuleType | None = None,
    *,
    backend: str = "asyncio",
    **kwargs: Any,
) -> None:
    """Serve a kernel in the caller's namespace until a client shuts it down.

    For plain (not async) code, like ``IPython.embed_kernel``: blocks, runs an
    event loop of its own (``backend``), and prints how to connect once clients
    can. Takes the keyword arguments of :func:`serve_kernel`.
    ``local_ns`` and ``module`` default to the caller's locals and module.
    Ctrl-C stops the kernel and returns. Raises :class:`akernel.KernelStartError`
    if the kernel cannot start.
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


def _close(sockets: KernelSockets) -> None:
    sockets.close()
    # Each kernel has its own zmq context (and I/O thread): end it.
    sockets.context.destroy(linger=0)


def _module_of(namespace: dict[str, Any]) -> ModuleType:
    module = ModuleType(namespace.get("__name__", "__embedded__"))
    module.__dict__.update(namespace)
    return module


def _new_connection_file() -> Path:
    from jupyter_core.paths import jupyter_runtime_dir

    runtime = Path(jupyter_runtime_dir())
    runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
    return runtime / f"kernel-{os.getpid()}-{next(_file_numbers)}.json"
