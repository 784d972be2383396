"""Output of forked children (``os.fork``, ``multiprocessing`` with fork).

A forked child is a copy of the kernel without its threads: the IOPub
flusher, the control loop and the heartbeat do not exist in it, locks they
held at the moment of the fork stay held forever, and the ZeroMQ sockets it
inherited belong to the parent (using them corrupts the parent's traffic or
spins forever). So a child never publishes anything itself: what it prints
goes, framed, to a pipe that the parent reads and publishes as ``stream``
output of the request that was running where the fork happened.

A frame is ``stream (1 byte) | tag length (2) | text length (4) | tag | text``
(big-endian), where the tag names the parent request (its msg_id). Every
frame is written with one ``write`` of at most ``PIPE_BUF`` bytes, which the
OS keeps whole even when many children write at once.

Process-wide at-fork hooks are registered once (``os.register_at_fork`` has
no way to unregister); kernels add and remove their callbacks here. While a
kernel has callbacks here, the forking thread blocks SIGTERM across the fork:
a child gets it only once its callbacks have given it the handler it had
before the kernel (the kernel's would swallow it there, and
``multiprocessing.Pool.terminate`` would wait forever for a worker it had
already stopped).
"""

from __future__ import annotations

import codecs
import logging
import os
import select
import signal
import struct
import threading
from collections.abc import Callable

from .fdcapture import available_chunks

log = logging.getLogger("akernel.forked")

_HEADER = struct.Struct("!BHI")
_STREAMS = ("stdout", "stderr")
# What one atomic write may carry.
_FRAME_LIMIT = getattr(select, "PIPE_BUF", 512)

_before_fork: list[Callable[[], None]] = []
_in_child: list[Callable[[], None]] = []
_hooks_registered = False
# Signals the forking thread blocks until the callbacks have run (see above).
_HELD_ACROSS_FORK = {signal.SIGTERM}
# Per forking thread: those it blocked for the fork in progress.
_held = threading.local()


def _run_all(callbacks: list[Callable[[], None]]) -> None:
    for callback in list(callbacks):
        try:
            callback()
        except Exception:
            # A hook that fails must not stop the others (nor the fork).
            log.exception("an at-fork hook failed")


def _hold_signals() -> None:
    """Before a fork: block the held signals in the forking thread (the child
    inherits its mask), unless no kernel's callbacks are waiting to run."""
    _held.signals = set()
    if _in_child and hasattr(signal, "pthread_sigmask"):
        # Recorded before blocking: a Python handler that runs as the mask
        # changes (pthread_sigmask checks for signals) may raise.
        _held.signals = _HELD_ACROSS_FORK - signal.pthread_sigmask(signal.SIG_BLOCK, [])
        signal.pthread_sigmask(signal.SIG_BLOCK, _held.signals)


def _release_signals() -> None:
    """After a fork, in the parent or the child: unblock what was blocked for
    it; a signal that came meanwhile is delivered now, to the handler the
    callbacks left."""
    signals = getattr(_held, "signals", None)
    _held.signals = set()
    if signals:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)


def _before() -> None:
    _run_all(_before_fork)
    _hold_signals()


def _after_in_child() -> None:
    _run_all(_in_child)
    _release_signals()


def _register_hooks() -> None:
    global _hooks_registered
    if not _hooks_registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=_before, after_in_parent=_release_signals, after_in_child=_after_in_child
        )
        _hooks_registered = True


def at_fork(
    *, before: Callable[[], None] | None = None, in_child: Callable[[], None] | None = None
) -> Callable[[], None]:
    """Call ``before`` in the forking thread before each fork, ``in_child`` in
    each forked child; return the function that removes them again."""
    _register_hooks()
    if before is not None:
        _before_fork.append(before)
    if in_child is not None:
        _in_child.append(in_child)

    def remove() -> None:
        for callbacks, callback in ((_before_fork, before), (_in_child, in_child)):
            if callback in callbacks:
                callbacks.remove(callback)

    return remove


def encode_frames(name: str, text: str, tag: str) -> list[bytes]:
    """``text`` of stream ``name`` as frames of at most ``PIPE_BUF`` bytes."""
    tag_bytes = tag.encode("utf-8")[:255]
    room = _FRAME_LIMIT - _HEADER.size - len(tag_bytes)
    data = text.encode("utf-8", "surrogateescape")
    stream = _STREAMS.index(name)
    frames = []
    start = 0
    while start < len(data):
        end = min(start + room, len(data))
        # Never cut a character in two: back off to the start of one.
        while end < len(data) and end > start and (data[end] & 0xC0) == 0x80:
            end -= 1
        piece = data[start:end]
        frames.append(_HEADER.pack(stream, len(tag_bytes), len(piece)) + tag_bytes + piece)
        start = end
    return frames


class ChildOutputPipe:
    """The pipe between forked children (writers) and the kernel (reader)."""

    def __init__(self, on_output: Callable[[str, str, str], None]) -> None:
        """``on_output(stream, text, tag)`` is called in the kernel for each
        piece of text a child wrote, from the thread that drains."""
        self.on_output = on_output
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self._pending = b""
        self._decoders = {
            name: codecs.getincrementaldecoder("utf-8")("replace") for name in _STREAMS
        }
        self._lock = threading.Lock()
        self._closed = False

    # -- in a child -------------------------------------------------------

    def write(self, name: str, text: str, tag: str) -> None:
        """Send stream text to the kernel (in a forked child; blocks while
        the pipe is full)."""
        for frame in encode_frames(name, text, tag):
            view = memoryview(frame)
            while view:
                written = os.write(self.write_fd, view)
                view = view[written:]

    # -- in the kernel ------------------------------------------------------

    def drain(self) -> None:
        """Hand over every complete frame written so far (any thread)."""
        with self._lock:
            if self._closed:
                return
            for data in available_chunks(self.read_fd):
                self._pending += data
            self._pending = self._deliver(self._pending)

    def _deliver(self, data: bytes) -> bytes:
        """Publish the complete frames at the start of ``data``; return the rest."""
        size = _HEADER.size
        offset = 0
        while len(data) - offset >= size:
            stream, tag_length, text_length = _HEADER.unpack_from(data, offset)
            end = offset + size + tag_length + text_length
            if end > len(data):
                break
            tag = data[offset + size : offset + size + tag_length].decode("utf-8", "replace")
            name = _STREAMS[stream] if stream < len(_STREAMS) else "stderr"
            text = self._decoders[name].decode(data[offset + size + tag_length : end])
            offset = end
            if text:
                try:
                    self.on_output(name, text, tag)
                except Exception:
                    log.exception("output of a forked child could not be published")
        return data[offset:]

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self.read_fd)
                os.close(self.write_fd)
