"""Work that outlives its cell: the kernel's task group, and asyncio's loose tasks.

A cell is one request; what it starts in the background keeps running after
the reply, while other cells execute, and stops when the kernel stops.

* :class:`BackgroundTasks` is a task group the kernel owns and offers to
  cells (``akernel.task_group()`` or ``get_ipython().kernel.task_group``), on
  asyncio and trio alike. A task inherits the context of the code that
  started it, so its output goes to the cell that started it. An error in a
  task is shown as an ``error`` output of that cell; it does not take the
  kernel, or the other tasks, down. At shutdown the group is cancelled.
  ``SystemExit`` and ``KeyboardInterrupt`` raised in a task are shown the
  same way: cell code cannot end the event loop (the host application's, in
  an embedded kernel) by raising.
* On asyncio, ``asyncio.create_task`` also works: see cell_tasks.py.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

log = logging.getLogger("akernel.background")

ErrorReporter = Callable[[BaseException], None]


class BackgroundTasks:
    """The kernel's task group for cells: ``start_soon`` and ``start``, like anyio's.

    Only usable from the kernel's event loop (a cell, or a task of its own).
    """

    def __init__(self, report_error: ErrorReporter) -> None:
        self._report_error = report_error
        self._group: anyio.abc.TaskGroup | None = None

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED):
        """Own the task group until cancelled (which cancels every task in it)."""
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._group = None

    def start_soon(
        self, func: Callable[..., Awaitable[Any]], *args: Any, name: object = None
    ) -> None:
        """Run ``func(*args)`` in the background; return at once."""
        self._require_group().start_soon(self._guarded, func, args, name=name or func)

    async def start(
        self, func: Callable[..., Awaitable[Any]], *args: Any, name: object = None
    ) -> Any:
        """Run ``func(*args, task_status=...)`` and return the value it reports
        with ``task_status.started(value)``, as anyio's ``TaskGroup.start``."""

        async def guarded(*, task_status: anyio.abc.TaskStatus[Any]) -> None:
            await self._guarded(func, args, task_status=task_status)

        return await self._require_group().start(guarded, name=name or func)

    def _require_group(self) -> anyio.abc.TaskGroup:
        if self._group is None:
            raise RuntimeError("the kernel's task group is not running (kernel stopped?)")
        return self._group

    async def _guarded(
        self, func: Callable[..., Awaitable[Any]], args: tuple[Any, ...], **kwargs: Any
    ) -> None:
        try:
            await func(*args, **kwargs)
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as error:
            # One failing task must not cancel the group (and every other task),
            # and SystemExit or KeyboardInterrupt must not end the event loop.
            log.info("background task %r failed", func, exc_info=True)
            self._report_error(error)


_running: BackgroundTasks | None = None


def running_task_group() -> BackgroundTasks:
    """The running kernel's :class:`BackgroundTasks` (public as ``akernel.task_group``)."""
    if _running is None:
        raise RuntimeError("no akernel kernel is running in this process")
    return _running


def running_task_group_or_none() -> BackgroundTasks | None:
    return _running


def set_running(tasks: BackgroundTasks | None) -> None:
    global _running
    _running = tasks
