"""The debugger cells get from ``pdb.set_trace()``, ``breakpoint()`` and ``%debug``.

The standard library's pdb catches ``KeyboardInterrupt`` at its prompt and
prompts again: an interrupt sent while it waits for input (an
``input_request`` on stdin) would leave the cell stuck, and every request
queued behind it unanswered. This is IPython's debugger, as ipykernel uses
it, made to end on an interrupt: the debugger quits and the cell ends with
``KeyboardInterrupt``. The kernel's own frames are hidden from ``where``,
``up`` and ``down``, as IPython's machinery below the cell is.
"""

from __future__ import annotations

import pdb
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from IPython.core.debugger import InterruptiblePdb


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
    debugger = KernelPdb()
    if header is not None:
        debugger.message(header)
    debugger.set_trace(frame or sys._getframe().f_back)


def install_kernel_pdb() -> Callable[[], None]:
    """Make ``pdb.set_trace``, ``breakpoint()`` and ``pdb.Pdb`` the kernel's
    debugger; return the function that puts the standard ones back."""
    saved = pdb.set_trace, pdb.Pdb
    pdb.set_trace = set_trace  # type: ignore[assignment]
    pdb.Pdb = KernelPdb  # type: ignore[misc]

    def uninstall() -> None:
        if pdb.set_trace is set_trace:
            pdb.set_trace = saved[0]  # type: ignore[assignment]
        if pdb.Pdb is KernelPdb:
            pdb.Pdb = saved[1]  # type: ignore[misc]

    return uninstall
