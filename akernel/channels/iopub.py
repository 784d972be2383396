"""The IOPub publisher: one ordered stream of messages, fed from any thread.

Any thread publishes by sending on the XPUB socket itself, under a lock: the
hot path (busy, execute_input, results, idle) costs no thread hand-off and no
GIL ping-pong. Stream output is buffered per (stream, parent) and sent

* before any other message is published (so it is never reordered with what
  follows it),
* when the next write would grow it past ``max_batch_chars`` (by the
  writing thread; a longer write is sent in pieces of that size),
* ``flush_interval`` seconds after its first write (by the flusher thread),
  so a slow cell's prints still show up live.

Sends wait while a subscriber's queue is full, but never for long for one that
has stopped reading: see :mod:`.iopub_flow` for the policy.

In a forked child the publisher is inert: it never touches the socket (the
parent's) nor waits for locks the parent's threads held at the fork. What
children print reaches the parent through :attr:`IOPubPublisher.children`
(see :mod:`.forked`), which the flusher thread reads.

The flusher thread also watches the socket for new subscriptions and answers
each with ``iopub_welcome`` (JEP 65). ZeroMQ's socket FD is edge-triggered, so
after every send under the lock we check ``zmq.EVENTS`` for subscriptions a
send may have consumed the edge of.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from ..transport.frames import has_input
from ..wire import Message, Session
from .forked import ChildOutputPipe, at_fork
from .iopub_flow import StallAwareSender

log = logging.getLogger("akernel.iopub")

_MAX_FAILURES_IN_A_ROW = 10
# How long a publisher that must not wait (control) tries for the lock before
# handing its message to the flusher thread.
_HAND_OVER_AFTER = 0.02


class _StreamBatch:
    __slots__ = ("deadline", "name", "parent", "parts", "size", "started")

    def __init__(self, name: str, parent: Message | None, text: str, interval: float) -> None:
        self.name = name
        self.parent = parent
        self.parts = [text]
        self.size = len(text)
        self.started = time.monotonic()
        self.deadline = self.started + interval


class IOPubPublisher:
    """Publishes IOPub messages in the order they are handed in."""

    def __init__(
        self,
        socket: zmq.Socket,
        session: Session,
        *,
        topic_prefix: bytes = b"kernel",
        flush_interval: float = 0.05,
        max_batch_chars: int = 1 << 16,
        stall_timeout: float = 2.0,
    ) -> None:
        """``stall_timeout``: seconds a subscriber whose queue is full may
        hold up every send before it is left behind (see :mod:`.iopub_flow`)."""
        self.socket = socket
        self._sender = StallAwareSender(socket, stall_timeout)
        self.session = session
        self.flush_interval = flush_interval
        self.max_batch_chars = max_batch_chars
        self._topic_prefix = topic_prefix + b"." + session.session_id.encode() + b"."
        self._lock = threading.Lock()
        self._batch: _StreamBatch | None = None
        self._socket_fd = socket.getsockopt(zmq.FD)
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        self._stopping = False
        self._closed = False
        self._readers: dict[int, Callable[[], None]] = {}
        # Messages whose publisher would not wait for the lock: the flusher sends them.
        self._handed_over: deque[list[Any]] = deque()
        # Called (on the flusher thread) if it cannot go on: output would be lost.
        self.on_failure: Callable[[], None] = lambda: None
        self._thread = threading.Thread(target=self._run, name="akernel-iopub", daemon=True)
        # Output of forked children; its owner sets ``children.on_output``.
        self.children = ChildOutputPipe(lambda name, text, tag: self.write_stream(name, text, None))
        # Called before each fork (in the forking thread) and in each forked
        # child, after this publisher has made itself inert there.
        self.before_fork: list[Callable[[], None]] = []
        self.in_forked_child: list[Callable[[], None]] = []
        self._remove_fork_hooks: Callable[[], None] = lambda: None
        # Whether this process has forked since the kernel started: only then can
        # a child's output be waiting in the pipe (see publish).
        self._has_forked = False

    # -- any thread ------------------------------------------------------

    def publish(
        self,
        msg_type: str,
        content: dict[str, Any],
        parent: Message | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        buffers: list[Any] | None = None,
        wait: bool = True,
    ) -> None:
        """Send one message, after all output published before it.

        Sends wait while a client's queue is full. With ``wait`` false (the
        control thread, which must answer at once), the message is handed
        to the flusher thread when IOPub is busy that way, and goes out
        after what is waiting.
        """
        if self._closed:
            return
        if wait and self._has_forked:
            # What a child printed before the parent went on (it waited for the
            # child, say) comes before this message, not after it.
            self.children.drain()
        frames = self.session.serialize(
            msg_type,
            content,
            parent,
            metadata=metadata,
            buffers=buffers,
            identities=(self._topic_prefix + msg_type.encode(),),
        )
        # Once one message is handed over, the next ones of that kind follow
        # it, in order.
        if (not wait and self._handed_over) or not self._lock.acquire(
            timeout=-1 if wait else _HAND_OVER_AFTER
        ):
            self._handed_over.append(frames)
            self._wake()
            return
        try:
            if self._handed_over:
                self._send_handed_over()
            if self._batch is not None:
                self._send_batch()
            self._send(frames)
        finally:
            self._lock.release()

    def bind_to_random_port(self, address: str) -> int:
        """Bind the socket to a random port of ``address`` as well (any thread)."""
        with self._lock:
            return self.socket.bind_to_random_port(address)

    def publish_status(
        self, state: str, parent: Message | None = None, *, wait: bool = True
    ) -> None:
        self.publish("status", {"execution_state": state}, parent, wait=wait)

    def write_stream(self, name: str, text: str, parent: Message | None) -> None:
        """Append ``text`` to stream ``name`` ("stdout"/"stderr") for ``parent``."""
        if not text or self._closed:
            return
        with self._lock:
            batch = self._batch
            if batch is not None:
                if (
                    batch.parent is parent
                    and batch.name == name
                    and batch.size + len(text) <= self.max_batch_chars
                ):
                    batch.parts.append(text)
                    batch.size += len(text)
                    return
                self._send_batch()
            self._batch = _StreamBatch(name, parent, text, self.flush_interval)
            if len(text) >= self.max_batch_chars:
                self._send_batch()
                return
        # A new batch: let the flusher schedule its timer.
        self._wake()

    def flush(self, within: float = 0.0) -> None:
        """Send buffered stream output now, or at the latest ``within`` seconds
        after it was first written (which bounds the message rate of code that
        flushes after every line while still showing its output at once)."""
        with self._lock:
            batch = self._batch
            if batch is None:
                return
            deadline = batch.started + within
            if deadline <= time.monotonic():
                self._send_batch()
                return
            if deadline >= batch.deadline:
                return
            batch.deadline = deadline
        self._wake()

    # -- under the lock ------------------------------------------------------

    def _send_batch(self) -> None:
        batch = self._batch
        assert batch is not None
        self._batch = None
        text = batch.parts[0] if len(batch.parts) == 1 else "".join(batch.parts)
        # Batches stay within max_batch_chars but one write may not: it goes
        # in pieces, so that a message's size, and what a client that has
        # stopped reading costs in memory, stay bounded (see .iopub_flow).
        limit = self.max_batch_chars
        for start in range(0, len(text), limit):
            try:
                frames = self.session.serialize(
                    "stream",
                    {"name": batch.name, "text": text[start : start + limit]},
                    batch.parent,
                    identities=(b"stream." + batch.name.encode(),),
                )
            except (TypeError, ValueError):
                # Whichever thread flushes pays for a bad batch: it must not die of it.
                log.exception("stream output dropped: it cannot be encoded")
                return
            self._send(frames)

    def _send(self, frames: list[Any]) -> None:
        if self._closed:
            return
        try:
            self._sender.send(frames)
            if has_input(self.socket):
                self._welcome_subscribers()
        except zmq.ZMQError as e:
            log.error("cannot publish on IOPub: %s", e)

    def _send_handed_over(self) -> None:
        while self._handed_over:
            if self._batch is not None:
                self._send_batch()
            self._send(self._handed_over.popleft())

    def _welcome_subscribers(self) -> None:
        socket = self.socket
        while True:
            try:
                event = socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if event[:1] == b"\x01":
                topic = event[1:]
                frames = self.session.serialize(
                    "iopub_welcome",
                    {"subscription": topic.decode("utf-8", "replace")},
                    identities=(topic,),
                )
                self._sender.send(frames)

    # -- the flusher thread ---------------------------------------------

    def _wake(self) -> None:
        try:
            os.write(self._wake_write, b"\0")
        except OSError:
            pass

    def add_reader(self, fd: int, on_readable: Callable[[], None]) -> None:
        """Have the flusher thread call ``on_readable`` when ``fd`` is readable.

        Only before :meth:`start`.
        """
        self._readers[fd] = on_readable

    def start(self) -> None:
        self._remove_fork_hooks = at_fork(before=self._before_fork, in_child=self._after_fork)
        self._thread.start()

    def _before_fork(self) -> None:
        self._has_forked = True
        for hook in self.before_fork:
            hook()

    def _after_fork(self) -> None:
        """In a forked child: never touch the parent's socket, and forget the
        state of the parent's threads (a lock one of them held stays held)."""
        self._closed = True
        self._stopping = True
        self._lock = threading.Lock()
        self._batch = None
        self._handed_over = deque()
        for hook in self.in_forked_child:
            hook()

    def stop(self) -> None:
        """Send what is still buffered, then end the flusher thread."""
        self._remove_fork_hooks()
        self._stopping = True
        self._wake()
        self._thread.join(timeout=10)
        self.children.drain()
        with self._lock:
            self._send_handed_over()
            if self._batch is not None:
                self._send_batch()
            self._closed = True
        os.close(self._wake_read)
        os.close(self._wake_write)
        self.children.close()

    def _run(self) -> None:
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        watched = [self._socket_fd, self._wake_read, self.children.read_fd, *self._readers]
        timeout: float | None = None
        failures = 0
        while not self._stopping:
            try:
                timeout = self._flush_when_due(watched, timeout)
                failures = 0
            except Exception:
                # Survive what can be survived; a failure that repeats at
                # once is not going away: stop the kernel rather than lose
                # output silently (or leave fds 1 and 2 undrained).
                failures += 1
                log.exception("IOPub flusher: unexpected error")
                if failures >= _MAX_FAILURES_IN_A_ROW:
                    log.critical("IOPub flusher cannot go on: stopping the kernel")
                    self.on_failure()
                    return
                timeout = 0.01 * failures

    def _flush_when_due(self, watched: list[int], timeout: float | None) -> float | None:
        """Wait until something is readable or the batch is due; handle it;
        return how long the next wait may be."""
        readers = self._readers
        readable, _, _ = select.select(watched, [], [], timeout)
        if self._wake_read in readable:
            try:
                os.read(self._wake_read, 4096)
            except BlockingIOError:
                pass
        for fd in readable:
            if fd in readers:
                readers[fd]()
        if self.children.read_fd in readable:
            self.children.drain()
        with self._lock:
            self._send_handed_over()
            if self._socket_fd in readable or has_input(self.socket):
                self._welcome_subscribers()
            batch = self._batch
            timeout = None
            if batch is not None:
                due = batch.deadline - time.monotonic()
                if due <= 0:
                    self._send_batch()
                else:
                    timeout = due
        return timeout
