"""The debugger cells get from ``pdb.set_trace()``, ``breakpoint()`` and ``%debug``.

The standard library's pdb catches ``KeyboardInterrupt`` at its prompt and
prompts again: an interrupt sent while it waits for input (an
``input_request`` on stdin) would leave the cell stuck, and every request
queued behind it unanswered. This is IPython's debugger, as ipykernel uses
it, made to end on an interrupt: the debugger quits and the cell ends with
``KeyboardInterrupt``. The kernel's own frames are hidden from ``where``,
``up`` and ``down``, as IPython's machinery below the cell is.

In an embedded kernel, the debugger's prompt would hold the host
application's event loop: there, a cell's debugger raises
:class:`~.user_input.BlockingInputError` unless the kernel was started with
``blocking_input=True`` (user_input.py). Code that is not a cell's (the host
application's own ``breakpoint()``) gets the standard debugger.
"""

from __future__ import annotations

import pdb
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from IPython.core.debugger import InterruptiblePdb

from .user_input import running_prompter

# The standard library's, for code that is not a cell's (install_kernel_pdb).
_standard_pdb: type[pdb.Pdb] = pdb.Pdb


def _check_debugger_may_block() -> None:
    prompter = running_prompter()
    if prompter is not None:
        prompter.check_debugger_may_block()


def _is_kernel_frame(frame: FrameType) -> bool:
    return frame.f_globals.get("__name__", "").startswith("akernel.")


class KernelPdb(InterruptiblePdb):
    """IPython's debugger; an interrupt at its prompt ends it and the cell."""

    _interrupted = False

    def cmdloop(self, intro: Any = None) -> Any:
        try:
            return super().cmdloop(intro)
        except KeyboardInterrupt:
            # InterruptiblePdb has quit debugging; the cell must end too.
            self._interrupted = True
            raise

    def interaction(self, frame: Any, tb_or_exc: Any) -> None:
        _check_debugger_may_block()
        # IPython's interaction swallows the KeyboardInterrupt (it prints it
        # and lets the program go on): raise it again, into the user's code.
        self._interrupted = False
        super().interaction(frame, tb_or_exc)
        if self._interrupted:
            self._interrupted = False
            raise KeyboardInterrupt

    def hidden_frames(self, stack: list[tuple[FrameType, int]]) -> list[bool]:
        hidden = super().hidden_frames(stack)
        return [
            bool(h) or _is_kernel_frame(frame) for h, (frame, _) in zip(hidden, stack, strict=True)
        ]


def set_trace(frame: FrameType | None = None, *, header: str | None = None) -> None:
    """Start the kernel's debugger in ``frame`` (the caller's by default)."""
    frame = frame or sys._getframe().f_back
    prompter = running_prompter()
    if prompter is not None and not prompter.serves_caller():
        debugger: pdb.Pdb = _standard_pdb()  # not a cell's code: the host application's
    else:
        _check_debugger_may_block()
        debugger = KernelPdb()
    if header is not None:
        debugger.message(header)
    debugger.set_trace(frame)


def install_kernel_pdb() -> Callable[[], None]:
    """Make ``pdb.set_trace``, ``breakpoint()`` and ``pdb.Pdb`` the kernel's
    debugger; return the function that puts the standard ones back."""
    global _standard_pdb
    saved = pdb.set_trace, pdb.Pdb
    _standard_pdb = saved[1]
    pdb.set_trace = set_trace  # type: ignore[assignment]
    pdb.Pdb = KernelPdb  # type: ignore[misc]

    def uninstall() -> None:
        if pdb.set_trace is set_trace:
            pdb.set_trace = saved[0]  # type: ignore[assignment]
        if pdb.Pdb is KernelPdb:
            pdb.Pdb = saved[1]  # type: ignore[misc]

    return uninstall
