"""Receive requests on one ROUTER socket and hand each to its handler, in order.

Each request is bracketed by ``status: busy`` and ``status: idle`` on IOPub
with the request as parent. A message that fails verification or parsing is
logged and dropped; a message type without a handler is logged and ignored.
The request being handled is available to output code through
:data:`current_request`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from typing import Any

from ..transport import AsyncSocket
from ..wire import Message, Session, WireError
from .iopub import IOPubPublisher

log = logging.getLogger("akernel.dispatch")

Handler = Callable[[Message], Awaitable[None]]

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
    ) -> None:
        self.name = name
        self.socket = socket
        self.session = session
        self.iopub = iopub
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.abortable = set(abortable)
        self._abort_requested = False
        # Requests taken off the socket when an abort began: (frames, abort?)
        self._backlog: deque[tuple[list[Any], bool]] = deque()
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

        "Queued" means ready on the socket when the current request finishes,
        before its ``idle`` is published: a client that waits for the reply
        and idle of a failed request and then sends another one never has it
        aborted. Non-abortable requests in the queue are handled as usual.
        """
        self._abort_requested = True

    def _take_queue_for_abort(self) -> None:
        while (frames := self.socket.recv_multipart_nowait()) is not None:
            self._backlog.append((frames, True))

    async def serve(self) -> None:
        """Receive and dispatch until cancelled."""
        while True:
            if self._backlog:
                frames, abort = self._backlog.popleft()
            else:
                frames, abort = await self.socket.recv_multipart(), False
            msg = self.parse(frames)
            if msg is not None:
                await self.dispatch(msg, abort=abort)

    def parse(self, frames: list[Any]) -> Message | None:
        try:
            return self.session.deserialize(frames)
        except WireError as e:
            log.warning("%s: dropped a message: %s", self.name, e)
            return None

    async def dispatch(self, msg: Message, *, abort: bool = False) -> None:
        """Handle one request between busy and idle status messages."""
        msg_type = msg.msg_type
        preempt = self.preempt.get(msg_type)
        if preempt is not None and not abort:
            preempt(msg)
        token = current_request.set(msg)
        self.iopub.publish_status("busy", msg)
        try:
            if abort and msg_type in self.abortable:
                log.info("%s: aborting %s %s", self.name, msg_type, msg.msg_id)
                self.reply(
                    msg,
                    msg_type.rsplit("_", 1)[0] + "_reply",
                    {"status": "aborted"},
                    metadata={"status": "aborted"},
                )
                return
            handler = self.handlers.get(msg_type)
            if handler is None:
                log.warning("%s: ignoring unknown message type %r", self.name, msg_type)
                return
            await handler(msg)
        except Exception:
            log.exception("%s: error while handling %s", self.name, msg_type)
        except KeyboardInterrupt:
            # An interrupt that arrived outside user code: nothing to stop.
            log.info("%s: interrupt while handling %s ignored", self.name, msg_type)
        finally:
            if self._abort_requested:
                self._abort_requested = False
                self._take_queue_for_abort()
            self.iopub.publish_status("idle", msg)
            current_request.reset(token)
