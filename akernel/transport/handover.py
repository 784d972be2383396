"""A socket another thread can take over at any moment, even while its owner is busy.

The shell socket is read by the main thread until the first kernel subshell is
created; from then on a router on the control thread owns it, and the main
thread's requests and replies go through that router. The main thread may be
blocked in user code right then (that is when a subshell is wanted), so the
hand-over cannot wait for it: every operation of the first owner takes a lock
and looks whether the socket was handed over, and the new owner takes the same
lock to say so. The lock is the memory barrier ZeroMQ asks for when a socket
changes threads; it is never contended until the hand-over.

Until then this is an :class:`~akernel.transport.AsyncSocket`; after it, the
same calls go to the :class:`Relay` the new owner gave.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

import zmq

from .frames import has_input, recv_frames, send_frames
from .zmqsocket import AsyncSocket


class Relay(Protocol):
    """What stands in for the socket once it is handed over (any thread may send)."""

    async def recv_multipart(self) -> list[Any]: ...

    def recv_multipart_nowait(self) -> list[Any] | None: ...

    def send_multipart(self, frames: list[Any], copy: bool = True) -> None: ...


class HandoverSocket(AsyncSocket):
    """An :class:`AsyncSocket` whose owner can be replaced by :meth:`hand_over`."""

    def __init__(self, socket: zmq.Socket) -> None:
        super().__init__(socket)
        self._lock = threading.Lock()
        self._relay: Relay | None = None

    @property
    def handed_over(self) -> bool:
        return self._relay is not None

    async def recv_multipart(self) -> list[Any]:
        while True:
            relay, frames = self._recv_now()
            if frames is not None:
                return frames
            if relay is not None:
                return await relay.recv_multipart()
            await self._wait_for_input()

    def recv_multipart_nowait(self) -> list[Any] | None:
        relay, frames = self._recv_now()
        return relay.recv_multipart_nowait() if relay is not None else frames

    def _recv_now(self) -> tuple[Relay | None, list[Any] | None]:
        """(the relay, None) once handed over; else (None, a message ready now or None)."""
        with self._lock:
            relay = self._relay
            if relay is not None:
                return relay, None
            try:
                return None, recv_frames(self.socket)
            except zmq.Again:
                return None, None

    def send_multipart(self, frames: list[Any], copy: bool = True) -> None:
        with self._lock:
            relay = self._relay
            if relay is None:
                send_frames(self.socket, frames, copy=copy)
                scope = self._wait_scope
                if scope is not None and has_input(self.socket):
                    scope.cancel()
                return
        relay.send_multipart(frames, copy)

    def hand_over(self, relay: Relay, wake_owner: Callable[[Callable[[], object]], None]) -> None:
        """From the new owner's thread: from now on, the first owner's calls go
        to ``relay``. ``wake_owner`` posts a call to the first owner's loop, to
        end a wait on the socket that would otherwise never end."""
        with self._lock:
            self._relay = relay
        wake_owner(self._end_wait)

    def _end_wait(self) -> None:
        scope = self._wait_scope
        if scope is not None:
            scope.cancel()
