"""Flow control on IOPub: lossless for clients that read, never held up by one that stops.

ZeroMQ's XPUB socket either waits for every subscriber (``XPUB_NODROP``: a
send blocks while any subscriber's queue is full) or drops, per subscriber,
what a full queue cannot take. Neither alone will do: waiting lets one
client that stops reading (a suspended ``jupyter console``, a
``BlockingKernelClient`` that nobody reads) stall every other client and
the kernel itself; dropping loses output for a healthy client that is only
briefly slower than a cell that prints.

So the policy is both, in turn:

* **Lossless while everyone reads.** Sends wait for room: a cell that prints
  faster than its clients read is slowed down, not cut.
* **A client that reads nothing for ``stall_timeout`` seconds while its
  queue is full is left behind.** That one message is sent in dropping mode:
  every client with room gets it, the full queue does not, and ZeroMQ then
  skips that queue (it is no longer waited for either) until the client has
  read half of it. The client comes back by itself when it reads again,
  having lost what was published meanwhile; one that never reads costs the
  others a single wait. Its queue holds at most the socket's high-water mark
  of messages, so the kernel's memory stays bounded.

ZeroMQ does not say which subscriber was full, nor when it comes back, so
the kernel cannot address it: a stall is logged, with the count of stalls.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from ..transport.frames import send_frames

log = logging.getLogger("akernel.iopub")


class StallAwareSender:
    """Sends on an XPUB socket under the policy above. Not thread-safe:
    the publisher calls it under its lock."""

    def __init__(self, socket: zmq.Socket, stall_timeout: float) -> None:
        self.socket = socket
        self.stall_timeout = stall_timeout
        # A blocking send gives up after this long: that is how a stall shows.
        socket.sndtimeo = max(1, int(stall_timeout * 1000))
        self.stalls = 0

    def send(self, frames: list[Any]) -> None:
        """Send one message, waiting at most ``stall_timeout`` for room."""
        socket = self.socket
        try:
            send_frames(socket, frames)
            return
        except zmq.Again:
            pass
        self.stalls += 1
        log.warning(
            "IOPub: a client has read nothing for %.1f s (stall %d): it is left behind"
            " and misses what is published until it reads again",
            self.stall_timeout,
            self.stalls,
        )
        socket.setsockopt(zmq.XPUB_NODROP, 0)
        try:
            send_frames(socket, frames)
        finally:
            socket.setsockopt(zmq.XPUB_NODROP, 1)
