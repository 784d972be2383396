"""The kernel's optional capabilities, each opened by one function: crash journal,
JupyterLab's debugger, kernel subshells.

Each gets what it uses, registers its teardown on ``undo``, and returns None
when it is off; kernel.py wires the results to the control thread.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from .channels import IOPubPublisher, RequestDispatcher
from .channels.routing import Inbox, ShellRouter
from .debugging.session import DebugSession, MainThread, debugging_enabled
from .execution import AkernelShell, InterruptController
from .execution.crash_recovery import CrashRecovery
from .execution.subshells import Subshell, SubshellManager
from .transport import Mailbox

log = logging.getLogger("akernel")


def open_crash_recovery(
    shell: AkernelShell,
    connection_file: str | os.PathLike[str] | None,
    backend: str,
    *,
    for_good: Callable[[], bool],
    undo: ExitStack,
) -> CrashRecovery | None:
    """The crash journal beside ``connection_file`` (execution/crash_recovery.py);
    None without one. ``for_good()`` says, at the end, whether no restart follows."""
    if connection_file is None:
        return None
    try:
        recovery = CrashRecovery(shell, os.fspath(connection_file), backend)
    except OSError as error:
        log.warning("no crash journal: %s", error)
        return None
    undo.callback(recovery.install(for_good=for_good))
    return recovery


def open_debug_session(
    shell: AkernelShell,
    iopub: IOPubPublisher,
    mailbox: Mailbox,
    interrupts: InterruptController,
    *,
    wanted: bool,
    post_to_control: Callable[[Callable[[], object]], None],
    debug_parent: Callable[[], Any],
    undo: ExitStack,
) -> DebugSession | None:
    """JupyterLab's debugger (akernel/debugging), served on the control thread;
    ``debug_parent()`` is the request its events answer."""
    # The cell files are written by the shell's compiler (debugging/cells.py),
    # debugger or not: they go with the kernel.
    files = getattr(shell.compile, "files", None)
    if files is not None:
        undo.callback(files.remove)
    if files is None or not wanted or not debugging_enabled():
        return None
    main = MainThread(
        post=mailbox.post,
        post_back=post_to_control,
        is_executing=lambda: interrupts.executing,
    )

    def publish_event(event: dict[str, Any]) -> None:
        iopub.publish("debug_event", event, debug_parent(), wait=False)

    session = DebugSession(shell, files, main, publish_event)
    # A host application's thread goes on untraced after an embedded kernel.
    undo.callback(session.untrace_main_thread)
    return session


def open_subshells(
    router: ShellRouter,
    mailbox: Mailbox,
    backend: str,
    new_shell: Callable[[str, Subshell], RequestDispatcher],
    shell: AkernelShell,
    interrupts: InterruptController,
    undo: ExitStack,
) -> SubshellManager:
    """Kernel subshells (execution/subshells.py): ``router`` takes the shell
    socket over at the first one; ``new_shell`` builds each one's dispatcher."""

    def take_over() -> None:
        router.take_over(Inbox(mailbox.post, router.send), wake_parent=mailbox.post)

    def build(subshell: Subshell) -> RequestDispatcher:
        return new_shell(f"subshell {subshell.id[:8]}", subshell)

    manager = SubshellManager(router, backend, build, take_over)
    undo.callback(manager.stop_all)
    shell.kernel.subshells = manager
    undo.callback(setattr, shell.kernel, "subshells", None)
    # An interrupt concerns every shell (docs/subshells.md).
    interrupts.subshells = lambda: [s.interrupts for s in list(manager.subshells.values())]
    return manager
