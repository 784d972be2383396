"""Shell-channel request handlers, one method per message type.

``ShellHandlers.handlers()`` maps each ``*_request`` type to its method; the
dispatcher brackets each call with busy/idle and sets the output parent.
"""

from __future__ import annotations

import builtins
import getpass
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

import anyio
from IPython.core.completer import provisionalcompleter, rectify_completions
from IPython.utils.tokenutil import token_at_cursor

from ..channels import Handler, RequestDispatcher, StdinChannel
from ..wire import Message, utcnow_iso
from .comms import as_comm_msg
from .info import kernel_info
from .interrupt import InterruptController
from .io import OutputRouter
from .shell import AkernelShell
from .user_input import Prompter, check_stdin_available

log = logging.getLogger("akernel.shell")


class ShellHandlers:
    """Answers shell requests using the IPython shell."""

    def __init__(
        self,
        shell: AkernelShell,
        router: OutputRouter,
        dispatcher: RequestDispatcher,
        stdin: StdinChannel,
        interrupts: InterruptController,
        *,
        comm_manager: Any,
        connection_ports: dict[str, int],
        backend: str,
        on_shutdown: Callable[[Message], None],
    ) -> None:
        self.shell = shell
        self.router = router
        self.dispatcher = dispatcher
        self.stdin = stdin
        self.interrupts = interrupts
        self.comm_manager = comm_manager
        self.connection_ports = connection_ports
        self.backend = backend
        # Set by the kernel when it serves debug requests on control.
        self.offers_debugger = False
        # Set by the kernel when it has kernel subshells (not an engine).
        self.offers_subshells = False
        self.on_shutdown = on_shutdown
        self._allow_stdin = False
        # Set by the kernel: whether input may block here (user_input.py).
        self.prompter: Prompter | None = None
        # The input() and getpass() a cell's input calls replaced, for code that
        # is not a cell's (the host application's) calling them meanwhile.
        self._process_input: tuple[Callable[..., str], Callable[..., str]] = (
            builtins.input,
            getpass.getpass,
        )
        # An ipyparallel engine's reply metadata (set by the kernel of an engine).
        self.engine_metadata: Any = None
        # Shared by the shells of one kernel (the kernel sets it): see comm_open.
        self.comm_lock: Any = threading.RLock()

    def handlers(self) -> dict[str, Handler]:
        return {
            "execute_request": self.execute_request,
            "complete_request": self.complete_request,
            "inspect_request": self.inspect_request,
            "is_complete_request": self.is_complete_request,
            "history_request": self.history_request,
            "kernel_info_request": self.kernel_info_request,
            "comm_info_request": self.comm_info_request,
            "connect_request": self.connect_request,
            "shutdown_request": self.shutdown_request,
            "comm_open": self.comm_open,
            "comm_msg": self.comm_msg,
            "comm_close": self.comm_close,
        }

    # -- execute ------------------------------------------------------------

    async def execute_request(self, msg: Message) -> None:
        content = msg.content
        code = content.get("code", "")
        if not isinstance(code, str):
            code = str(code)
        _check_is_text(code)
        silent = bool(content.get("silent", False))
        store_history = bool(content.get("store_history", not silent))
        stop_on_error = bool(content.get("stop_on_error", True))
        user_expressions = content.get("user_expressions") or {}
        shell = self.shell
        started = utcnow_iso()
        # From here on an interrupt is for this cell (kept for its code if it
        # comes before the code starts): clients interrupt once they see it begin.
        self.interrupts.executing = True

        if not silent:
            # The number this cell gets; without history, the current one.
            count = shell.execution_count if store_history else shell.execution_count - 1
            self.router.publish("execute_input", {"code": code, "execution_count": count})
            self.router.last_execute = msg
        elif self.engine_metadata is None:
            # The protocol: a silent request broadcasts nothing. ipyparallel's
            # clients send their executes silent and still expect the output
            # (as ipykernel publishes it), so engines publish what cells print.
            self.router.silenced.add(msg.msg_id)
        self._allow_stdin = bool(content.get("allow_stdin", False))
        shell.last_error = None
        try:
            result = await self._run_cell(code, store_history=store_history, silent=silent, msg=msg)
        finally:
            self.router.silenced.discard(msg.msg_id)
        if self.dispatcher.ended:
            # The process is being killed (see process_end): no reply; what
            # the cell printed goes out now, before the sockets close.
            self.router.iopub.flush()
            return

        if result.success:
            reply: dict[str, Any] = {"status": "ok"}
        else:
            reply = {"status": "error", **self._error_content(result)}
        # As the protocol says: the count of this cell, or the current count
        # when it did not get one (silent, no history, empty code).
        reply["execution_count"] = shell.execution_count - 1
        if reply["status"] == "ok" and isinstance(user_expressions, dict):
            reply["user_expressions"] = shell.user_expressions(user_expressions)
        else:
            reply["user_expressions"] = {}
        reply["payload"] = shell.payload_manager.read_payload()
        shell.payload_manager.clear_payload()

        if self.engine_metadata is not None:
            metadata = self.engine_metadata.reply_metadata(msg, reply, started)
            if reply["status"] == "error":
                reply["engine_info"] = self.engine_metadata.engine_info("execute")
        else:
            metadata = {"status": reply["status"], "started": started}
        captures = self.comm_manager.output_captures
        if captures.request_id == msg.msg_id and not silent:
            # An Output widget captured this cell's output: the client's updates
            # of it come in before the reply (see OutputCaptures).
            await captures.wait_for_client()
        self.dispatcher.reply(msg, "execute_reply", reply, metadata=metadata)
        # As ipykernel: a silent request's error aborts nothing (ipyparallel
        # sends all its executes silent, and expects each to run).
        if reply["status"] == "error" and stop_on_error and not silent:
            self.dispatcher.abort_queued()
        if shell.exit_now:
            # exit() or quit() in the cell: the kernel ends, as ipykernel's does
            # (exit(keep_kernel=True) does not set exit_now); a moment after the
            # reply, which clients that check whether the kernel is alive before
            # reading it (jupyter_console) must still find.
            shell.exit_now = False
            await anyio.sleep(EXIT_GRACE)
            self.on_shutdown(msg)

    async def _run_cell(self, code: str, *, store_history: bool, silent: bool, msg: Message):
        shell = self.shell
        preprocessing_exc = None
        try:
            transformed = shell.transform_cell(code)
        except Exception:
            transformed = code
            preprocessing_exc = sys.exc_info()
        saved_input, saved_getpass = builtins.input, getpass.getpass
        if not _is_cells_input(saved_input):
            self._process_input = saved_input, saved_getpass
        builtins.input, getpass.getpass = self._input, self._getpass
        self.interrupts.executing = True
        result = None
        try:
            result = await shell.run_cell_async(
                code,
                store_history=store_history,
                silent=silent,
                transformed_cell=transformed,
                preprocessing_exc_tuple=preprocessing_exc,
                cell_id=msg.metadata.get("cellId"),
            )
        except KeyboardInterrupt as e:
            # The interrupt landed in IPython's machinery, not in user code.
            shell.showtraceback((KeyboardInterrupt, e, e.__traceback__))
            result = shell.last_execution_result
            if result is not None:
                result.error_in_exec = e
        finally:
            self.interrupts.executing = False
            self.interrupts.pending = False
            self.interrupts.take_wait_interrupt()  # one that came too late is forgotten
            # Unless the host application set its own meanwhile (an async cell
            # lets it run).
            if _is_cells_input(builtins.input):
                builtins.input = saved_input
            if _is_cells_input(getpass.getpass):
                getpass.getpass = saved_getpass
            self.router.drain_captured()
            shell.events.trigger("post_execute")
            if not silent and result is not None:
                shell.events.trigger("post_run_cell", result)
        return result

    def _error_content(self, result: Any) -> dict[str, Any]:
        if self.shell.last_error is not None:
            return dict(self.shell.last_error)
        error = result.error_in_exec or result.error_before_exec
        name = type(error).__name__ if error is not None else "Error"
        return {"ename": name, "evalue": str(error or ""), "traceback": []}

    def _input(self, prompt: Any = "") -> str:
        if self.router.parent() is None:
            return self._process_input[0](prompt)  # not a cell's code
        return self._request_input(str(prompt), password=False)

    def _getpass(self, prompt: str = "Password: ", stream: Any = None) -> str:
        if self.router.parent() is None:
            return self._process_input[1](prompt, stream)  # not a cell's code
        return self._request_input(prompt, password=True)

    def _request_input(self, prompt: str, *, password: bool) -> str:
        check_stdin_available(self.router, self._allow_stdin, "input")
        if self.prompter is not None:
            # An embedded kernel's cell must not hold the host's loop (user_input.py).
            self.prompter.check_may_block("getpass()" if password else "input()")
        parent = self.router.parent()
        assert parent is not None
        self.router.iopub.flush()
        return self.stdin.request_input(
            prompt, parent, password=password, interrupted=self.interrupts.take_wait_interrupt
        )

    def end_abruptly(self) -> None:
        """The process is being killed in the middle of a request (from a
        signal handler): publish nothing more than what is printed, reply to
        nothing, so that clients see a dead kernel rather than an interrupted cell."""
        self.dispatcher.ended = True
        self.router.ending = True

    # -- introspection --------------------------------------------------------

    def complete_request(self, msg: Message) -> None:
        code, cursor_pos = _code_and_cursor(msg.content)
        _check_line_completable(code, cursor_pos)
        with provisionalcompleter():
            raw = self.shell.Completer.completions(code, cursor_pos)
            completions = list(rectify_completions(code, raw))
        if completions:
            start, end = completions[0].start, completions[0].end
        else:
            start = end = cursor_pos
        types = [
            {
                "start": c.start,
                "end": c.end,
                "text": c.text,
                "type": c.type,
                "signature": c.signature,
            }
            for c in completions
        ]
        self.dispatcher.reply(
            msg,
            "complete_reply",
            {
                "status": "ok",
                "matches": [c.text for c in completions],
                "cursor_start": start,
                "cursor_end": end,
                "metadata": {"_jupyter_types_experimental": types},
            },
        )

    def inspect_request(self, msg: Message) -> None:
        code, cursor_pos = _code_and_cursor(msg.content)
        detail_level = 1 if msg.content.get("detail_level") == 1 else 0
        name = token_at_cursor(code, cursor_pos)
        reply: dict[str, Any] = {"status": "ok", "found": False, "data": {}, "metadata": {}}
        try:
            bundle = self.shell.object_inspect_mime(name, detail_level=detail_level)
        except KeyError:
            pass
        else:
            if not self.shell.enable_html_pager:
                bundle.pop("text/html", None)
            reply.update(found=True, data=bundle)
        self.dispatcher.reply(msg, "inspect_reply", reply)

    def is_complete_request(self, msg: Message) -> None:
        code = str(msg.content.get("code", ""))
        status, indent_spaces = self.shell.input_transformer_manager.check_complete(code)
        reply: dict[str, Any] = {"status": status}
        if status == "incomplete":
            reply["indent"] = " " * (indent_spaces or 0)
        self.dispatcher.reply(msg, "is_complete_reply", reply)

    def history_request(self, msg: Message) -> None:
        c = msg.content
        history = self.shell.history_manager
        raw = bool(c.get("raw", True))
        output = bool(c.get("output", False))
        access = c.get("hist_access_type", "tail")
        if access == "tail":
            entries = history.get_tail(
                _history_int(c, "n", 10), raw=raw, output=output, include_latest=True
            )
        elif access == "range":
            entries = history.get_range(
                _history_int(c, "session", 0),
                _history_int(c, "start", 1),
                _history_int(c, "stop", None),
                raw=raw,
                output=output,
            )
        elif access == "search":
            entries = history.search(
                str(c.get("pattern", "*")),
                raw=raw,
                output=output,
                n=_history_int(c, "n", None),
                unique=bool(c.get("unique", False)),
            )
        else:
            entries = []
        # IPython numbers the current session 0 in ranges; clients need its id.
        session = history.session_number
        self.dispatcher.reply(
            msg,
            "history_reply",
            {"status": "ok", "history": [[e[0] or session, *e[1:]] for e in entries]},
        )

    # -- kernel and comms -------------------------------------------------------

    def kernel_info_request(self, msg: Message) -> None:
        info = kernel_info(
            self.backend, debugger=self.offers_debugger, subshells=self.offers_subshells
        )
        self.dispatcher.reply(msg, "kernel_info_reply", info)

    def connect_request(self, msg: Message) -> None:
        self.dispatcher.reply(msg, "connect_reply", {"status": "ok", **self.connection_ports})

    def shutdown_request(self, msg: Message) -> None:
        restart = bool(msg.content.get("restart", False))
        self.dispatcher.reply(msg, "shutdown_reply", {"status": "ok", "restart": restart})
        self.on_shutdown(msg)

    def comm_info_request(self, msg: Message) -> None:
        target = msg.content.get("target_name")
        comms = {
            comm_id: {"target_name": comm.target_name}
            for comm_id, comm in self.comm_manager.comms.items()
            if target is None or comm.target_name == target
        }
        self.dispatcher.reply(msg, "comm_info_reply", {"status": "ok", "comms": comms})

    # Comm handlers (widget callbacks) of every shell take one lock: with kernel
    # subshells they run concurrently with the parent shell's cell, which is the
    # point, but never with each other (docs/subshells.md).

    def comm_open(self, msg: Message) -> None:
        with self.comm_lock:
            self.comm_manager.comm_open(None, None, as_comm_msg(msg))

    def comm_msg(self, msg: Message) -> None:
        with self.comm_lock:
            self.comm_manager.comm_msg(None, None, as_comm_msg(msg))

    def comm_close(self, msg: Message) -> None:
        with self.comm_lock:
            self.comm_manager.comm_close(None, None, as_comm_msg(msg))


