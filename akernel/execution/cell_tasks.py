"""asyncio tasks that cells create, told apart from the host application's.

On asyncio a cell can start tasks the kernel does not see being started:
``asyncio.create_task``, ``ensure_future``, ``gather``, a library's own. A
task factory on the loop looks at each new task:

* A task belongs to a cell when it is created in a cell's context (the
  request being handled is known there). In an embedded kernel it must also
  be created by the cell: the cell's own code (or code it defined) is on the
  stack, or the task creating it is a cell's task. Such a task's
  output goes to its cell; an exception it leaves unretrieved is shown there;
  ``SystemExit`` and ``KeyboardInterrupt`` raised in it end the task with a
  :class:`CellTaskExit` instead of ending the event loop (asyncio re-raises
  them out of ``run_forever``: the host application, or the kernel, would
  die); when the kernel stops, the tasks still running are cancelled.
* Any other task is the host's, even (in an embedded kernel) when it is
  created in a context a cell left behind: by a callback registered while a
  cell ran, by a connection opened for a cell and reused by the host, with
  no cell's code on the stack. Its output stays with the process and
  its unretrieved exception goes to the exception handler the loop had before
  the kernel (a Sentry-style hook sees it), or to asyncio's default handler.

Nothing of this exists on trio: there, tasks are started in nurseries, and a
cell's own (``akernel.task_group()``) are :class:`~.background.BackgroundTasks`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sys
import traceback
import weakref
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any

from ..channels import current_request
from ..wire import Message

log = logging.getLogger("akernel.background")


class CellTaskExit(Exception):
    """A task a cell started raised ``SystemExit`` or ``KeyboardInterrupt``
    (its ``__cause__``): the kernel ended the task with this error instead, so
    that the exception could not end the event loop it runs in."""


async def _contained(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        return await coro
    except (SystemExit, KeyboardInterrupt) as exit:
        raise CellTaskExit(
            f"{type(exit).__name__} in a task started by a cell: the task ended,"
            " the event loop goes on"
        ) from exit


def _host_context() -> contextvars.Context:
    """The current context without the request: what the host's tasks run in."""
    context = contextvars.copy_context()
    context.run(current_request.set, None)
    return context


class CellTasks:
    """The loop's task factory and exception handler while the kernel serves."""

    def __init__(
        self,
        publish_stderr: Callable[[str, Message], None],
        cell_code_prefix: str,
        *,
        strict: bool,
    ) -> None:
        """``strict``: a task created in a cell's context must also be created
        by the cell's code to be the cell's (an embedded kernel's rule)."""
        self._publish_stderr = publish_stderr
        self._strict = strict
        # Cells are compiled under file names in this directory (debugging/cells.py).
        self._prefix = os.path.join(cell_code_prefix, "")
        self._parents: weakref.WeakKeyDictionary[asyncio.Future, Message] = (
            weakref.WeakKeyDictionary()
        )

    def install(self) -> Callable[[], None]:
        """Take over the running loop's task factory and exception handler,
        chaining to the ones it had; return the undo (which also cancels the
        cells' tasks still running)."""
        loop = asyncio.get_running_loop()
        previous_factory = loop.get_task_factory()
        previous_handler = loop.get_exception_handler()

        def create(coro: Any, **kwargs: Any) -> asyncio.Future:
            if previous_factory is not None:
                return previous_factory(loop, coro, **kwargs)
            return asyncio.Task(coro, loop=loop, **kwargs)

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future:
            parent = current_request.get()
            # (uvloop passes context=None: the caller's, as for no context.)
            if parent is None or kwargs.get("context") is not None:
                return create(coro, **kwargs)
            if self._strict and not self._created_by_cell():
                # Host code running in a context a cell left behind.
                return _host_context().run(create, coro, **kwargs)
            if asyncio.iscoroutine(coro) and hasattr(coro, "__qualname__"):
                wrapped = _contained(coro)
                # Shown in the task's repr as the user's coroutine.
                wrapped.__name__, wrapped.__qualname__ = coro.__name__, coro.__qualname__
                coro = wrapped
            task = create(coro, **kwargs)
            self._parents[task] = parent
            return task

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            task = context.get("future") or context.get("task")
            error = context.get("exception")
            parent = self._parents.get(task) if task is not None else None
            if parent is None or error is None:
                if previous_handler is not None:
                    previous_handler(loop, context)
                else:
                    loop.default_exception_handler(context)
                return
            log.info("%s", context.get("message"), exc_info=error)
            text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            message = context.get("message", "Task failed")
            self._publish_stderr(f"{message}: {task!r}\n{text}", parent)

        loop.set_task_factory(factory)
        loop.set_exception_handler(handler)

        def undo() -> None:
            if loop.get_task_factory() is factory:
                loop.set_task_factory(previous_factory)
            if loop.get_exception_handler() is handler:
                loop.set_exception_handler(previous_handler)
            self.cancel_running()

        return undo

    def cancel_running(self) -> None:
        """Cancel the cells' tasks that are still running (the kernel stops)."""
        for task in list(self._parents.keys()):
            if not task.done():
                task.cancel()

    def _created_by_cell(self) -> bool:
        """Whether the task being created is a cell's: created by a cell's task,
        or with a cell's code (or code it defined) on the stack."""
        try:
            current = asyncio.current_task()
        except RuntimeError:
            current = None
        if current is not None and current in self._parents:
            return True
        prefix = self._prefix
        # From the factory's caller (a loop written in C may have no frame).
        frame: FrameType | None = sys._getframe(1).f_back
        while frame is not None:
            if frame.f_code.co_filename.startswith(prefix):
                return True
            frame = frame.f_back
        return False
