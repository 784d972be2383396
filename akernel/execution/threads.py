"""Threads started from a cell run in a copy of the cell's context.

asyncio and trio tasks inherit context variables; plain threads do not. The
kernel makes ``threading.Thread.start`` copy the caller's context so that a
thread started in a cell sees the cell's context variables, and in
particular sends its output and displays to the cell that started it, even
after that cell has finished.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable

_original_start = threading.Thread.start


def _start_in_callers_context(self: threading.Thread) -> None:
    context = contextvars.copy_context()
    run = self.run
    # An instance attribute shadows the method, also in subclasses.
    self.run = lambda: context.run(run)  # type: ignore[method-assign]
    _original_start(self)


def propagate_context_to_threads() -> Callable[[], None]:
    """Patch ``Thread.start``; return the function that undoes it."""
    threading.Thread.start = _start_in_callers_context  # type: ignore[method-assign]

    def undo() -> None:
        threading.Thread.start = _original_start  # type: ignore[method-assign]

    return undo
