"""Receive requests on one ROUTER socket and hand each to its handler.

Each request is bracketed by ``status: busy`` and ``status: idle`` on IOPub
with the request as parent. A message that fails verification or parsing is
logged and dropped; a message type without a handler is logged and ignored.
The request being handled is available to output code through
:data:`current_request`.

Ordering (the shell channel, where some request types are *serial*):

* Requests are taken off the socket in arrival order, by one reader task.
* Serial requests (``execute_request``) run one at a time, in arrival order,
  in one executor task: a cell is the only thing that can be suspended.
* Any other request is handled as soon as every request that arrived before
  it has at least *started*: by the executor when it is idle, or, while a
  cell is suspended in ``await``, right away by the reader, so a cell can
  await a comm message, and ``kernel_info``, ``complete`` or ``inspect`` are
  answered meanwhile. A request never overtakes a serial request that
  arrived before it and has not started yet.
* Handlers for non-serial requests are plain functions: they run to
  completion and never interleave with each other.

The control channel has no serial types: everything is handled in order.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from ..transport import AsyncSocket
from ..wire import Message, Session, WireError
from .iopub import IOPubPublisher

log = logging.getLogger("akernel.dispatch")

Handler = Callable[[Message], Awaitable[None] | None]

# A request handed from the reader to the executor: (request, abort?, the
# event the executor sets when it starts a serial request).
_Handoff = tuple[Message, bool, anyio.Event | None]

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
    ) -> None:
        self.name = name
        self.socket = socket
        self.session = session
        self.iopub = iopub
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.abortable = set(abortable)
        self.serial = set(serial)
        # Requests taken off the socket when an abort began: (frames, abort?)
        self._backlog: deque[tuple[list[Any], bool]] = deque()
        self._abort_requested = False
        # Reader state, seen by the executor (same thread, no locks needed).
        self._reader_holding = False  # waiting to hand a request to the executor
        self._abort_held = False  # ... and that request arrived before an abort
        self._recv_scope: anyio.CancelScope | None = None
        # Set while a serial request runs: the context it started in, where
        # requests handled meanwhile run (they see the cells' context variables).
        self._serial_context: contextvars.Context | None = None
        # Called on receipt, before busy is published: for requests whose
        # effect must not wait (interrupts), even for the GIL.
        self.preempt: dict[str, Callable[[Message], None]] = {}

    def reply(
        self,
        parent: Message,
        msg_type: str,
        content: dict[str, Any],
        *,
        metadata: dict[str, Any] | None = None,
        buffers: list[Any] | None = None,
    ) -> None:
        """Send a reply to ``parent`` back along the identities it came from."""
        frames = self.session.serialize(
            msg_type,
            content,
            parent,
            metadata=metadata,
            buffers=buffers,
            identities=parent.identities,
        )
        self.socket.send_multipart(frames)

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
        if not self.serial:
            while True:
                frames, abort = await self._next_frames()
                if frames is not None and (msg := self.parse(frames)) is not None:
                    await self.dispatch(msg, abort=abort)
        send, receive = anyio.create_memory_object_stream[_Handoff](0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._execute_serially, receive)
            await self._read(send)

    async def _next_frames(self) -> tuple[list[Any] | None, bool]:
        if self._backlog:
            return self._backlog.popleft()
        try:
            with anyio.CancelScope() as self._recv_scope:
                return await self.socket.recv_multipart(), False
        finally:
            self._recv_scope = None
        return None, False  # woken to look at the backlog

    async def _read(self, executor: ObjectSendStream[_Handoff]) -> None:
        while True:
            frames, abort = await self._next_frames()
            if frames is None or (msg := self.parse(frames)) is None:
                continue
            context = self._serial_context
            if context is not None and msg.msg_type not in self.serial:
                # A cell is suspended in ``await``: answer now.
                context.run(self.dispatch_now, msg, abort)
                continue
            started = anyio.Event() if msg.msg_type in self.serial else None
            self._reader_holding = True
            try:
                await executor.send((msg, abort, started))
            finally:
                self._reader_holding = False
            if started is not None:
                # Read on only once it has started: what comes next may be
                # for a comm (or target) that this cell opens.
                await started.wait()

    async def _execute_serially(self, requests: ObjectReceiveStream[_Handoff]) -> None:
        async for msg, abort, started in requests:
            if self._abort_held:
                self._abort_held, abort = False, True
            if started is None:
                self.dispatch_now(msg, abort=abort)
                continue
            self._serial_context = contextvars.copy_context()
            started.set()
            try:
                await self.dispatch(msg, abort=abort)
            finally:
                self._serial_context = None

    def _take_queue_for_abort(self) -> None:
        # The request the reader holds arrived before this point, and so did
        # everything ready on the socket.
        self._abort_held = self._reader_holding
        while (frames := self.socket.recv_multipart_nowait()) is not None:
            self._backlog.append((frames, True))
        if self._backlog and self._recv_scope is not None:
            self._recv_scope.cancel()  # the reader waits on the socket: look here

    def parse(self, frames: list[Any]) -> Message | None:
        try:
            return self.session.deserialize(frames)
        except WireError as e:
            log.warning("%s: dropped a message: %s", self.name, e)
            return None

    # -- one request ------------------------------------------------------------

    async def dispatch(self, msg: Message, *, abort: bool = False) -> None:
        """Handle one request between busy and idle status messages."""
        token = current_request.set(msg)
        try:
            result = self._begin(msg, abort)
            if result is not None:
                await result
        except Exception:
            log.exception("%s: error while handling %s", self.name, msg.msg_type)
        except KeyboardInterrupt:
            # An interrupt that arrived outside user code: nothing to stop.
            log.info("%s: interrupt while handling %s ignored", self.name, msg.msg_type)
        finally:
            self._end(msg)
            current_request.reset(token)

    def dispatch_now(self, msg: Message, abort: bool = False) -> None:
        """Handle one request whose handler is a plain function."""
        token = current_request.set(msg)
        try:
            result = self._begin(msg, abort)
            if result is not None:
                result.close()
                log.error("%s: %s handler must not be async", self.name, msg.msg_type)
        except Exception:
            log.exception("%s: error while handling %s", self.name, msg.msg_type)
        except KeyboardInterrupt:
            log.info("%s: interrupt while handling %s ignored", self.name, msg.msg_type)
        finally:
            self._end(msg)
            current_request.reset(token)

    def _begin(self, msg: Message, abort: bool) -> Any:
        """Publish busy and call the handler; return what it returned if awaitable."""
        msg_type = msg.msg_type
        preempt = self.preempt.get(msg_type)
        if preempt is not None and not abort:
            preempt(msg)
        self.iopub.publish_status("busy", msg)
        if abort and msg_type in self.abortable:
            log.info("%s: aborting %s %s", self.name, msg_type, msg.msg_id)
            self.reply(
                msg,
                msg_type.rsplit("_", 1)[0] + "_reply",
                {"status": "aborted"},
                metadata={"status": "aborted"},
            )
            return None
        handler = self.handlers.get(msg_type)
        if handler is None:
            log.warning("%s: ignoring unknown message type %r", self.name, msg_type)
            return None
        result = handler(msg)
        return result if inspect.isawaitable(result) else None

    def _end(self, msg: Message) -> None:
        if self._abort_requested:
            self._abort_requested = False
            self._take_queue_for_abort()
        self.iopub.publish_status("idle", msg)
