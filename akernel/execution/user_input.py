"""Input from the client for cells: ``input()``, ``getpass()``, pdb's prompt, ``ainput()``.

Synchronous code that asks for input holds the thread it runs in until the
client answers. In a kernel of its own that is expected (the kernel waits for
its user). In an embedded kernel, the thread is the host application's event
loop: while a cell's ``input()`` waits, the application would serve nothing.
So an embedded kernel refuses to wait there (unless started with
``blocking_input=True``): ``input()``, ``getpass()``, ``breakpoint()``,
``pdb`` and ``%debug`` in a cell raise :class:`BlockingInputError`, which says
what to do instead. ``await akernel.ainput(prompt)`` asks without blocking
anything, in any kernel: the loop goes on while the client answers, and an
interrupt (or the kernel stopping) ends the wait.

Code that is not a cell's (the host application's, in an embedded kernel)
never goes through the client: it gets the process's own ``input()``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from IPython.core.error import StdinNotImplementedError

from ..channels import StdinChannel, current_request
from .io import OutputRouter


class BlockingInputError(StdinNotImplementedError):
    """Waiting for the client's answer would block an embedded kernel's host
    application (its event loop's thread): see the message for what to do."""


INPUT_REFUSED = (
    "{what} would stop the host application's event loop until the client answers."
    " In an embedded kernel, a cell awaits its input instead:"
    " `await akernel.ainput(prompt)` (with password=True for a password)."
)
DEBUGGER_REFUSED = (
    "the debugger would stop the host application's event loop while it waits at its"
    " prompt. In an embedded kernel, pdb, breakpoint() and %debug need the kernel started"
    " with blocking_input=True: the application then pauses while the debugger waits"
    " (an interrupt ends the debugger)."
)


class Prompter:
    """Asks the client that sent the current request for a line of input."""

    def __init__(self, stdin: StdinChannel, router: OutputRouter, *, blocking: bool) -> None:
        self.stdin = stdin
        self.router = router
        # Whether synchronous code may wait in the event loop's thread.
        self.blocking = blocking
        self.loop_thread = threading.get_ident()

    def serves_caller(self) -> bool:
        """Whether the calling code's input goes to a client: it is a cell's
        (or, in a kernel of its own, any code's)."""
        return self.router.parent() is not None

    def may_block(self) -> bool:
        """Whether synchronous input may wait here: not a cell's code in the
        loop's thread of a kernel that refuses to block it."""
        if self.blocking or threading.get_ident() != self.loop_thread:
            return True
        return current_request.get() is None

    def check_may_block(self, what: str) -> None:
        """Raise :class:`BlockingInputError` if ``what`` may not wait here."""
        if not self.may_block():
            raise BlockingInputError(INPUT_REFUSED.format(what=what))

    def check_debugger_may_block(self) -> None:
        if not self.may_block():
            raise BlockingInputError(DEBUGGER_REFUSED)

    async def ainput(self, prompt: str, *, password: bool) -> str:
        parent = self.router.parent()
        if parent is None:
            raise RuntimeError(
                "ainput() asks the client of a cell: call it from a cell, or from a task"
                " a cell started"
            )
        check_stdin_available(self.router, bool(parent.content.get("allow_stdin")), "ainput()")
        self.router.iopub.flush()
        return await self.stdin.request_input_async(prompt, parent, password=password)


def check_stdin_available(router: OutputRouter, allow_stdin: bool, what: str) -> None:
    """Raise ``StdinNotImplementedError`` if ``what`` cannot ask the client: in a
    forked child (the stdin socket is the parent's), or for a frontend that
    does not take input requests."""
    if router.forked_child:
        raise StdinNotImplementedError("input is not available in a forked child process")
    if not allow_stdin:
        raise StdinNotImplementedError(
            f"{what} was called, but this frontend does not support input requests"
            " (allow_stdin is false)."
        )


_running: Prompter | None = None


def set_running_prompter(prompter: Prompter | None) -> Callable[[], None]:
    """Make ``prompter`` the one :func:`ainput` uses; return the undo."""
    global _running
    _running = prompter

    def undo() -> None:
        global _running
        if _running is prompter:
            _running = None

    return undo


def running_prompter() -> Prompter | None:
    return _running


async def ainput(prompt: object = "", *, password: bool = False) -> str:
    """Ask the client for a line of input, without blocking the event loop.

    The awaitable ``input()`` (and, with ``password=True``, ``getpass()``) of
    a cell, in any akernel kernel: the event loop, and an embedded kernel's
    host application, go on while the client answers. An interrupt of the
    cell, or the kernel stopping, ends the wait.
    """
    prompter = _running
    if prompter is None:
        raise RuntimeError("no akernel kernel is running in this process")
    return await prompter.ainput(str(prompt), password=password)
