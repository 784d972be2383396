"""Stdin: ``input()`` and ``getpass()`` from synchronous user code.

User code runs in the main thread and blocks the event loop while it runs,
so the request is made with a plain blocking receive on the stdin socket,
which only this code uses. An interrupt (SIGINT) raises ``KeyboardInterrupt``
out of the blocking receive.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import zmq

from ..transport.frames import recv_frames, run_deferred, send_frames
from ..wire import Message, Session, WireError

log = logging.getLogger("akernel.stdin")


class StdinNotAllowed(RuntimeError):
    """The frontend said it cannot answer input requests (``allow_stdin`` false)."""


class StdinChannel:
    """Sends ``input_request`` and waits for the matching ``input_reply``."""

    def __init__(self, socket: zmq.Socket, session: Session) -> None:
        self.socket = socket
        self.session = session
        self.should_stop: Callable[[], bool] = lambda: False
        # Cells of several shells (kernel subshells, in threads of their own)
        # may ask at once: one request at a time on the socket.
        self._lock = threading.Lock()

    def request_input(self, prompt: str, parent: Message, *, password: bool = False) -> str:
        """Ask the client that sent ``parent`` for a line of input."""
        with self._lock:
            return self._request_input(prompt, parent, password)

    def _request_input(self, prompt: str, parent: Message, password: bool) -> str:
        self._drop_stale_replies()
        frames = self.session.serialize(
            "input_request",
            {"prompt": prompt, "password": password},
            parent,
            identities=parent.identities,
        )
        send_frames(self.socket, frames)
        while True:
            # Wake up now and then: an interrupt deferred while we wait is
            # raised here (a safe point: nothing is half sent), and a kernel
            # shutdown is not held up.
            if not self.socket.poll(100, zmq.POLLIN):
                run_deferred()
                if self.should_stop():
                    raise EOFError("kernel is shutting down")
                continue
            frames = recv_frames(self.socket)
            try:
                reply = self.session.deserialize(frames)
            except WireError as e:
                log.warning("stdin: dropped a message: %s", e)
                continue
            if reply.msg_type != "input_reply":
                log.warning("stdin: ignoring unexpected %r", reply.msg_type)
                continue
            value = reply.content.get("value", "")
            return value if isinstance(value, str) else str(value)

    def _drop_stale_replies(self) -> None:
        while True:
            try:
                recv_frames(self.socket)
            except zmq.Again:
                return
