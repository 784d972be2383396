"""The kernel: sockets, threads and handlers wired together, served by anyio.

Threads, each with one owner (this class): IOPub publisher, heartbeat echo,
control loop. Everything else (the shell socket, user code, the mailbox that
other threads post to) runs in the main thread's event loop inside one task
group; cancelling that group is how the kernel stops.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from types import ModuleType
from typing import Any

import anyio
import anyio.abc
from traitlets import Bool, Float, Integer, default
from traitlets.config import Config, LoggingConfigurable

from . import gui as gui_loops
from .channels import ControlThread, IOPubPublisher, RequestDispatcher, StdinChannel
from .channels.forked import at_fork
from .channels.routing import ShellRouter
from .debugging.session import DebugSession
from .execution import (
    AkernelShell,
    ApplyHandlers,
    BackgroundTasks,
    CellTasks,
    ControlHandlers,
    EngineIdentity,
    InterruptController,
    OutputRouter,
    OutStream,
    ShellHandlers,
    StartupCode,
    batch_history_writes,
    install_comms,
    propagate_context_to_threads,
    release_shell,
    running_task_group_or_none,
    set_running,
    uninstall_comms,
)
from .execution.debugger import install_kernel_pdb
from .execution.process_end import DeathBySignal
from .execution.process_state import ProcessState
from .execution.recognition import recognise_running_kernel
from .execution.subshells import SubshellManager
from .execution.user_input import Prompter, set_running_prompter
from .kernel_features import open_crash_recovery, open_debug_session, open_subshells
from .kernel_process import (
    bind_for_frontends,
    capture_fds,
    restore_signal,
    restore_switch_interval,
    watch_parent,
)
from .transport import AsyncSocket, ConnectionInfo, Heartbeat, KernelSockets, Mailbox
from .transport.handover import HandoverSocket
from .transport.replay import PersistentSignatureHistory
from .wire import Session, digest_for

log = logging.getLogger("akernel")


class Kernel(LoggingConfigurable):
    """One kernel serving the five sockets of a connection file."""

    iopub_flush_interval = Float(
        0.05, help="Seconds stream output may wait to be batched before it is sent."
    ).tag(config=True)
    iopub_stall_timeout = Float(
        2.0,
        help="Seconds an IOPub client that has stopped reading (its queue full) may hold up"
        " the kernel and the other clients; after that it is left behind and loses what"
        " its queue cannot take, until it reads again (see docs/robustness.md).",
    ).tag(config=True)
    history_save_interval = Float(
        1.0, help="Seconds between writes of IPython's input history to its database."
    ).tag(config=True)
    gil_switch_interval = Float(
        0.0005,
        help="sys.setswitchinterval while the kernel runs. CPU-bound user code holds the"
        " GIL; every time the control or IOPub thread needs it back it waits this long,"
        " several times per message. Python's default (5 ms) makes interrupts and"
        " control replies take tens of milliseconds.",
    ).tag(config=True)
    parent_pid = Integer(
        help="Exit when this process is gone (default: $JPY_PARENT_PID, set by"
        " jupyter_client; 0 disables).",
    ).tag(config=True)
    parent_poll_interval = Float(1.0, help="Seconds between checks of the parent.").tag(config=True)

    @default("parent_pid")
    def _default_parent_pid(self) -> int:
        try:
            return int(os.environ.get("JPY_PARENT_PID", "0"))
        except ValueError:
            return 0

    capture_fd_output = Bool(
        True,
        help="Publish what is written to file descriptors 1 and 2 (os.system, subprocesses,"
        " C extensions) as stream output.",
    ).tag(config=True)
    capture_sigint = Bool(
        True,
        help="Install a SIGINT handler that interrupts the running cell. Without it, an"
        " interrupt_request still cancels a cell suspended in await.",
    ).tag(config=True)
    handle_sigterm = Bool(True, help="On SIGTERM, interrupt the running cell and stop.").tag(
        config=True
    )
    propagate_thread_context = Bool(
        True,
        help="Make threading.Thread.start and ThreadPoolExecutor.submit run in the caller's"
        " context, so output of threads started by a cell goes to that cell.",
    ).tag(config=True)
    debugger = Bool(
        True,
        help="Offer JupyterLab's visual debugger (debug_request on control; needs debugpy)."
        " Engines never offer it.",
    ).tag(config=True)
    crash_journal = Bool(
        True,
        help="Keep a crash journal beside the connection file, when the kernel was given"
        " one (a restarted kernel then reports how its predecessor died; %recover)."
        " See docs/robustness.md.",
    ).tag(config=True)
    orphan_output_to_last_cell = Bool(
        True,
        help="Output from code outside any request (e.g. threads not started by a cell) goes"
        " to the last executed cell. If false, it goes to the original sys.stdout/stderr.",
    ).tag(config=True)
    blocking_input = Bool(
        None,
        allow_none=True,
        help="Whether input(), getpass() and the debugger's prompt in a cell may wait for the"
        " client's answer in the event loop's thread, holding the loop meanwhile. Default: yes"
        " for a kernel of its own; no for an embedded kernel, whose loop is its host"
        " application's (they raise an error pointing to `await akernel.ainput()`).",
    ).tag(config=True)

    def __init__(
        self,
        info: ConnectionInfo,
        sockets: KernelSockets,
        *,
        backend: str = "asyncio",
        config: Config | None = None,
        user_ns: dict[str, Any] | None = None,
        user_module: ModuleType | None = None,
        engine: EngineIdentity | None = None,
        heartbeat_capture: Any = None,
        control_duties: tuple[Callable[[], Awaitable[None]], ...] = (),
        startup: StartupCode | None = None,
        replay_guard_file: str | os.PathLike[str] | None = None,
        connection_file: str | os.PathLike[str] | None = None,
        journal: bool = False,
        embedded: bool = False,
        **kwargs: Any,
    ) -> None:
        """``engine``: serve as this ipyparallel engine. ``heartbeat_capture``
        gets a copy of every heartbeat; ``control_duties`` run on the control
        thread's loop (an engine watches the controller's heartbeat there).
        ``startup`` runs in the shell before the first request is served.
        ``replay_guard_file`` keeps the signatures of accepted messages, so
        that a kernel restarted with the same key refuses them too.
        ``connection_file``: where ``info`` was read from or written to, if it
        was (libraries look it up: see execution/recognition.py). ``journal``: the
        connection file was given (a restart reuses it), so keep a crash journal
        beside it (execution/crash_recovery.py). ``embedded``: the process and
        the event loop are a host application's (akernel/embed.py): Ctrl-C on
        the idle kernel goes to the host's SIGINT handler, and cells may not
        block the loop waiting for input (``blocking_input``)."""
        super().__init__(config=config, **kwargs)
        self.embedded = embedded
        self.info = info
        self.connection_file = os.fspath(connection_file) if connection_file else None
        self.journal = journal
        self.sockets = sockets
        self.backend = backend
        self.user_ns = user_ns
        self.user_module = user_module
        self.engine = engine
        self.heartbeat_capture = heartbeat_capture
        self.control_duties = control_duties
        self.startup = startup
        self._replay_guard = (
            PersistentSignatureHistory(
                replay_guard_file,
                digest_for(info.signature_scheme or "hmac-sha256")().digest_size,
            )
            if replay_guard_file and info.key
            else None
        )
        self.session = Session(
            info.key.encode(),
            info.signature_scheme or "hmac-sha256",
            replay_history=self._replay_guard or 2**16,
            # ipyparallel's controller tells engines apart by this, on every message.
            default_metadata={"engine": engine.uuid} if engine is not None else None,
        )
        self._cancel_scope: anyio.CancelScope | None = None
        self._stopping = False
        # Only a client's shutdown request without restart ends the session
        # for good: anything else (SIGTERM, a lost parent) may be followed by
        # a restart with the same connection file.
        self._final_shutdown = False

    # -- life cycle -----------------------------------------------------------

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until shut down by a client, SIGTERM, or cancellation.

        With ``await tg.start(kernel.serve)``: returns once the kernel serves,
        its process-wide state (``sys.stdout``, signal handlers) in place."""
        if running_task_group_or_none() is not None:
            raise RuntimeError("an akernel kernel is already running in this process")
        # Each step registers its undo as soon as it is done, so a failure
        # half-way (or the end) leaves the process as it was: this matters
        # when the process is someone else's application.
        with ExitStack() as undo:
            self._undo = undo
            undo.callback(self.sockets.close)
            if self._replay_guard is not None:
                guard = self._replay_guard
                undo.callback(lambda: guard.close(forget=self._final_shutdown))
            shell, shell_dispatcher, background = self._start(undo)
            try:
                async with anyio.create_task_group() as tg:
                    self._cancel_scope = tg.cancel_scope
                    tg.start_soon(self._mailbox.serve)
                    await tg.start(background.serve)
                    tg.start_soon(shell_dispatcher.serve)
                    if "db_cache_size" not in self.config.get("HistoryManager", {}):
                        batch_history_writes(shell, tg, self.history_save_interval)
                    task_status.started()
            finally:
                self._stopping = True
        log.info("kernel stopped")
        # SIGTERM in the middle of a cell: end the process by it (process_end.py).
        self._death_by_signal.release()

    def _start(self, undo: ExitStack) -> tuple[AkernelShell, RequestDispatcher, BackgroundTasks]:
        """Create and start the parts, in order; ``undo`` gets their teardown."""
        sockets, session = self.sockets, self.session
        mailbox = self._mailbox = Mailbox()
        undo.callback(mailbox.close)
        heartbeat = Heartbeat(
            sockets.context, sockets.hb, sockets.hb_backend, capture=self.heartbeat_capture
        )
        heartbeat.start()
        undo.callback(heartbeat.stop)
        iopub = IOPubPublisher(
            sockets.iopub,
            session,
            flush_interval=self.iopub_flush_interval,
            stall_timeout=self.iopub_stall_timeout,
        )
        iopub.on_failure = self._stop_after_failure
        router = OutputRouter(iopub)
        router.orphans_to_last_execute = self.orphan_output_to_last_cell
        captures = capture_fds(router, iopub) if self.capture_fd_output else []
        undo.callback(lambda: [capture.close() for capture in captures])
        iopub.start()
        undo.callback(iopub.stop)
        self._iopub = iopub
        # Output written to the fds after this still reaches the flusher.
        undo.callback(lambda: [capture.restore() for capture in captures])

        interrupts = self._interrupts = InterruptController(mailbox)
        interrupts.idle_sigint_to_previous = self.embedded
        # Process-wide values set from here on are put back at the end, where
        # nobody (the host application) changed them since.
        state = ProcessState()
        undo.callback(state.restore)
        record_shell_changes = state.watch()
        shell = AkernelShell.instance(
            parent=self,
            router=router,
            interrupts=interrupts,
            user_ns=self.user_ns,
            user_module=self.user_module,
        )
        record_shell_changes()
        undo.callback(release_shell, shell)
        # A GUI loop a cell enabled (akernel/gui) gives the event loop its own wait
        # back: an embedded kernel's host loop goes on without it.
        undo.callback(gui_loops.disable)
        comm_manager = install_comms(router)
        undo.callback(uninstall_comms)
        # Libraries written for ipykernel recognise a Jupyter kernel (recognition.py).
        undo.callback(recognise_running_kernel())
        background = BackgroundTasks(lambda error: shell.publish_error(error, skip_frames=1))
        shell.kernel.task_group = background
        shell_dispatcher = self._shell_dispatcher(shell, router, iopub, interrupts, comm_manager)
        if self.engine is not None:
            undo.callback(self._apply.install_data_publisher())

        recovery = open_crash_recovery(
            shell,
            self.connection_file
            if self.journal and self.crash_journal and self.engine is None
            else None,
            self.backend,
            for_good=lambda: self._final_shutdown,
            undo=undo,
        )
        debug_session = open_debug_session(
            shell,
            iopub,
            mailbox,
            interrupts,
            wanted=self.debugger and self.engine is None,
            post_to_control=lambda call: self._control.mailbox.post(call),
            debug_parent=lambda: self._control_handlers.last_debug_request,
            undo=undo,
        )
        if debug_session is not None:
            self._shell_handlers.offers_debugger = True
        subshells = None
        if self.engine is None:
            subshells = open_subshells(
                ShellRouter(
                    self._shell_socket,
                    self.session,
                    iopub,
                    post=lambda call: self._control.mailbox.post(call),
                ),
                mailbox,
                self.backend,
                lambda name, sub: self._new_shell(name, sub.inbox, sub.interrupts)[0],
                shell,
                interrupts,
                undo,
            )
        control_dispatcher = self._control_dispatcher(iopub, interrupts, debug_session, subshells)
        # Shell request types sent on control run in the shell, reply on control.
        control_dispatcher.forward_to(shell_dispatcher)
        # get_ipython().kernel.get_parent("control"): the last control request.
        shell.kernel.follow_control_requests(control_dispatcher)
        control = ControlThread(
            control_dispatcher,
            self.backend,
            duties=((self._watch_parent,) if self.parent_pid else ())
            + ((debug_session.serve,) if debug_session is not None else ())
            + ((subshells.router.serve,) if subshells is not None else ())
            + ((recovery.sample_memory,) if recovery is not None else ())
            + self.control_duties,
            on_failure=self._stop_after_failure,
        )
        control_dispatcher.post = control.mailbox.post
        control.start()
        undo.callback(control.stop)
        self._control = control
        iopub.publish_status("starting")

        if self.gil_switch_interval > 0:
            previous_interval = sys.getswitchinterval()
            sys.setswitchinterval(self.gil_switch_interval)
            undo.callback(restore_switch_interval, previous_interval, sys.getswitchinterval())
        streams = [OutStream(name, router, getattr(sys, name)) for name in ("stdout", "stderr")]
        for stream in streams:
            # Whoever still holds one after the end writes where it went before.
            undo.callback(stream.detach_from_kernel)
            state.set(vars(sys), stream.name, stream)
        self._death_by_signal = DeathBySignal()
        if self.handle_sigterm and (previous := self._install_sigterm()) is not None:
            undo.callback(restore_signal, signal.SIGTERM, previous, self._sigterm_handler)
            # A forked child (a multiprocessing worker) ends on SIGTERM as usual.
            undo.callback(at_fork(in_child=lambda: signal.signal(signal.SIGTERM, previous)))
        # pdb.set_trace() and breakpoint(): a debugger an interrupt ends (debugger.py).
        undo.callback(install_kernel_pdb())
        if self.propagate_thread_context:
            undo.callback(propagate_context_to_threads())
        if self.capture_sigint:
            interrupts.install()
            undo.callback(interrupts.uninstall)
        if self.backend == "asyncio":
            # What cells start with asyncio.create_task (execution/cell_tasks.py).
            cell_tasks = CellTasks(
                lambda text, parent: iopub.write_stream("stderr", text, parent),
                cell_code_prefix=shell.compile.files.prefix_dir,
                strict=self.embedded,
            )
            undo.callback(cell_tasks.install())
        set_running(background)
        undo.callback(set_running, None)
        if self.startup is not None:
            self.startup.run(shell)
        return shell, shell_dispatcher, background

    def _shell_dispatcher(
        self,
        shell: AkernelShell,
        router: OutputRouter,
        iopub: IOPubPublisher,
        interrupts: InterruptController,
        comm_manager: Any,
    ) -> RequestDispatcher:
        # Another thread can take the socket over: the subshell router (routing.py).
        self._shell_socket = HandoverSocket(self.sockets.shell)
        stdin = StdinChannel(self.sockets.stdin, self.session)
        stdin.should_stop = lambda: self._stopping
        self._shell_parts = (shell, router, iopub, stdin, comm_manager)
        blocking = self.blocking_input if self.blocking_input is not None else not self.embedded
        self._prompter = Prompter(stdin, router, blocking=blocking)
        self._undo.callback(set_running_prompter(self._prompter))
        self._comm_lock = threading.RLock()
        dispatcher, handlers = self._new_shell("shell", self._shell_socket, interrupts)
        dispatcher.post = self._mailbox.post
        self._shell_handlers = handlers
        apply = self._apply = ApplyHandlers(shell, dispatcher, self.engine)
        dispatcher.handlers["apply_request"] = apply.apply_request
        if self.engine is not None:
            handlers.engine_metadata = apply
            dispatcher.aborted_metadata = apply.aborted_metadata
        return dispatcher

    def _new_shell(
        self, name: str, socket: Any, interrupts: Any
    ) -> tuple[RequestDispatcher, ShellHandlers]:
        """A dispatcher with the shell handlers, for the parent shell or a subshell."""
        shell, router, iopub, stdin, comm_manager = self._shell_parts
        dispatcher = RequestDispatcher(
            name,
            socket,
            self.session,
            iopub,
            serial=("execute_request", "apply_request"),
            abortable=("execute_request", "apply_request"),
        )
        dispatcher.checks_subshell = True
        handlers = ShellHandlers(
            shell,
            router,
            dispatcher,
            stdin,
            interrupts,
            comm_manager=comm_manager,
            connection_ports={
                f"{channel}_port": getattr(self.info, f"{channel}_port")
                for channel in ("shell", "iopub", "stdin", "hb", "control")
            },
            backend=self.backend,
            on_shutdown=lambda msg: self.request_stop(restart=bool(msg.content.get("restart"))),
        )
        handlers.comm_lock = self._comm_lock
        handlers.prompter = self._prompter
        handlers.offers_subshells = self.engine is None
        dispatcher.handlers.update(handlers.handlers())
        return dispatcher, handlers

    async def _watch_parent(self) -> None:
        """Stop when the process that started us (``JPY_PARENT_PID``) is gone."""
        await watch_parent(
            self.parent_pid,
            self.parent_poll_interval,
            on_gone=lambda: self.request_stop(interrupt=True),
        )

    def listen_for_frontends(self, ip: str = "127.0.0.1") -> ConnectionInfo:
        """Bind the kernel's sockets to TCP ports on ``ip`` as well, so that
        Jupyter frontends can connect directly (an engine is otherwise only
        connected to its controller); return the connection info for them.

        Call from the main thread, while the kernel serves (from user code).
        Each socket is bound by the thread that owns it; a heartbeat echo of
        its own answers the frontends.
        """
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("listen_for_frontends must be called from the main thread")
        info, heartbeat = bind_for_frontends(
            self.sockets, self.info, self._iopub, self._control, ip
        )
        self.add_teardown(heartbeat.stop)
        return info

    def add_teardown(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` when the kernel stops (call while it serves)."""
        self._undo.callback(callback)

    def request_stop(self, *, interrupt: bool = False, restart: bool | None = None) -> None:
        """Stop serving (from any thread, or a signal handler); with
        ``interrupt``, interrupt the running code too instead of letting it end.
        ``restart`` says whether a client asked for a stop before a restart
        (``True``) or for good (``False``)."""
        if restart is not None:
            self._final_shutdown = not restart
        self._stopping = True
        scope = self._cancel_scope
        if scope is not None:
            self._mailbox.post(scope.cancel)
        if interrupt:
            self._interrupts.interrupt()

    def _stop_after_failure(self) -> None:
        """A kernel thread cannot go on (it has logged why): stop cleanly, so
        that the frontend sees the kernel die and can restart it."""
        self.request_stop(interrupt=True)

    def _install_sigterm(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_sigterm(signum: int, frame: Any) -> None:
            if self._interrupts.executing:
                # Killed mid-cell: no reply, then die of it (process_end.py).
                self._death_by_signal.note(signum)
                self._shell_handlers.end_abruptly()
            self.request_stop()
            # User code blocks the loop: interrupt it, right where it is, so
            # that the stop can happen.
            self._interrupts.interrupt_at(frame)

        self._sigterm_handler = on_sigterm
        return signal.signal(signal.SIGTERM, on_sigterm)

    # -- control channel ----------------------------------------------------------

    def _control_dispatcher(
        self,
        iopub: IOPubPublisher,
        interrupts: InterruptController,
        debug_session: DebugSession | None,
        subshells: SubshellManager | None,
    ) -> RequestDispatcher:
        dispatcher = RequestDispatcher(
            "control",
            AsyncSocket(self.sockets.control),
            self.session,
            iopub,
            abortable=(),
            status_waits=False,
        )
        handlers = ControlHandlers(
            dispatcher,
            interrupts,
            self._apply,
            backend=self.backend,
            request_stop=self.request_stop,
            debugger=debug_session,
            subshells=subshells,
        )
        handlers.install(engine=self.engine is not None)
        self._control_handlers = handlers
        return dispatcher
