"""An anyio-native, cancel-safe wrapper over a plain pyzmq socket.

ZeroMQ exposes one file descriptor per socket that becomes readable when the
socket's *state* may have changed; it is edge-triggered, so the only reliable
question is ``zmq.EVENTS``. Receiving therefore tries a non-blocking receive
first and waits on the descriptor only when that finds nothing. Waiting
consumes nothing, so cancelling a pending receive loses no message.

A send can consume the edge that announced incoming data; after every send we
check ``zmq.EVENTS`` and, if a message is ready, cut short the wait of the
task blocked in :meth:`AsyncSocket.recv_multipart`.
"""

from __future__ import annotations

from typing import Any

import anyio
import zmq

from .frames import has_input, recv_frames, send_frames


class AsyncSocket:
    """Async receive and non-blocking send on one zmq socket.

    Only one task may wait in :meth:`recv_multipart` at a time. Sends never
    block: ROUTER and PUB sockets drop rather than block, and DEALER sockets
    here have unbounded queues.
    """

    def __init__(self, socket: zmq.Socket) -> None:
        self.socket = socket
        self._fd = socket.getsockopt(zmq.FD)
        self._wait_scope: anyio.CancelScope | None = None

    async def recv_multipart(self) -> list[Any]:
        """Receive the next multipart message, waiting as long as needed."""
        socket = self.socket
        while True:
            try:
                return recv_frames(socket)
            except zmq.Again:
                pass
            await self._wait_for_input()

    async def _wait_for_input(self) -> None:
        """Wait until the socket's descriptor says its state may have changed."""
        with anyio.CancelScope() as scope:
            self._wait_scope = scope
            try:
                await anyio.wait_readable(self._fd)
            finally:
                self._wait_scope = None
        if scope.cancelled_caught:
            # Woken by a send that saw POLLIN; yield once so a flood of
            # sends cannot starve other tasks.
            await anyio.lowlevel.checkpoint()

    def recv_multipart_nowait(self) -> list[Any] | None:
        """The next message if one is ready now, else ``None``."""
        try:
            return recv_frames(self.socket)
        except zmq.Again:
            return None

    def send_multipart(self, frames: list[Any], copy: bool = True) -> None:
        """Send now; never waits."""
        send_frames(self.socket, frames, copy=copy)
        scope = self._wait_scope
        if scope is not None and has_input(self.socket):
            scope.cancel()

    def close(self, linger: int = 0) -> None:
        self.socket.close(linger=linger)
