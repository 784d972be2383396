"""Interrupts: SIGINT (or an interrupt_request) stops the running cell.

What an interrupt does depends on where the main thread is when it lands:

* in user code (a sync cell, or an async cell between awaits): raise
  ``KeyboardInterrupt`` right there, as Python does;
* in kernel code that user code called (print, display, comm sends): defer
  the raise to the end of that call, so no message is ever cut in half;
* in the event loop while an async cell is suspended in ``await``: cancel
  the cell's cancel scope (from the loop, through the mailbox), and the cell
  ends with a ``KeyboardInterrupt`` error;
* while a cell is being prepared (transformed, compiled), before its code
  runs: the code raises ``KeyboardInterrupt`` as soon as it starts (also when
  the signal lands after the last look at ``pending`` before the start);
* with no cell running: nothing to interrupt. A kernel of its own logs and
  ignores it; an embedded kernel that took SIGINT (``capture_sigint=True``)
  hands it to the handler its host application had before (Ctrl-C on an
  idle application does what it did without the kernel).

"In user code" means the cell's frame, called by IPython's ``run_code``, is
on the current stack, or a function called through :func:`call_user_function`
(an ``apply_request``'s), even a builtin one such as ``time.sleep``.
Message-mode interrupts send SIGINT to the main thread, so both modes share
this one path; SIGINT is blocked in the kernel's other threads. When the
kernel does not own SIGINT (an embedded kernel leaves it to its host, or the
host took it back), an interrupt cancels a cell suspended in ``await``, and
ends a synchronous cell's wait for input (``take_wait_interrupt``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

import anyio
from IPython.core.interactiveshell import InteractiveShell

from ..channels.forked import at_fork
from ..transport import Mailbox
from ..transport.frames import defer_until_complete

log = logging.getLogger("akernel.interrupt")

_RUN_CODE = InteractiveShell.run_code.__code__


def call_user_function(function: Any, args: Any, kwargs: Any) -> Any:
    """Call a user's function (an ``apply_request``'s) as user code: an
    interrupt raises ``KeyboardInterrupt`` inside it."""
    return function(*args, **kwargs)


_CALL_USER = call_user_function.__code__


def _user_code_on_stack(frame: FrameType | None) -> bool:
    """Whether the cell's own code (called by IPython's ``run_code``) is running.

    Not when ``run_code`` itself is busy, e.g. formatting the traceback of a
    first interrupt: IPython would swallow a second one raised there.
    """
    return _locate(frame) != _OUTSIDE


_OUTSIDE, _USER, _KERNEL_FOR_USER = 0, 1, 2


def _locate(frame: FrameType | None) -> int:
    """Where the main thread is: outside user code, in it, or in kernel code
    that user code called (print, display, comm sends: possibly mid-way
    through a multipart message, in our frames or in pyzmq's below them)."""
    callee = None
    kernel = False
    while frame is not None:
        if frame.f_code is _CALL_USER:
            # The function itself, or a builtin it is in (no frame of its own).
            return _KERNEL_FOR_USER if kernel else _USER
        if frame.f_code is _RUN_CODE:
            if callee is not None and callee.f_code.co_name == "<module>":
                return _KERNEL_FOR_USER if kernel else _USER
            return _OUTSIDE
        if frame.f_globals.get("__name__", "").startswith("akernel."):
            kernel = True
        callee, frame = frame, frame.f_back
    return _OUTSIDE


class InterruptController:
    """Owns the main thread's SIGINT handler while the kernel runs."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.executing = False
        self.cell_scope: anyio.CancelScope | None = None
        # An interrupt that came while the running cell was still being prepared.
        self.pending = False
        self._main_thread_id = threading.main_thread().ident
        self._previous_handler: object = None
        self._installed = False
        # Whether the host's asyncio loop gets every SIGINT anyway (see install).
        self._signals_reach_loop = False
        # The one handler object installed (each ``self._on_sigint`` is a new
        # bound method): to tell whether SIGINT is still ours.
        self._handler = self._on_sigint
        # SIGINTs the kernel sent itself (message-mode interrupts) not yet handled.
        self._sent = 0
        # Whether SIGINT while no cell runs goes to the previous handler (an
        # embedded kernel's host) instead of being ignored.
        self.idle_sigint_to_previous = False
        # Set by an interrupt that could not be delivered by SIGINT: a
        # synchronous wait for input ends on it (channels/stdin.py).
        self._wait_interrupted = False
        # The kernel subshells' controllers (execution/subshells.py): an
        # interrupt concerns the whole kernel, every shell's running cell.
        self.subshells: Callable[[], list[Any]] = list

    def install(self) -> None:
        """Take over SIGINT (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._previous_handler = signal.signal(signal.SIGINT, self._handler)
        self._installed = True
        self._signals_reach_loop = _is_loop_signal_handler(self._previous_handler)
        if self._signals_reach_loop:
            log.warning(
                "the host handles SIGINT with loop.add_signal_handler, which sees every SIGINT"
                " (Ctrl-C), also those that interrupt a cell: interrupt requests cancel cells"
                " suspended in await only, without sending SIGINT"
            )
        self._remove_fork_hook = at_fork(in_child=self._in_forked_child)

    def uninstall(self) -> None:
        """Give SIGINT back to the previous handler, unless someone else took it since."""
        if self._installed:
            self._remove_fork_hook()
            if self._owns_sigint():
                signal.signal(signal.SIGINT, self._previous_handler or signal.default_int_handler)
            self._installed = False

    def _owns_sigint(self) -> bool:
        return self._installed and signal.getsignal(signal.SIGINT) is self._handler

    def _in_forked_child(self) -> None:
        """A forked child (a multiprocessing worker, say) has no kernel to
        interrupt: Ctrl-C there is plain Python's KeyboardInterrupt."""
        self.executing = False
        self._installed = False
        self._main_thread_id = threading.get_ident()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def _raise_in_user_code(self) -> None:
        if self.executing and _user_code_on_stack(sys._getframe(1)):
            raise KeyboardInterrupt

    def interrupt(self) -> None:
        """Interrupt the running cell, if any (message mode): SIGINT the main thread.

        Without our SIGINT handler (an embedded kernel leaves SIGINT to its
        host), only a cell suspended in ``await`` can be interrupted: its
        cancel scope is cancelled.
        """
        if (
            self.executing
            and self._owns_sigint()
            and not self._signals_reach_loop
            and self._main_thread_id is not None
        ):
            # The SIGINT handler interrupts every shell (_on_sigint).
            self._sent += 1
            signal.pthread_kill(self._main_thread_id, signal.SIGINT)
            return
        self._interrupt_subshells()
        if not self.executing:
            return
        # A synchronous cell waiting for input looks at this (channels/stdin.py).
        self._wait_interrupted = True
        scope = self.cell_scope
        if scope is not None:
            self.mailbox.post(scope.cancel)
        else:
            log.warning(
                "without SIGINT, an interrupt ends a cell that holds the event loop only if it"
                " waits for input"
            )

    def take_wait_interrupt(self) -> bool:
        """Whether an interrupt came for a synchronous wait (and forget it)."""
        interrupted, self._wait_interrupted = self._wait_interrupted, False
        return interrupted

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        sent, self._sent = self._sent > 0, max(self._sent - 1, 0)
        busy = self._interrupt_subshells()
        if not (sent or busy or self.executing) and self.idle_sigint_to_previous:
            # Ctrl-C on the idle host application: its own, as without the kernel.
            self._call_previous(signum, frame)
            return
        self.interrupt_at(frame)

    def _call_previous(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous_handler
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            # The default action ends the process: let it.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        # SIG_IGN (or None: set outside Python): ignored, as before the kernel.

    def _interrupt_subshells(self) -> bool:
        """Interrupt every subshell; whether one of them was running a cell."""
        busy = False
        for subshell in self.subshells():
            busy = busy or subshell.executing
            subshell.interrupt()
        return busy

    def interrupt_at(self, frame: FrameType | None) -> None:
        """Interrupt the cell from a signal handler that stopped ``frame``."""
        if not self.executing:
            log.info("interrupt received while idle: ignored")
            return
        where = _locate(frame)
        if where == _KERNEL_FOR_USER:
            # In the kernel's output path, called by user code: raising here
            # could cut a message in half or lose buffered output. Raise when
            # that call completes.
            defer_until_complete(self._raise_in_user_code)
            return
        if where == _USER:
            raise KeyboardInterrupt
        scope = self.cell_scope
        if scope is not None:
            self.mailbox.post(scope.cancel)
        else:
            # The cell is being prepared (transformed, compiled): its code
            # raises it when it starts (``AkernelShell.run_code``).
            log.info("interrupt received before the cell's code started: kept for it")
            self.pending = True
            self._raise_when_user_code_starts()

    def _raise_when_user_code_starts(self) -> None:
        """Make sure a pending interrupt is raised in the code it is kept for.

        ``AkernelShell.run_code`` looks at ``pending`` just before the code
        starts, but the signal may land after that look, still outside the
        code (in ``run_code`` itself): the code would then run to its end
        uninterrupted. So, from the signal handler, a one-shot profile function
        of the main thread raises at the first call of user code (the cell's
        frame, or an ``apply_request``'s function), unless ``pending`` was
        taken (or dropped) before: then it removes itself at the next event.
        A profiler already installed (``%prun``) is left alone.
        """
        if sys.getprofile() is not None:
            return

        def on_event(frame: FrameType, event: str, arg: Any) -> None:
            if not (self.pending and self.executing):
                sys.setprofile(None)
                return
            if (
                event == "call"
                and (frame.f_code.co_name == "<module>" or frame.f_code is _CALL_USER)
                and _locate(frame) == _USER
            ):
                sys.setprofile(None)
                self.pending = False
                raise KeyboardInterrupt

        sys.setprofile(on_event)


def _is_loop_signal_handler(handler: object) -> bool:
    """Whether ``handler`` is what asyncio (or uvloop) installs for a signal given
    to ``loop.add_signal_handler``: a no-op, the loop reads the signal's number
    from its wake-up descriptor and runs the host's handler, whatever Python
    handler runs meanwhile."""
    return getattr(handler, "__name__", None) in ("_sighandler_noop", "_Loop__sighandler")


# pydevd's modules (debugpy's debugger; its compiled trace function included).
_DEBUGGER_MODULES = ("pydevd", "_pydevd_bundle.", "_pydevd_frame_eval.", "_pydev_bundle.")


def strip_handler_frames(tb: TracebackType | None) -> TracebackType | None:
    """Cut the kernel's own frames off the end of a ``KeyboardInterrupt``
    traceback (the signal handler, or the output path an interrupt was
    deferred in): it should end where the user's code was interrupted.

    An interrupt that stopped the debugger (at a breakpoint, the main thread
    waits in pydevd) ends at the user's line too: everything from the
    debugger's first frame on is cut.

    So is the frame of code the interrupt stopped as it was entered, before
    its first line (see ``_raise_when_user_code_starts``): it has no line to
    show."""
    last_user = None
    node = tb
    while node is not None:
        module = node.tb_frame.f_globals.get("__name__", "")
        if module.startswith(_DEBUGGER_MODULES):
            break
        if not module.startswith("akernel.") and node.tb_lineno:
            last_user = node
        node = node.tb_next
    if last_user is not None:
        last_user.tb_next = None
    return tb
