"""Receive requests on one ROUTER socket and hand each to its handler.

Each request is bracketed by ``status: busy`` and ``status: idle`` on IOPub
with the request as parent. A message that fails verification or parsing is
logged and dropped; a message type without a handler is logged and ignored.
Every ``*_request`` that reaches a handler gets a reply: if the handler
raises before replying, the client gets ``status: error`` with the
exception's name, value and traceback instead of waiting forever.
The request being handled is available to output code through
:data:`current_request`.

Ordering (the shell channel, where some request types are *serial*):

* Requests are taken off the socket in arrival order, and handled in that
  order by one executor task, which runs serial requests (``execute_request``)
  one at a time: a cell is the only thing that can be suspended.
* While a cell is suspended in ``await``, a side reader takes over the
  socket: it handles any other request at once (so a cell can await a comm
  message, and ``kernel_info``, ``complete`` or ``inspect`` are answered
  meanwhile), and stops at the next serial request, which waits for the
  executor. So a request never overtakes a serial request that arrived
  before it and has not started yet. The side reader only runs if a cell
  actually suspends: cells that do not await pay nothing for it.
* Handlers for non-serial requests are plain functions: they run to
  completion and never interleave with each other.

The control channel has no serial types: everything is handled in order,
except *concurrent* types (``debug_request``): their handler is called in
order, and may return an awaitable (e.g. waiting for the debugger's answer);
the request then finishes in a task of its own (reply, then idle) while the
requests behind it are handled, so an interrupt is never stuck behind it.
A request type control has no handler for but the shell has (execute,
complete, inspect, history, ...) is handed to the shell dispatcher
(:meth:`RequestDispatcher.forward_to`): it runs in the main thread, in
order with the shell's own requests, and its reply goes back on control.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from typing import Any

import anyio
import anyio.abc

from ..transport import AsyncSocket
from ..wire import Message, Session, WireError, utcnow_iso
from .iopub import IOPubPublisher
from .routing import no_such_subshell

log = logging.getLogger("akernel.dispatch")

Handler = Callable[[Message], Awaitable[None] | None]

current_request: ContextVar[Message | None] = ContextVar("akernel_current_request", default=None)
"""The request whose handling produced the code now running (the output parent)."""


class RequestDispatcher:
    """Serves one request socket (shell or control)."""

    def __init__(
        self,
        name: str,
        socket: AsyncSocket,
        session: Session,
        iopub: IOPubPublisher,
        handlers: dict[str, Handler] | None = None,
        *,
        abortable: Iterable[str] = ("execute_request",),
        serial: Iterable[str] = (),
        concurrent: Iterable[str] = (),
        status_waits: bool = True,
    ) -> None:
        """``status_waits`` false: the busy and idle statuses never hold up a
        reply while IOPub waits for a slow client (the control channel's)."""
        self.name = name
        self.socket = socket
        self.session = session
        self.iopub = iopub
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.abortable = set(abortable)
        self.serial = set(serial)
        self.concurrent = set(concurrent)
        self.status_waits = status_waits
        # Requests taken off the socket when an abort began: (frames, abort?)
        self._backlog: deque[tuple[list[Any], bool]] = deque()
        self._abort_requested = False
        # Requests to answer with ``aborted`` when their turn comes (by id;
        # added from the control thread: set operations are atomic).
        self._aborted_ids: set[str] = set()
        # Set from the control thread: abort everything waiting, as soon as
        # this dispatcher's loop looks at its queue.
        self._abort_waiting = False
        # Set by the owner to run a call in this dispatcher's loop (any thread).
        self.post: Callable[[Callable[[], object]], None] | None = None
        # Set while a serial request runs: the context it started in, where
        # requests handled meanwhile run (they see the cells' context variables).
        self._serial_context: contextvars.Context | None = None
        # The side reader's state, shared with the executor (one thread, one
        # loop: no locks). A request it read but leaves to the executor:
        self._held: tuple[Message, bool] | None = None
        self._side_scope: anyio.CancelScope | None = None
        self._side_wake: anyio.Event
        self._side_parked: anyio.Event
        # Called on receipt, before busy is published: for requests whose
        # effect must not wait (interrupts), even for the GIL.
        self.preempt: dict[str, Callable[[Message], None]] = {}
        # The metadata of an ``aborted`` reply (an engine's schedulers need more).
        self.aborted_metadata: Callable[[Message], dict[str, Any]] = _aborted_metadata
        # Requests being handled that have not been replied to yet (by msg_id).
        self._unanswered: set[str] = set()
        # Where request types without a handler here go (control: the shell).
        self._forward_to: RequestDispatcher | None = None
        # Requests other channels handed in, waiting for the executor; and
        # the channel each one's reply goes back on (by msg_id).
        self._handed_in: deque[tuple[Message, bool]] = deque()
        self._reply_via: dict[str, RequestDispatcher] = {}
        self._recv_scope: anyio.CancelScope | None = None
        # Set when the process is dying mid-request (SIGTERM): nothing more
        # is sent, so that clients see a dead kernel, not a finished request.
        self.ended = False
        # Shell dispatchers only: the kernel subshell served (None: the parent
        # shell); a request for another one is answered with an error. Control
        # requests concern the whole kernel, whatever subshell they name.
        self.checks_subshell = False
        self.subshell_id: str | None = None

    def reply(
        self,
        parent: Message,
        msg_type: str,
        content: dict[str, Any],
        *,
        metadata: dict[str, Any] | None = None,
        buffers: list[Any] | None = None,
    ) -> None:
        """Send a reply to ``parent`` back along the identities it came from
        (on the channel it came from, if another channel handed it in)."""
        self._unanswered.discard(parent.msg_id)
        if self.ended:
            return
        origin = self._reply_via.pop(parent.msg_id, None)
        frames = self.session.serialize(
            msg_type,
            content,
            parent,
            metadata=metadata,
            buffers=buffers,
            identities=parent.identities,
        )
        if origin is not None:
            origin.send_from_another_thread(frames)
            return
        self.socket.send_multipart(frames)

    def send_from_another_thread(self, frames: list[Any]) -> None:
        """Send on this dispatcher's socket, from a thread that does not own it."""
        if self.post is None:
            raise RuntimeError(f"{self.name}: no loop to send a forwarded reply from")
        self.post(lambda: self.socket.send_multipart(frames))

    def forward_to(self, other: RequestDispatcher) -> None:
        """Hand the request types ``other`` handles and this one does not to
        ``other``, which replies on this dispatcher's socket (via ``post``)."""
        self._forward_to = other

    def hand_in(self, msg: Message, origin: RequestDispatcher) -> None:
        """Handle ``msg``, received by ``origin``, in order after what this
        dispatcher has received so far; reply on ``origin`` (any thread)."""
        if self.post is None:
            raise RuntimeError(f"{self.name}: cannot take requests from other channels")
        self._reply_via[msg.msg_id] = origin
        self.post(lambda: self._take_handed_in(msg))

    def _take_handed_in(self, msg: Message) -> None:
        self._handed_in.append((msg, False))
        if self._recv_scope is not None:
            self._recv_scope.cancel()  # the executor waits on the socket: wake it

    def _forwarded(self, msg: Message) -> bool:
        """Hand ``msg`` over if it is another dispatcher's to handle."""
        other = self._forward_to
        if other is None or msg.msg_type in self.handlers or msg.msg_type not in other.handlers:
            return False
        other.hand_in(msg, self)
        return True

    def abort_queued(self) -> None:
        """Answer the abortable requests queued behind this one with ``aborted``.

        "Queued" means received, or ready on the socket, when the current
        request finishes, before its ``idle`` is published: a client that
        waits for the reply and idle of a failed request and then sends
        another one never has it aborted. Non-abortable requests in the
        queue are handled as usual.
        """
        self._abort_requested = True

    # -- serving --------------------------------------------------------------

    async def serve(self) -> None:
        """Receive and dispatch until cancelled."""
        self._side_parked = anyio.Event()
        self._side_parked.set()
        if not self.serial:
            async with anyio.create_task_group() as tg:
                while True:
                    msg, abort = await self._next_request()
                    if msg is None or self._forwarded(msg):
                        continue
                    if msg.msg_type in self.concurrent:
                        self._start_concurrent(msg, tg)
                    else:
                        await self.dispatch(msg, abort=abort)
        self._side_wake = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._read_while_a_cell_runs)
            await self._execute()

    async def _next_request(self) -> tuple[Message | None, bool]:
        """The next request (None for a message dropped), and whether to abort it."""
        while True:
            if self._abort_waiting:
                self._take_queue_for_abort()
            if self._handed_in:
                return self._handed_in.popleft()
            if self._backlog:
                frames, abort = self._backlog.popleft()
                return self.parse(frames), abort
            frames = self.socket.recv_multipart_nowait()
            if frames is not None:
                return self.parse(frames), False
            # Only one task may wait on the socket: the side reader may still
            # be on its way out of its wait.
            await self._side_parked.wait()
            if self._handed_in or self._backlog:
                continue  # came in during that wait
            frames = None
            with anyio.CancelScope() as self._recv_scope:
                frames = await self.socket.recv_multipart()
            self._recv_scope = None
            if frames is not None:
                return self.parse(frames), False

    async def _execute(self) -> None:
        """The executor: reads and handles requests itself, one at a time, and
        runs serial ones; while one runs, the side reader reads."""
        while True:
            if self._held is not None:
                (msg, abort), self._held = self._held, None
            else:
                msg, abort = await self._next_request()
                if msg is None:
                    continue
            if msg.msg_type not in self.serial:
                self.dispatch_now(msg, abort=abort)
                continue
            self._serial_context = contextvars.copy_context()
            # The side reader gets to run only if the cell suspends. Until it
            # has run (and parked) once, its last parked event is still unset
            # and serves for this cell too: cells that never await allocate
            # nothing here.
            if self._side_parked.is_set():
                self._side_parked = anyio.Event()
                self._side_wake.set()
            try:
                await self.dispatch(msg, abort=abort)
            finally:
                self._serial_context = None
                if self._side_scope is not None:
                    self._side_scope.cancel()

    async def _read_while_a_cell_runs(self) -> None:
        """The side reader: while a serial request is suspended in ``await``,
        handle the others at once; stop at the next serial one (it waits for
        the executor) or when the running one ends."""
        while True:
            await self._side_wake.wait()
            self._side_wake = anyio.Event()
            try:
                while self._serial_context is not None and self._held is None:
                    frames = None
                    with anyio.CancelScope() as self._side_scope:
                        frames = await self.socket.recv_multipart()
                    self._side_scope = None
                    if frames is None or (msg := self.parse(frames)) is None:
                        continue  # cancelled (the cell ended), or dropped
                    context = self._serial_context
                    if context is None or msg.msg_type in self.serial:
                        self._held = (msg, False)  # the executor's, in order
                    else:
                        context.run(self.dispatch_now, msg, False)
            finally:
                self._side_scope = None
                self._side_parked.set()

    def abort_ids(self, msg_ids: Iterable[str]) -> None:
        """Answer these requests with ``aborted`` when their turn comes (any thread)."""
        self._aborted_ids.update(msg_ids)

    def abort_waiting_soon(self) -> None:
        """Abort every request waiting now (any thread): the ones already on the
        socket, or held, when this dispatcher next looks at its queue: after
        the running request, or at once if that one is suspended in await."""
        self._abort_waiting = True
        if self.post is not None:
            self.post(lambda: self._abort_waiting and self._take_queue_for_abort())

    def _take_queue_for_abort(self) -> None:
        self._abort_waiting = False
        # A request the side reader holds arrived before this point, and so
        # did everything ready on the socket.
        if self._held is not None:
            self._held = (self._held[0], True)
        self._handed_in = deque((msg, True) for msg, _ in self._handed_in)
        while (frames := self.socket.recv_multipart_nowait()) is not None:
            self._backlog.append((frames, True))

    def parse(self, frames: list[Any]) -> Message | None:
        try:
            return self.session.deserialize(frames)
        except WireError as e:
            log.warning("%s: dropped a message: %s", self.name, e)
        except Exception:
            # A decoder bug must cost one message, never the channel.
            log.exception("%s: dropped a message that could not be decoded", self.name)
        return None

    # -- one request ------------------------------------------------------------

    async def dispatch(self, msg: Message, *, abort: bool = False) -> None:
        """Handle one request between busy and idle status messages."""
        await self._complete(msg, self._start(msg, abort))

    def dispatch_now(self, msg: Message, abort: bool = False) -> None:
        """Handle one request whose handler is a plain function."""
        token = current_request.set(msg)
        try:
            result = self._begin(msg, abort)
            if result is not None:
                result.close()
                raise TypeError(f"the {msg.msg_type} handler must not be async")
        except (Exception, KeyboardInterrupt) as error:
            self._failed(msg, error)
        finally:
            self._end(msg)
            current_request.reset(token)

    def _start_concurrent(self, msg: Message, tg: anyio.abc.TaskGroup) -> None:
        """Call the handler now; let a task of ``tg`` await what it returns."""
        result = self._start(msg, False)
        if result is None:
            self._end(msg)
            return
        tg.start_soon(self._complete, msg, result, name=f"{self.name}: {msg.msg_type}")

    def _start(self, msg: Message, abort: bool) -> Any:
        """Publish busy and call the handler; return what it returned if
        awaitable (None if it failed: the failure is answered)."""
        token = current_request.set(msg)
        try:
            return self._begin(msg, abort)
        except (Exception, KeyboardInterrupt) as error:
            self._failed(msg, error)
            return None
        finally:
            current_request.reset(token)

    async def _complete(self, msg: Message, result: Awaitable[None] | None) -> None:
        """Await what the handler returned, then publish idle."""
        token = current_request.set(msg)
        try:
            if result is not None:
                await result
        except (Exception, KeyboardInterrupt) as error:
            self._failed(msg, error)
        finally:
            self._end(msg)
            current_request.reset(token)

    def _failed(self, msg: Message, error: BaseException) -> None:
        """Log a handler's failure; answer its request with an error if the
        handler did not reply."""
        if isinstance(error, KeyboardInterrupt):
            # An interrupt that arrived outside user code: nothing to stop.
            log.info("%s: interrupt while handling %s", self.name, msg.msg_type)
        else:
            log.error("%s: error while handling %s", self.name, msg.msg_type, exc_info=error)
        if msg.msg_id not in self._unanswered:
            return
        content = {
            "status": "error",
            "ename": type(error).__name__,
            "evalue": str(error),
            "traceback": traceback.format_exception(error),
        }
        try:
            self.reply(msg, msg.msg_type[: -len("_request")] + "_reply", content)
        except Exception:
            log.exception("%s: cannot send the error reply to %s", self.name, msg.msg_type)

    def _begin(self, msg: Message, abort: bool) -> Any:
        """Publish busy and call the handler; return what it returned if awaitable."""
        msg_type = msg.msg_type
        preempt = self.preempt.get(msg_type)
        if preempt is not None and not abort:
            preempt(msg)
        self.iopub.publish_status("busy", msg, wait=self.status_waits)
        if self._aborted_ids and msg.msg_id in self._aborted_ids:
            self._aborted_ids.discard(msg.msg_id)
            abort = True
        if abort and msg_type in self.abortable:
            log.info("%s: aborting %s %s", self.name, msg_type, msg.msg_id)
            self.reply(
                msg,
                msg_type.rsplit("_", 1)[0] + "_reply",
                {"status": "aborted"},
                metadata=self.aborted_metadata(msg),
            )
            return None
        if self.checks_subshell and msg.header.get("subshell_id") != self.subshell_id:
            self._not_this_subshell(msg)
            return None
        handler = self.handlers.get(msg_type)
        if handler is None:
            log.warning("%s: ignoring unknown message type %r", self.name, msg_type)
            return None
        if msg_type.endswith("_request"):
            self._unanswered.add(msg.msg_id)
        result = handler(msg)
        return result if inspect.isawaitable(result) else None

    def _not_this_subshell(self, msg: Message) -> None:
        """A request for a subshell that does not exist (the router sends those
        it knows to their subshell)."""
        subshell = msg.header.get("subshell_id")
        if not msg.msg_type.endswith("_request"):
            log.warning("%s: %s for unknown subshell %r dropped", self.name, msg.msg_type, subshell)
            return
        self.reply(msg, *no_such_subshell(msg, subshell))

    def _end(self, msg: Message) -> None:
        self._unanswered.discard(msg.msg_id)
        if self._abort_requested:
            self._abort_requested = False
            self._take_queue_for_abort()
        if not self.ended:
            self.iopub.publish_status("idle", msg, wait=self.status_waits)


def _aborted_metadata(msg: Message) -> dict[str, Any]:
    return {"status": "aborted", "started": utcnow_iso()}
