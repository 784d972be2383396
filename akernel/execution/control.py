"""The control channel's handlers: kernel_info, shutdown, interrupt, usage,
debug (JupyterLab's debugger, see akernel/debugging), and ipyparallel's abort,
clear and signal requests.

They run on the control thread, so they must not touch the shell's state
directly, except where noted: they post to the main loop, fire interrupts,
or mark requests for the shell dispatcher to act on when their turn comes.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ..channels import RequestDispatcher
from ..wire import Message
from .apply import ApplyHandlers
from .info import kernel_info
from .interrupt import InterruptController
from .subshells import SubshellManager
from .usage import UsageMonitor

log = logging.getLogger("akernel.control")

# A signal whose default action ends the process would end it before zmq's
# I/O thread has sent the reply: give the reply this long to leave.
_REPLY_GRACE = 0.2


class ControlHandlers:
    """Serves control requests for one kernel."""

    def __init__(
        self,
        dispatcher: RequestDispatcher,
        interrupts: InterruptController,
        apply: ApplyHandlers,
        *,
        backend: str,
        request_stop: Callable[..., None],
        debugger: Any = None,
        subshells: SubshellManager | None = None,
    ) -> None:
        """``debugger``: the kernel's :class:`~akernel.debugging.DebugSession`, if
        it offers one; ``subshells``: its kernel subshells, if it has them."""
        self.dispatcher = dispatcher
        self.interrupts = interrupts
        self.apply = apply
        self.backend = backend
        self.request_stop = request_stop
        self.usage = UsageMonitor()
        self.debugger = debugger
        self.subshells = subshells
        # The parent of debug events: the last debug request.
        self.last_debug_request: Message | None = None

    def install(self, *, engine: bool) -> None:
        """Register the handlers (``signal_request`` only for engines, whose
        clients send it to their nanny, which may be absent)."""
        dispatcher = self.dispatcher
        # The interrupt itself fires on receipt, before busy: see ``preempt``.
        dispatcher.preempt["interrupt_request"] = lambda msg: self.interrupts.interrupt()
        dispatcher.handlers.update(
            kernel_info_request=self.kernel_info_request,
            shutdown_request=self.shutdown_request,
            interrupt_request=self.interrupt_request,
            abort_request=self.abort_request,
            clear_request=self.clear_request,
            usage_request=self.usage_request,
        )
        if engine:
            dispatcher.handlers["signal_request"] = self.signal_request
        dispatcher.handlers["debug_request"] = self.debug_request
        if self.subshells is not None:
            dispatcher.handlers.update(
                create_subshell_request=self.create_subshell_request,
                delete_subshell_request=self.delete_subshell_request,
                list_subshell_request=self.list_subshell_request,
            )
        # A request waiting for the debugger holds up nothing behind it.
        dispatcher.concurrent.add("debug_request")

    def kernel_info_request(self, msg: Message) -> None:
        info = kernel_info(
            self.backend, debugger=self.debugger is not None, subshells=self.subshells is not None
        )
        self.dispatcher.reply(msg, "kernel_info_reply", info)

    def debug_request(self, msg: Message) -> Awaitable[None] | None:
        """Answer a DAP request; what pydevd must answer is awaited in a task
        of its own (the dispatcher's concurrent mode)."""
        self.last_debug_request = msg
        if self.debugger is None:
            self.dispatcher.reply(msg, "debug_reply", _no_debugger(msg.content))
            return None
        outcome = self.debugger.handle(msg.content)
        if isinstance(outcome, dict):
            self.dispatcher.reply(msg, "debug_reply", outcome)
            return None
        return self._reply_when_answered(msg, outcome)

    def create_subshell_request(self, msg: Message) -> None:
        assert self.subshells is not None
        subshell_id = self.subshells.create()
        self.dispatcher.reply(
            msg, "create_subshell_reply", {"status": "ok", "subshell_id": subshell_id}
        )

    def delete_subshell_request(self, msg: Message) -> None:
        assert self.subshells is not None
        subshell_id = msg.content.get("subshell_id")
        try:
            self.subshells.delete(subshell_id)  # type: ignore[arg-type]
        except (KeyError, TypeError):
            error = {
                "ename": "SubshellNotFound",
                "evalue": f"no subshell with id {subshell_id!r}",
                "traceback": [],
            }
            self.dispatcher.reply(msg, "delete_subshell_reply", {"status": "error", **error})
            return
        self.dispatcher.reply(msg, "delete_subshell_reply", {"status": "ok"})

    def list_subshell_request(self, msg: Message) -> None:
        assert self.subshells is not None
        content = {"status": "ok", "subshell_id": self.subshells.ids()}
        self.dispatcher.reply(msg, "list_subshell_reply", content)

    async def _reply_when_answered(self, msg: Message, outcome: Awaitable[dict[str, Any]]) -> None:
        self.dispatcher.reply(msg, "debug_reply", await outcome)

    def shutdown_request(self, msg: Message) -> None:
        restart = bool(msg.content.get("restart", False))
        self.dispatcher.reply(msg, "shutdown_reply", {"status": "ok", "restart": restart})
        self.request_stop(restart=restart)
        if self.interrupts.executing:
            # Get user code out of the way so the main loop can stop.
            self.interrupts.interrupt()

    def interrupt_request(self, msg: Message) -> None:
        self.dispatcher.reply(msg, "interrupt_reply", {"status": "ok"})

    def usage_request(self, msg: Message) -> None:
        """What jupyter-resource-usage shows: the kernel's (and its children's)
        CPU and memory, and the host's."""
        self.dispatcher.reply(msg, "usage_reply", self.usage.usage())

    def abort_request(self, msg: Message) -> None:
        """ipyparallel's: abort the given requests, or all waiting ones; the
        shell dispatcher answers them with ``aborted`` when their turn comes."""
        self.apply.abort(msg.content.get("msg_ids"))
        self.dispatcher.reply(msg, "abort_reply", {"status": "ok"})

    def clear_request(self, msg: Message) -> None:
        self.apply.clear()
        self.dispatcher.reply(msg, "clear_reply", {"status": "ok"})

    async def signal_request(self, msg: Message) -> None:
        """What ipyparallel's nanny does for an engine: signal the engine's
        process. SIGINT goes to the main thread, where it interrupts user code;
        signal 0 ("are you alive?") sends nothing."""
        sig = msg.content.get("sig")
        signum = _parse_signal(sig)
        if signum is None:
            error = {"ename": "ValueError", "evalue": f"unknown signal {sig!r}", "traceback": []}
            self.dispatcher.reply(msg, "signal_reply", {"status": "error", **error})
            return
        self.dispatcher.reply(msg, "signal_reply", {"status": "ok"})
        if signum == 0:
            return
        if signum == signal.SIGINT:
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
            return
        if _may_end_the_process(signum):
            await anyio.sleep(_REPLY_GRACE)
        log.warning("signal_request: sending %s to this engine", signal.Signals(signum).name)
        os.kill(os.getpid(), signum)


def _no_debugger(request: Any) -> dict[str, Any]:
    """The failed DAP response of a kernel that does not offer the debugger."""
    request = request if isinstance(request, dict) else {}
    return {
        "type": "response",
        "seq": 0,
        "request_seq": request.get("seq", 0),
        "success": False,
        "command": request.get("command", ""),
        "message": "this kernel does not offer the debugger (Kernel.debugger is off)",
    }


def _parse_signal(sig: Any) -> int | None:
    """A signal number from a number, its string, or a name like ``"SIGKILL"``."""
    if isinstance(sig, str):
        sig = int(sig) if sig.isdigit() else getattr(signal, sig.upper(), None)
    if isinstance(sig, bool) or not isinstance(sig, int):
        return None
    if sig == 0:
        return 0
    try:
        return int(signal.Signals(sig))
    except ValueError:
        return None


def _may_end_the_process(signum: int) -> bool:
    if signum in (signal.SIGKILL, signal.SIGSTOP):
        return True
    handler = signal.getsignal(signum)
    return handler in (signal.SIG_DFL, None)
