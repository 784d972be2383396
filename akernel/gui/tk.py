"""Tk's event loop, run while the kernel's loop waits (``%gui tk``, ``%matplotlib tk``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .display import require_display
from .loops import GuiUnavailable


class TkLoop:
    """Runs Tcl/Tk's events (all of this thread's interpreters: the user's
    ``Tk()`` windows, matplotlib's) while the kernel waits."""

    def __init__(self) -> None:
        try:
            import tkinter
        except ImportError:
            raise GuiUnavailable(
                "%gui tk needs tkinter, which this Python lacks (on Debian and Ubuntu:"
                " apt install python3-tk)"
            ) from None
        require_display("tk")
        # A Tcl interpreter without a window, for the file handler and the
        # timer; Tcl's event queue is the thread's, shared by every Tk().
        self._tcl: Any = tkinter.Tcl().tk
        self._readable = tkinter.READABLE
        self._woken = False

    def _wake(self, *args: object) -> None:
        self._woken = True

    def wait(self, fd: int, timeout: float | None, ready: Callable[[], bool]) -> None:
        """Run Tk until ``fd`` is readable, ``timeout`` expires or ``ready()``."""
        if ready():
            return
        tcl = self._tcl
        self._woken = False
        tcl.createfilehandler(fd, self._readable, self._wake)
        timer = None
        if timeout is not None:
            timer = tcl.createtimerhandler(max(1, math.ceil(timeout * 1000)), self._wake)
        try:
            # One event at a time (Tcl releases the GIL while it blocks): a
            # Tk callback may have given the kernel's loop work.
            while not self._woken and not ready():
                tcl.dooneevent(0)
        finally:
            tcl.deletefilehandler(fd)
            if timer is not None:
                timer.deletetimerhandler()
