"""IPython's InteractiveShell, wired to the kernel's channels.

The shell runs cells in the main thread inside the kernel's event loop:
``run_cell_async`` is awaited directly, so a cell with top-level ``await``
runs on whatever loop the kernel runs (asyncio or trio).
"""

from __future__ import annotations

import atexit
import math
import os
import sys
from contextvars import ContextVar
from importlib.util import find_spec
from typing import Any

import anyio
from IPython.core.autocall import ZMQExitAutocall
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.profiledir import ProfileDir
from traitlets import Any as AnyTrait
from traitlets import Instance, Type, default

from .. import gui as gui_loops
from ..debugging.cells import CellCompiler
from .history_db import KernelHistoryManager
from .interrupt import InterruptController, strip_handler_frames
from .io import KernelDisplayHook, KernelDisplayPublisher, OutputRouter
from .kernel_api import KernelHandle, ThreadParents, message_dict
from .kernel_magics import LOOPLESS_GUIS, KernelMagics


class KernelStopped(Exception):
    """The error shown for a cell the kernel's stop cancelled (a client's
    shutdown request, or the host application stopping an embedded kernel)."""


KERNEL_STOPPED = "the kernel was stopped while this cell ran; the cell did not finish"

subshell_interrupts: ContextVar[Any] = ContextVar("akernel_subshell_interrupts", default=None)
"""A subshell's interrupt controller, set in its thread: an async cell there
registers its cancel scope with it, not with the parent shell's."""


def release_shell(shell: AkernelShell) -> None:
    """End the shell's history session and forget the process-wide instance, so
    that a later kernel in this process (embedding) starts with a fresh shell.
    The user namespace is left alone: it may belong to the host application."""
    history = shell.history_manager
    if history is not None:
        history.end_session()
        history.close()
        shell.history_manager = None
    atexit.unregister(shell.atexit_operations)
    AkernelShell.clear_instance()


