"""Hand callables from any thread to an event loop, without blocking.

anyio's ``from_thread`` helpers wait for the loop to run the call, which
deadlocks when that loop is blocked in user code. A ``Mailbox`` only queues
the call and writes one byte to a pipe; the owning loop runs queued calls
when it next gets control. This works on asyncio and trio alike and is safe
to post to from signal handlers.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable

import anyio

log = logging.getLogger("akernel.mailbox")


class Mailbox:
    """A queue of callables run by :meth:`serve` in the owning event loop."""

    def __init__(self) -> None:
        self._calls: deque[Callable[[], object]] = deque()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._closed = False

    def post(self, call: Callable[[], object]) -> None:
        """Queue ``call`` to run in the owning loop (from any thread)."""
        if self._closed:
            return
        self._calls.append(call)
        try:
            os.write(self._write_fd, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full or closed: a wake-up is already pending

    async def serve(self) -> None:
        """Run posted calls until cancelled."""
        while True:
            await anyio.wait_readable(self._read_fd)
            try:
                os.read(self._read_fd, 4096)
            except BlockingIOError:
                pass
            while self._calls:
                call = self._calls.popleft()
                try:
                    call()
                except Exception:
                    # One failing call must not stop the loop that runs them all.
                    log.exception("a call posted to the event loop failed")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._read_fd)
            os.close(self._write_fd)
