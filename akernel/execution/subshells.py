"""Kernel subshells (JEP 91): shells that run requests while the parent shell is busy.

Each subshell is a thread with an event loop of the kernel's backend, its own
request dispatcher and shell handlers, sharing the kernel's IPython shell (one
user namespace, one execution count, one history) with the parent shell and
the other subshells. Requests reach it through the shell router
(channels/routing.py), which owns the shell socket from the first subshell on.
Within a shell, requests are handled in order; across shells, concurrently.

A subshell's thread is started when it is created and ends when it is deleted
or the kernel stops; a subshell busy in synchronous code ends when that code
returns (Python cannot stop a thread from outside).
"""

from __future__ import annotations

import contextvars
import logging
import signal
import threading
import uuid
from collections.abc import Callable

import anyio

from ..channels import RequestDispatcher
from ..channels.routing import Inbox, ShellRouter
from ..transport import Mailbox
from .shell import subshell_interrupts

log = logging.getLogger("akernel.subshells")

# How long the kernel's end waits for each subshell's thread.
STOP_TIMEOUT = 5.0


class SubshellInterrupts:
    """What a subshell's cells register with: whether one runs, and the cancel
    scope of one suspended in ``await``."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.executing = False
        self.cell_scope: anyio.CancelScope | None = None
        # An interrupt that came while the running cell was still being prepared.
        self.pending = False

    def interrupt(self) -> None:
        """Cancel the running async cell (any thread, signal handlers included):
        it ends with ``KeyboardInterrupt`` at its next ``await``. Synchronous
        code in a subshell cannot be interrupted: only the main thread gets
        signals, and an exception thrown into another thread could land in
        the middle of a message being sent."""
        # Looked at in the subshell's loop, not here: there, a cell is either
        # suspended in ``await`` (its scope set), or still being prepared.
        self.mailbox.post(self._interrupt_in_loop)

    def take_wait_interrupt(self) -> bool:
        """Whether an interrupt came for a synchronous wait for input: never in
        a subshell (its thread gets no signals; its waits are awaited)."""
        return False

    def _interrupt_in_loop(self) -> None:
        if not self.executing:
            return
        scope = self.cell_scope
        if scope is not None:
            scope.cancel()
        else:
            self.pending = True  # raised when its code starts (AkernelShell.run_code)


class Subshell:
    """One subshell: its thread, loop, inbox and dispatcher."""

    def __init__(
        self,
        subshell_id: str,
        backend: str,
        router: ShellRouter,
        build_dispatcher: Callable[[Subshell], RequestDispatcher],
    ) -> None:
        self.id = subshell_id
        self.backend = backend
        self.mailbox = Mailbox()
        self.interrupts = SubshellInterrupts(self.mailbox)
        self.inbox = Inbox(self.mailbox.post, router.send)
        self.dispatcher = build_dispatcher(self)
        self.dispatcher.post = self.mailbox.post
        self.dispatcher.subshell_id = subshell_id
        self._started = threading.Event()
        self._scope: anyio.CancelScope | None = None
        self.thread = threading.Thread(
            target=self._run, name=f"akernel-subshell-{subshell_id[:8]}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()
        if not self._started.wait(10):
            raise RuntimeError(f"subshell {self.id} did not start")

    def stop(self) -> None:
        """Cancel the subshell's loop (any thread); its thread ends soon after."""
        scope = self._scope
        if scope is not None:
            self.mailbox.post(scope.cancel)

    def _run(self) -> None:
        if hasattr(signal, "pthread_sigmask"):
            # SIGINT is the parent shell's (the main thread's).
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            # A fresh context: threads the kernel starts inherit the starter's
            # (for output parents), and the starter's loop is not this one.
            contextvars.Context().run(anyio.run, self._main, backend=self.backend)
        except Exception:
            log.exception("subshell %s failed", self.id)
        finally:
            self.mailbox.close()

    async def _main(self) -> None:
        subshell_interrupts.set(self.interrupts)
        async with anyio.create_task_group() as tg:
            self._scope = tg.cancel_scope
            tg.start_soon(self.mailbox.serve)
            self._started.set()
            await self.dispatcher.serve()


class SubshellManager:
    """Creates, lists and deletes subshells (from the control thread)."""

    def __init__(
        self,
        router: ShellRouter,
        backend: str,
        build_dispatcher: Callable[[Subshell], RequestDispatcher],
        take_over_shell_socket: Callable[[], None],
    ) -> None:
        self.router = router
        self.backend = backend
        self.build_dispatcher = build_dispatcher
        self.take_over_shell_socket = take_over_shell_socket
        self.subshells: dict[str, Subshell] = {}

    def create(self) -> str:
        """Start a subshell; return its id."""
        if not self.router.active:
            self.take_over_shell_socket()
        subshell = Subshell(str(uuid.uuid4()), self.backend, self.router, self.build_dispatcher)
        subshell.start()
        self.subshells[subshell.id] = subshell
        self.router.inboxes[subshell.id] = subshell.inbox
        return subshell.id

    def delete(self, subshell_id: str) -> None:
        """Stop routing to a subshell and end it; KeyError if there is none."""
        subshell = self.subshells.pop(subshell_id)
        self.router.inboxes.pop(subshell_id, None)
        subshell.stop()

    def ids(self) -> list[str]:
        return list(self.subshells)

    def stop_all(self) -> None:
        """The kernel is stopping: end every subshell, waiting a while for each."""
        subshells = list(self.subshells.values())
        self.subshells.clear()
        self.router.inboxes.clear()
        for subshell in subshells:
            subshell.stop()
        for subshell in subshells:
            subshell.thread.join(STOP_TIMEOUT)
            if subshell.thread.is_alive():
                log.warning("subshell %s is still running user code: left behind", subshell.id)