class ZMQInteractiveShell(ThreadParents, InteractiveShell):
    """The execution engine: magics, display, history, completion, inspection."""

    displayhook_class = Type(KernelDisplayHook)
    display_pub_class = Type(KernelDisplayPublisher)
    # Cells are compiled under the file names JupyterLab's debugger computes, so
    # breakpoints hit even in functions defined before the debugger started.
    compiler_class = Type(CellCompiler)
    router = Instance(OutputRouter, allow_none=True)
    interrupts = AnyTrait(None, allow_none=True)

    # The value of the last error shown, as the ``error`` message content.
    last_error: dict[str, Any] | None = None
    keepkernel_on_exit = False
    _last_error_value: BaseException | None = None

    # ``exit(keep_kernel=True)``: leave the kernel running when the frontend quits.
    exiter = Instance(ZMQExitAutocall)

    @default("exiter")
    def _default_exiter(self) -> ZMQExitAutocall:
        return ZMQExitAutocall(self)

    def init_profile_dir(self, profile_dir: ProfileDir | None) -> None:
        # The launcher puts ``--profile``/``--profile-dir`` in the config as
        # ``ProfileDir.location`` (as IPython's applications do), and has
        # checked that it exists.
        if profile_dir is None and "ProfileDir" in self.config:
            location = self.config.ProfileDir.get("location")
            if location:
                profile_dir = ProfileDir.create_profile_dir(str(location), self.config)
        super().init_profile_dir(profile_dir)

    def init_magics(self) -> None:
        super().init_magics()
        self.register_magics(KernelMagics)
        self.magics_manager.register_alias("ed", "edit")

    def init_environment(self) -> None:
        super().init_environment()
        env = os.environ
        # No terminal pager can work here: pagers go through page payloads.
        env["PAGER"] = "cat"
        env["GIT_PAGER"] = "cat"
        env.setdefault("CLICOLOR", "1")
        if "MPLBACKEND" not in env and find_spec("matplotlib_inline") is not None:
            env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"

    def init_hooks(self) -> None:
        super().init_hooks()
        # set_hook binds the function to the shell itself.
        self.set_hook("show_in_pager", AkernelShell._show_in_pager, priority=99)

    # ``!cmd`` output is read from a pipe and written to sys.stdout, so it
    # reaches the frontend instead of the kernel's terminal.
    system = InteractiveShell.system_piped

    @property
    def debugger_cls(self) -> type:
        # %debug and post-mortem debugging: the kernel's debugger (debugger.py).
        from .debugger import KernelPdb

        return KernelPdb

    kernel = AnyTrait(None, allow_none=True)

    def init_history(self) -> None:
        # Kernels share their profile's database with other processes: see history_db.py.
        self.history_manager = KernelHistoryManager(shell=self, parent=self)
        self.configurables.append(self.history_manager)

    def init_instance_attrs(self) -> None:
        super().init_instance_attrs()
        self.kernel = KernelHandle(self)

    def get_parent(self) -> dict[str, Any]:
        """The request being handled, as a message dict (empty if none)."""
        return message_dict(self.router.parent() if self.router is not None else None)

    def set_parent(self, parent: dict[str, Any]) -> None:
        """Accepted for compatibility: the parent of output is contextual here."""

    # -- output side channels ---------------------------------------------

    def _showtraceback(self, etype: type, evalue: BaseException, stb: list[str]) -> None:
        content = {"traceback": stb, "ename": etype.__name__, "evalue": str(evalue)}
        self.last_error = content
        self._last_error_value = evalue
        if self.router is not None:
            self.router.publish("error", content)

    def publish_error(self, error: BaseException, *, skip_frames: int = 0) -> None:
        """Show ``error`` as an ``error`` output of the current request, like a
        failed cell's, without making it the running cell's error."""
        tb = error.__traceback__
        for _ in range(skip_frames):
            if tb is not None:
                tb = tb.tb_next
        stb = self.InteractiveTB.structured_traceback(type(error), error, tb)
        content = {"traceback": stb, "ename": type(error).__name__, "evalue": str(error)}
        if self.router is not None:
            self.router.publish("error", content)

    def showtraceback(self, exc_tuple=None, *args: Any, **kwargs: Any) -> None:
        etype, value, tb = exc_tuple if exc_tuple is not None else sys.exc_info()
        if self._interrupted_by_cancel(value):
            interrupt = KeyboardInterrupt()
            exc_tuple = (KeyboardInterrupt, interrupt.with_traceback(tb), tb)
        elif self._stopped_by_cancel(value):
            # Not anyio's "Cancelled via cancel scope 7f...": say what happened,
            # and where the cell was.
            tb = self._cell_frames(tb)
            stopped = KernelStopped(KERNEL_STOPPED).with_traceback(tb)
            exc_tuple = (KernelStopped, stopped, tb)
        elif isinstance(value, KeyboardInterrupt):
            exc_tuple = (etype, value, strip_handler_frames(tb))
        super().showtraceback(exc_tuple, *args, **kwargs)

    def _format_exception_for_storage(self, exception, *args: Any, **kwargs: Any) -> dict:
        # IPython formats each error twice: to show it and to store it in the
        # history. Formatting takes milliseconds; reuse what was just shown.
        if exception is not None and exception is self._last_error_value:
            return dict(self.last_error or {})
        return super()._format_exception_for_storage(exception, *args, **kwargs)

    def _show_in_pager(self, data: Any, start: int = 0, screen_lines: int = 0) -> None:
        bundle = data if isinstance(data, dict) else {"text/plain": str(data)}
        self.payload_manager.write_payload({"source": "page", "data": bundle, "start": start})

    def set_next_input(self, text: str, replace: bool = False) -> None:
        # One payload per cell, the last call's: frontends act on one only.
        self.payload_manager.write_payload(
            {"source": "set_next_input", "text": text, "replace": replace}
        )

    def ask_exit(self) -> None:
        self.exit_now = not self.keepkernel_on_exit
        self.payload_manager.write_payload(
            {"source": "ask_exit", "keepkernel": self.keepkernel_on_exit}
        )

    def enable_gui(self, gui: str | None = None) -> None:
        """Run a GUI toolkit's event loop (qt, tk) while the kernel's loop waits
        (akernel/gui, docs/gui.md); the names that need no loop (inline, nbagg,
        webagg, widgets) switch it off. Others are refused with a message
        saying what works; the loop enabled before, if any, stays on."""
        if gui in LOOPLESS_GUIS:
            gui_loops.disable()
            self.active_eventloop = gui
            return
        try:
            gui_loops.enable(gui)
        except gui_loops.GuiUnavailable as error:
            # enable_matplotlib recorded the choice before asking us: forget it, or
            # a later ``%matplotlib notebook`` would be turned back into this one.
            if self.pylab_gui_select == gui:
                self.pylab_gui_select = None
            raise UsageError(str(error)) from None
        self.active_eventloop = gui

    # -- async cells and interrupts ----------------------------------------

    async def run_code(self, code_obj, result=None, *, async_: bool = False) -> bool:
        """Run a code object; an async one inside a cancel scope an interrupt can cancel."""
        interrupts: InterruptController | None = subshell_interrupts.get() or self.interrupts
        if interrupts is not None and interrupts.pending:
            # Interrupted while the cell was being prepared: stop before its code runs.
            interrupts.pending = False
            error = KeyboardInterrupt()
            if result is not None:
                result.error_in_exec = error
            self.showtraceback((KeyboardInterrupt, error, None))
            return True
        if not async_ or interrupts is None:
            return await super().run_code(code_obj, result, async_=async_)
        with anyio.CancelScope() as scope:
            interrupts.cell_scope = scope
            try:
                failed = await super().run_code(code_obj, result, async_=True)
            finally:
                interrupts.cell_scope = None
        if result is not None and isinstance(result.error_in_exec, anyio.get_cancelled_exc_class()):
            if scope.cancel_called:
                result.error_in_exec = KeyboardInterrupt()
            elif isinstance(self._last_error_value, KernelStopped):
                result.error_in_exec = self._last_error_value
        return failed

    def _stopped_by_cancel(self, value: BaseException | None) -> bool:
        """Whether ``value`` is the cancellation of the cell by a scope around
        it: the kernel's (or its host's) own, cancelled to stop the kernel."""
        if not isinstance(value, anyio.get_cancelled_exc_class()):
            return False
        try:
            return anyio.current_effective_deadline() == -math.inf
        except Exception:  # not in a task of the kernel's loop
            return False

    def _cell_frames(self, tb: Any) -> Any:
        """``tb`` cut after the last frame of the cell's code (or of functions it
        defined): the event loop's frames below it say nothing to the user."""
        last_user = None
        node = tb
        while node is not None:
            if node.tb_frame.f_globals is self.user_global_ns:
                last_user = node
            node = node.tb_next
        if last_user is None:
            return None
        last_user.tb_next = None
        return tb

    def _interrupted_by_cancel(self, value: BaseException | None) -> bool:
        interrupts = subshell_interrupts.get() or self.interrupts
        if interrupts is None or interrupts.cell_scope is None:
            return False
        if not interrupts.cell_scope.cancel_called:
            return False
        return isinstance(value, anyio.get_cancelled_exc_class())


# The class is named as ipykernel's, which libraries look for (see recognition.py).
AkernelShell = ZMQInteractiveShell
