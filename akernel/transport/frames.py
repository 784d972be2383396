"""Lean multipart send and receive.

pyzmq's ``send_multipart``/``recv_multipart`` spend most of their time on
flag-enum arithmetic and argument checks: about 20 µs for a 7-frame Jupyter
message, against under 5 µs for the plain loop below with integer flags.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import zmq

from ..wire import DELIMITER

_send = zmq.Socket.send
_recv = zmq.Socket.recv
_get = zmq.Socket.get
SNDMORE = int(zmq.SNDMORE)
RCVMORE = int(zmq.RCVMORE)
NOBLOCK = int(zmq.NOBLOCK)
EVENTS = int(zmq.EVENTS)
POLLIN = int(zmq.POLLIN)


# Calls deferred by a signal handler until a multipart send or receive is
# complete: an exception raised between two frames would leave half a message
# in the socket and corrupt every message after it. Signal handlers run in the
# main thread only, between bytecodes, so a plain list is enough.
_deferred: list[Callable[[], None]] = []
_MAIN_THREAD = threading.main_thread().ident


def defer_until_complete(call: Callable[[], None]) -> None:
    """Run ``call`` when the send or receive in progress has completed."""
    _deferred.append(call)


def run_deferred() -> None:
    """Run what was deferred, at the end of a kernel call made by user code."""
    if _deferred:
        _run_deferred()


def _run_deferred() -> None:
    # Deferred by the main thread's signal handlers, for the main thread.
    if threading.get_ident() != _MAIN_THREAD:
        return
    calls = _deferred[:]
    _deferred.clear()
    for call in calls:
        call()


def send_frames(
    socket: zmq.Socket, frames: list[Any], flags: int = 0, *, copy: bool = True
) -> None:
    """Send ``frames`` as one multipart message (never blocks on ROUTER/PUB).

    With ``NOBLOCK`` in ``flags``, ``zmq.Again`` on the first frame means
    nothing was sent (a message's later frames never fail once its first is
    taken, on the socket types used here).
    """
    last = len(frames) - 1
    more = flags | SNDMORE
    for i, frame in enumerate(frames):
        _send(socket, frame, more if i < last else flags, copy=copy)
    if _deferred:
        _run_deferred()


def recv_frames(socket: zmq.Socket, flags: int = NOBLOCK) -> list[Any]:
    """Receive one multipart message; raises ``zmq.Again`` if none is ready.

    Identities, delimiter, signature and the four JSON frames come as
    ``bytes`` (cheapest for small frames); buffers after them stay zero-copy
    ``zmq.Frame`` objects.
    """
    first = _recv(socket, flags)
    frames = [first]
    buffers_from = 6 if first == DELIMITER else -1
    while _get(socket, RCVMORE):
        if 0 <= buffers_from <= len(frames):
            frames.append(_recv(socket, flags, copy=False))
            continue
        frame = _recv(socket, flags)
        frames.append(frame)
        if buffers_from < 0 and frame == DELIMITER:
            buffers_from = len(frames) + 5
    if _deferred:
        _run_deferred()
    return frames


def has_input(socket: zmq.Socket) -> bool:
    """Whether a message can be received now (also re-arms the socket FD)."""
    return bool(_get(socket, EVENTS) & POLLIN)
