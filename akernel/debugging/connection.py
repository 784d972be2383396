"""The kernel's DAP connection to pydevd: requests out in order, responses matched back.

Runs on the control thread's event loop. Requests are queued synchronously (so
they reach pydevd in the order the frontend sent them, whatever order the tasks
waiting for their responses run in) and written by one task; one task reads,
hands each response to whoever waits for it (matched by ``request_seq``) and
each event to ``on_event``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from .dap import DapFramer, DapProtocolError, SequenceMap, encode, error_response
from .server import DebugServer

log = logging.getLogger("akernel.debugging")

Event = dict[str, Any]


class _Waiter:
    """One request waiting for its response."""

    __slots__ = ("done", "request", "response")

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        self.done = anyio.Event()
        self.response: dict[str, Any] | None = None

    def resolve(self, response: dict[str, Any]) -> None:
        if self.response is None:
            self.response = response
            self.done.set()

    async def wait(self) -> dict[str, Any]:
        await self.done.wait()
        assert self.response is not None
        return self.response


class PydevdConnection:
    """One TCP connection to pydevd, from connect to close.

    ``on_event`` is called (in this loop) for every DAP event pydevd sends.
    """

    def __init__(self, on_event: Callable[[Event], None]) -> None:
        self.on_event = on_event
        self.seqs = SequenceMap()
        self._waiting: dict[int, _Waiter] = {}
        self._outbox_in, self._outbox_out = anyio.create_memory_object_stream[dict[str, Any]](
            math.inf
        )
        self._scope: anyio.CancelScope | None = None
        self.closed = False
        # Set once the session has forgotten this connection's state.
        self.ended = False

    # -- requests (synchronous part: queued in call order) ----------------------

    def forward(self, request: dict[str, Any]) -> Awaitable[dict[str, Any]]:
        """Send a frontend's request; the awaitable gives pydevd's response,
        renumbered back to the frontend's ``seq``."""
        if self.closed:
            return answered(error_response(request, "the debugger is not connected"))
        renumbered = self.seqs.forward(request)
        return self._enqueue(renumbered, request)

    def call(self, command: str, arguments: dict[str, Any] | None = None) -> Awaitable[Event]:
        """Send a request of the kernel's own; the awaitable gives the response."""
        request = {"type": "request", "seq": self.seqs.next_seq(), "command": command}
        if arguments is not None:
            request["arguments"] = arguments
        if self.closed:
            return answered(error_response(request, "the debugger is not connected"))
        return self._enqueue(request, request)

    def _enqueue(self, request: dict[str, Any], original: dict[str, Any]) -> Awaitable[Event]:
        waiter = _Waiter(original)
        self._waiting[request["seq"]] = waiter
        self._outbox_in.send_nowait(request)
        return waiter.wait()

    # -- serving -------------------------------------------------------------------

    async def run(self, server: DebugServer) -> None:
        """Connect, authorize, and serve until :meth:`close` or pydevd hangs up."""
        try:
            stream = await anyio.connect_tcp(server.host, server.port)
        except OSError as error:
            self._close(f"cannot connect to the debugger: {error}")
            return
        try:
            async with stream, anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                # Before anything else: pydevd refuses every request until then.
                await stream.send(
                    encode(
                        {
                            "type": "request",
                            "seq": self.seqs.next_seq(),
                            "command": "pydevdAuthorize",
                            "arguments": {"debugServerAccessToken": server.access_token},
                        }
                    )
                )
                tg.start_soon(self._write, stream)
                await self._read(stream)
                tg.cancel_scope.cancel()
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as error:
            log.warning("the debugger connection failed: %s", error)
        finally:
            self._close("the debugger connection closed")

    def fail(self, reason: str) -> None:
        """Give up before connecting: every request gets an error response saying why."""
        self._close(reason)

    def close(self) -> None:
        """End the connection (any pending request gets an error response)."""
        if self._scope is not None:
            self._scope.cancel()
        self._close("the debugger connection closed")

    def _close(self, reason: str) -> None:
        self.closed = True
        waiting, self._waiting = self._waiting, {}
        for waiter in waiting.values():
            waiter.resolve(error_response(waiter.request, reason))
        while True:
            try:
                self._outbox_out.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break

    async def _write(self, stream: anyio.abc.ByteStream) -> None:
        async for request in self._outbox_out:
            await stream.send(encode(request))

    async def _read(self, stream: anyio.abc.ByteStream) -> None:
        framer = DapFramer()
        while True:
            try:
                data = await stream.receive()
            except anyio.EndOfStream:
                return
            try:
                messages = framer.feed(data)
            except DapProtocolError as error:
                log.error("the debugger sent a malformed message: %s", error)
                for message in error.messages:
                    self._handle(message)
                return
            for message in messages:
                self._handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "event":
            try:
                self.on_event(message)
            except Exception:
                log.exception("cannot handle the debugger's %r event", message.get("event"))
        elif kind == "response":
            kernel_seq = message.get("request_seq")
            resolved = self.seqs.resolve(message)
            waiter = self._waiting.pop(kernel_seq, None)  # type: ignore[arg-type]
            if waiter is None:
                log.debug("a debugger response nobody waits for: %r", message.get("command"))
                return
            waiter.resolve(resolved[0] if resolved is not None else message)
        else:
            log.warning("ignored a debugger message of type %r", kind)


async def _ready_value(value: dict[str, Any]) -> dict[str, Any]:
    return value


def answered(value: dict[str, Any]) -> Awaitable[dict[str, Any]]:
    """An awaitable of a response that is already known."""
    return _ready_value(value)
