"""akernel: a fast, async-native Jupyter kernel for Python, on asyncio and trio."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:
    from .embed import EmbeddedKernel, embed_kernel, embedded_kernel, serve_kernel
    from .execution.background import BackgroundTasks

__all__ = [
    "EmbeddedKernel",
    "KernelStartError",
    "__version__",
    "ainput",
    "embed_kernel",
    "embedded_kernel",
    "serve_kernel",
    "task_group",
]

_EMBEDDING = ("EmbeddedKernel", "embed_kernel", "embedded_kernel", "serve_kernel")


class KernelStartError(RuntimeError):
    """An embedded kernel could not start; the message says why, the cause is chained.

    Raised by every embedding entry point (:func:`serve_kernel`,
    :func:`embedded_kernel`, :class:`EmbeddedKernel`, :func:`embed_kernel`): an
    address or port already in use, an unusable connection file or argument, an
    unknown kernel option, a kernel already running in the process, no running asyncio or trio loop.
    Nothing the kernel started is left behind.
    """


def __getattr__(name: str) -> object:
    # The embedding API imports the whole kernel: only when asked for.
    if name in _EMBEDDING:
        from . import embed

        return getattr(embed, name)
    raise AttributeError(f"module 'akernel' has no attribute {name!r}")


def task_group() -> BackgroundTasks:
    """The running kernel's task group, for work that outlives the cell.

    ``akernel.task_group().start_soon(fn, *args)`` runs ``fn`` in the
    kernel's event loop (asyncio or trio) until it returns or the kernel
    stops. Its output goes to the cell that started it, and so does its
    error, if it fails.
    """
    from .execution.background import running_task_group

    return running_task_group()


async def ainput(prompt: object = "", *, password: bool = False) -> str:
    """Ask the client for a line of input without blocking the event loop (see
    docs/async.md)."""
    from .execution.user_input import ainput as ask

    return await ask(prompt, password=password)
