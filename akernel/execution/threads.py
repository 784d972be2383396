"""Threads started from a cell run in a copy of the cell's context.

(So do tasks submitted to a ``ThreadPoolExecutor``.)

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
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

# What the patches call: the methods as they were when the kernel started
# (a host application may have patched them itself before).
_original_start = threading.Thread.start
_original_submit = ThreadPoolExecutor.submit


def _start_in_callers_context(self: threading.Thread) -> None:
    context = contextvars.copy_context()
    run = self.run
    # An instance attribute shadows the method, also in subclasses.
    self.run = lambda: context.run(run)  # type: ignore[method-assign]
    _original_start(self)


def _submit_in_callers_context(
    self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
) -> Future:
    # Pool threads outlive the cell that started them: each task runs in the
    # context of the code that submitted it (also ``loop.run_in_executor``).
    return _original_submit(self, contextvars.copy_context().run, fn, *args, **kwargs)


def propagate_context_to_threads() -> Callable[[], None]:
    """Patch ``Thread.start`` and ``ThreadPoolExecutor.submit``; return the undo."""
    global _original_start, _original_submit
    if threading.Thread.start is not _start_in_callers_context:
        _original_start = threading.Thread.start
    if ThreadPoolExecutor.submit is not _submit_in_callers_context:
        _original_submit = ThreadPoolExecutor.submit
    threading.Thread.start = _start_in_callers_context  # type: ignore[method-assign]
    ThreadPoolExecutor.submit = _submit_in_callers_context  # type: ignore[method-assign]

    def undo() -> None:
        # Unless patched again since, by someone else.
        if threading.Thread.start is _start_in_callers_context:
            threading.Thread.start = _original_start  # type: ignore[method-assign]
        if ThreadPoolExecutor.submit is _submit_in_callers_context:
            ThreadPoolExecutor.submit = _original_submit  # type: ignore[method-assign]

    return undo
