"""Stdin: ``input()`` and ``getpass()`` from user code, and ``ainput()``.

Synchronous user code blocks the thread it runs in (the event loop's, for a
cell) until it returns, so ``input()`` waits with a plain blocking receive on
the stdin socket, which only this code uses. An interrupt (SIGINT) raises
``KeyboardInterrupt`` out of the blocking receive; so does an interrupt the
caller reports through ``interrupted`` (checked a few times a second), for
kernels that leave SIGINT to a host application.

``ainput()`` is awaited instead: the event loop goes on while the client
answers, and cancelling the wait (an interrupt of an async cell, the kernel
stopping) ends it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import anyio
import zmq

from ..transport import AsyncSocket
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
        # The thread whose awaited request holds the lock, if one does.
        self._awaiting_thread: int | None = None
        self._async_socket: AsyncSocket | None = None

    def request_input(
        self,
        prompt: str,
        parent: Message,
        *,
        password: bool = False,
        interrupted: Callable[[], bool] = lambda: False,
    ) -> str:
        """Ask the client that sent ``parent`` for a line of input, and wait."""
        self._acquire(interrupted)
        try:
            return self._request_input(prompt, parent, password, interrupted)
        finally:
            self._lock.release()

    def _acquire(self, interrupted: Callable[[], bool]) -> None:
        while not self._lock.acquire(timeout=0.1):
            if self._awaiting_thread == threading.get_ident():
                # Waiting here would stop the loop the holder needs to go on.
                raise RuntimeError(
                    "input(): an awaited ainput() of this kernel is already waiting for"
                    " the client's answer"
                )
            self._check_wait(interrupted)

    def _check_wait(self, interrupted: Callable[[], bool]) -> None:
        run_deferred()
        if interrupted():
            raise KeyboardInterrupt
        if self.should_stop():
            raise EOFError("kernel is shutting down")

    def _request_input(
        self, prompt: str, parent: Message, password: bool, interrupted: Callable[[], bool]
    ) -> str:
        self._send_request(prompt, parent, password)
        while True:
            # Wake up now and then: an interrupt deferred while we wait is
            # raised here (a safe point: nothing is half sent), and a kernel
            # shutdown is not held up.
            if not self.socket.poll(100, zmq.POLLIN):
                self._check_wait(interrupted)
                continue
            value = self._value_of(recv_frames(self.socket))
            if value is not None:
                return value

    async def request_input_async(
        self, prompt: str, parent: Message, *, password: bool = False
    ) -> str:
        """Ask the client that sent ``parent`` for a line of input; the event
        loop goes on while it answers. Cancelling the call ends the wait."""
        while not self._lock.acquire(blocking=False):
            await anyio.sleep(0.05)
        self._awaiting_thread = threading.get_ident()
        try:
            if self._async_socket is None:
                self._async_socket = AsyncSocket(self.socket)
            self._send_request(prompt, parent, password)
            while True:
                value = self._value_of(await self._async_socket.recv_multipart())
                if value is not None:
                    return value
        finally:
            self._awaiting_thread = None
            self._lock.release()

    def _send_request(self, prompt: str, parent: Message, password: bool) -> None:
        self._drop_stale_replies()
        frames = self.session.serialize(
            "input_request",
            {"prompt": prompt, "password": password},
            parent,
            identities=parent.identities,
        )
        send_frames(self.socket, frames)

    def _value_of(self, frames: list) -> str | None:
        """The answer in an ``input_reply``; None for anything else (dropped)."""
        try:
            reply = self.session.deserialize(frames)
        except WireError as e:
            log.warning("stdin: dropped a message: %s", e)
            return None
        if reply.msg_type != "input_reply":
            log.warning("stdin: ignoring unexpected %r", reply.msg_type)
            return None
        value = reply.content.get("value", "")
        return value if isinstance(value, str) else str(value)

    def _drop_stale_replies(self) -> None:
        while True:
            try:
                recv_frames(self.socket)
            except zmq.Again:
                return
