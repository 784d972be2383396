"""Capture what is written to file descriptors 1 and 2.

``os.system``, subprocesses inheriting the kernel's stdout/stderr, and C
extensions write to the file descriptors, not to ``sys.stdout``. Each
captured descriptor is pointed at a pipe; whatever arrives is decoded and
handed to a callback (which publishes it as ``stream`` output). The IOPub
flusher thread reads the pipes as data arrives; the kernel also drains them
before a request goes idle, so a cell's output is published before its idle.
"""

from __future__ import annotations

import codecs
import os
import threading
from collections.abc import Callable, Iterator


def available_chunks(fd: int) -> Iterator[bytes]:
    """What can be read from the non-blocking ``fd`` now, chunk by chunk."""
    while True:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        if not data:
            return
        yield data


class FdCapture:
    """Redirects one file descriptor into a pipe that :meth:`drain` reads."""

    def __init__(self, fd: int, on_text: Callable[[str], None]) -> None:
        self.fd = fd
        self.on_text = on_text
        self.saved_fd = os.dup(fd)
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.dup2(write_fd, fd)
        os.close(write_fd)
        self.read_fd = read_fd
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._lock = threading.Lock()
        self._closed = False

    def drain(self) -> None:
        """Hand over everything written so far (from any thread)."""
        with self._lock:
            if self._closed:
                return
            for data in available_chunks(self.read_fd):
                text = self._decoder.decode(data)
                if text:
                    self.on_text(text)

    def restore(self) -> None:
        """Point the descriptor back where it went, then drain what is left."""
        os.dup2(self.saved_fd, self.fd)
        self.drain()

    def close(self) -> None:
        """Release the pipe, once nothing watches it any more."""
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self.read_fd)
                os.close(self.saved_fd)