def _is_cells_input(function: Any) -> bool:
    """Whether ``function`` is the input() (or getpass()) a running cell got."""
    return isinstance(getattr(function, "__self__", None), ShellHandlers)


def _code_and_cursor(content: dict[str, Any]) -> tuple[str, int]:
    """``code`` and ``cursor_pos`` of a complete or inspect request (the end
    of the code when no position is given)."""
    code = content.get("code", "")
    if not isinstance(code, str):
        code = str(code)
    cursor_pos = content.get("cursor_pos")
    if cursor_pos is None:
        return code, len(code)
    if not isinstance(cursor_pos, int) or isinstance(cursor_pos, bool):
        raise TypeError(f"cursor_pos must be an integer, not {type(cursor_pos).__name__}")
    if not 0 <= cursor_pos <= len(code):
        raise ValueError(f"cursor_pos {cursor_pos} is outside the code (0 to {len(code)})")
    return code, cursor_pos


# Seconds between the reply to a cell that called exit() and the kernel's end.
EXIT_GRACE = 1.0

# IPython's completer takes time quadratic in the length of the cursor's line
# (1 s at 20,000 characters, a minute at 100,000), and the kernel answers
# nothing else meanwhile; nobody completes in such a line.
MAX_COMPLETION_LINE = 10_000


def _check_line_completable(code: str, cursor_pos: int) -> None:
    start = code.rfind("\n", 0, cursor_pos) + 1
    end = code.find("\n", cursor_pos)
    length = (len(code) if end < 0 else end) - start
    if length > MAX_COMPLETION_LINE:
        raise ValueError(
            f"the cursor's line is {length:,} characters long: completion is offered in"
            f" lines of up to {MAX_COMPLETION_LINE:,}"
        )


# History is in SQLite, whose integers are signed 64-bit.
_SQLITE_INT = range(-(2**63), 2**63)


def _history_int(content: dict[str, Any], name: str, default: int | None) -> int | None:
    value = content.get(name, default)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"history_request: {name} must be an integer, not {value!r}")
    if value not in _SQLITE_INT:
        raise ValueError(f"history_request: {name} {value} is out of range")
    return value


def _check_is_text(code: str) -> None:
    """Refuse code with lone surrogates (only a broken client sends them): IPython
    can neither compile nor store it, and its history would stop saving."""
    try:
        code.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"the code contains a lone surrogate ({code[e.start]!r} at {e.start}), which is not"
            " text: it was not run"
        ) from None
