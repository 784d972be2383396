"""The control channel on its own thread and event loop.

Control requests (interrupt, shutdown, kernel_info) must be answered while the
main thread is busy in user code, so they are served by a second event loop
(same backend as the main one) on a thread that owns the control socket.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import TypeVar

import anyio

from ..transport import Mailbox
from .dispatch import RequestDispatcher

log = logging.getLogger("akernel.control")

T = TypeVar("T")


class ControlThread:
    """Runs a :class:`RequestDispatcher` for the control socket on a thread."""

    def __init__(
        self,
        dispatcher: RequestDispatcher,
        backend: str = "asyncio",
        *,
        duties: tuple[Callable[[], Awaitable[None]], ...] = (),
        on_failure: Callable[[], None] = lambda: None,
    ) -> None:
        """``duties`` are extra tasks for this loop, which stays responsive
        while user code blocks the main thread (e.g. watching the parent).
        ``on_failure`` is called (on this thread) if the loop dies of an
        error: a kernel without its control channel must not go on silently."""
        self.on_failure = on_failure
        self.dispatcher = dispatcher
        self.backend = backend
        self.duties = duties
        self.mailbox = Mailbox()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="akernel-control", daemon=True)
        self._cancel_scope: anyio.CancelScope | None = None

    def start(self) -> None:
        self._thread.start()
        self._started.wait(10)

    def _run(self) -> None:
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            anyio.run(self._main, backend=self.backend)
        except Exception:
            log.critical("the control channel failed: stopping the kernel", exc_info=True)
            self.on_failure()

    async def _main(self) -> None:
        async with anyio.create_task_group() as tg:
            self._cancel_scope = tg.cancel_scope
            tg.start_soon(self.mailbox.serve)
            for duty in self.duties:
                tg.start_soon(duty)
            self._started.set()
            await self.dispatcher.serve()

    def call(self, function: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``function`` on the control thread (which owns the control
        socket) and return its result; from another thread."""
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(function())
            except BaseException as error:
                future.set_exception(error)

        self.mailbox.post(run)
        return future.result(timeout)

    def stop(self) -> None:
        """Cancel the control loop and wait for the thread to end."""
        if self._cancel_scope is not None:
            self.mailbox.post(self._cancel_scope.cancel)
        self._thread.join(timeout=5)
        self.mailbox.close()
