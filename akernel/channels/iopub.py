"""The IOPub publisher: one ordered stream of messages, fed from any thread.

A dedicated thread owns the XPUB socket. Other threads hand it messages in
order through a locked deque and wake it through a pipe (once per batch of
hand-offs, not per message). Stream output is coalesced in the same deque:
consecutive writes to one stream for one parent extend the last queued batch,
which is sent when it is no longer the newest item (so it can never be
reordered with what follows it), when it grows past ``max_batch_chars``, or
``flush_interval`` seconds after its first write (so a slow cell's prints
still show up live).

The same thread answers new subscriptions with ``iopub_welcome`` (JEP 65).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from typing import Any

import zmq

from ..wire import Message, Session

log = logging.getLogger("akernel.iopub")


class _StreamBatch:
    __slots__ = ("name", "parent", "parts", "size", "started")

    def __init__(self, name: str, parent: Message | None, text: str) -> None:
        self.name = name
        self.parent = parent
        self.parts = [text]
        self.size = len(text)
        self.started = time.monotonic()


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
    ) -> None:
        self.socket = socket
        self.session = session
        self.flush_interval = flush_interval
        self.max_batch_chars = max_batch_chars
        self._topic_prefix = topic_prefix + b"." + session.session_id.encode() + b"."
        self._queue: deque[Any] = deque()
        self._lock = threading.Lock()
        self._wake_pending = False
        self._drained = threading.Condition(self._lock)
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="akernel-iopub", daemon=True)

    # -- any thread ------------------------------------------------------

    def publish(
        self,
        msg_type: str,
        content: dict[str, Any],
        parent: Message | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        buffers: list[Any] | None = None,
    ) -> None:
        """Queue one message; it is sent after everything queued before it."""
        frames = self.session.serialize(
            msg_type,
            content,
            parent,
            metadata=metadata,
            buffers=buffers,
            identities=(self._topic_prefix + msg_type.encode(),),
        )
        with self._lock:
            self._queue.append(frames)
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            self._wake()

    def publish_status(self, state: str, parent: Message | None = None) -> None:
        self.publish("status", {"execution_state": state}, parent)

    def write_stream(self, name: str, text: str, parent: Message | None) -> None:
        """Append ``text`` to stream ``name`` ("stdout"/"stderr") for ``parent``."""
        if not text:
            return
        with self._lock:
            queue = self._queue
            last = queue[-1] if queue else None
            if type(last) is _StreamBatch and last.name == name and last.parent is parent:
                last.parts.append(text)
                last.size += len(text)
                if last.size < self.max_batch_chars or self._wake_pending:
                    return
            else:
                queue.append(_StreamBatch(name, parent, text))
            if self._wake_pending:
                return
            self._wake_pending = True
        self._wake()

    def flush(self, timeout: float = 5.0) -> bool:
        """Send pending stream output now and wait until the queue is sent."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if not self._thread.is_alive():
                return not self._queue
            self._flush_requested = True
            self._wake_pending = True
        self._wake()
        with self._lock:
            while self._queue:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._drained.wait(remaining):
                    return False
        return True

    _flush_requested = False

    def _wake(self) -> None:
        try:
            os.write(self._write_fd, b"\0")
        except OSError:
            pass

    # -- the publisher thread ---------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Send everything still queued, then end the thread."""
        self._stopping = True
        self._wake()
        self._thread.join(timeout=10)
        os.close(self._read_fd)
        os.close(self._write_fd)

    def _next_frames(self, now: float) -> tuple[list[Any] | None, float | None]:
        """Pop the next sendable item; or return how long to wait for it."""
        with self._lock:
            if not self._queue:
                self._flush_requested = False
                self._drained.notify_all()
                return None, None
            item = self._queue[0]
            if type(item) is _StreamBatch:
                if (
                    len(self._queue) == 1
                    and item.size < self.max_batch_chars
                    and not self._flush_requested
                    and not self._stopping
                ):
                    wait = item.started + self.flush_interval - now
                    if wait > 0:
                        return None, wait
                self._queue.popleft()
            else:
                return self._queue.popleft(), None
        text = "".join(item.parts)
        frames = self.session.serialize(
            "stream",
            {"name": item.name, "text": text},
            item.parent,
            identities=(b"stream." + item.name.encode(),),
        )
        return frames, None

    def _run(self) -> None:
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self._read_fd, zmq.POLLIN)
        send = self.socket.send_multipart
        timeout: float | None = None
        while True:
            with self._lock:
                self._wake_pending = False
            while True:
                frames, timeout = self._next_frames(time.monotonic())
                if frames is None:
                    break
                try:
                    send(frames, copy=False)
                except zmq.ZMQError as e:
                    log.error("cannot publish on IOPub: %s", e)
            if self._stopping and timeout is None:
                with self._lock:
                    if not self._queue:
                        return
                continue
            events = dict(poller.poll(None if timeout is None else max(timeout * 1000, 1)))
            if self._read_fd in events:
                try:
                    os.read(self._read_fd, 4096)
                except BlockingIOError:
                    pass
            if self.socket in events:
                self._handle_subscriptions()

    def _handle_subscriptions(self) -> None:
        while True:
            try:
                event = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if event[:1] == b"\x01":
                topic = event[1:]
                frames = self.session.serialize(
                    "iopub_welcome",
                    {"subscription": topic.decode("utf-8", "replace")},
                    identities=(topic,),
                )
                self.socket.send_multipart(frames)
