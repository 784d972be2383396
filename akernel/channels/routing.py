"""Shell requests routed by subshell: one reader of the shell socket, one inbox per shell.

Once a kernel subshell exists, the :class:`ShellRouter` owns the shell socket, on
the control thread's loop (which never runs user code). It reads each request,
looks at its header's ``subshell_id`` (without verifying it: the shell that
gets it verifies the signature, as before), and hands the frames to that
shell's :class:`Inbox`: the parent shell's (no id) or a subshell's. Replies
come back to the router, which alone sends on the socket. A request for a
subshell that does not exist gets an error reply from the router itself.

Each shell handles its requests in order; shells run concurrently, each in its
own thread and event loop.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import orjson

from ..transport import AsyncSocket
from ..transport.handover import HandoverSocket
from ..wire import DELIMITER, Message, Session, WireError
from .iopub import IOPubPublisher

log = logging.getLogger("akernel.subshells")

Post = Callable[[Callable[[], object]], None]


class Inbox:
    """The requests routed to one shell, read in that shell's loop (a Relay).

    ``post`` runs a call in the shell's loop (its mailbox); ``send`` sends
    frames on the shell socket through the router (any thread).
    """

    def __init__(self, post: Post, send: Callable[[list[Any]], None]) -> None:
        self._post = post
        self._send = send
        self._frames: deque[list[Any]] = deque()
        self._arrived: anyio.Event | None = None

    def deliver(self, frames: list[Any]) -> None:
        """From the router's thread: queue ``frames`` for this shell.

        Queued at once (a deque is safe across threads), so that the shell
        sees them as waiting (e.g. to abort them) before its loop wakes up.
        """
        self._frames.append(frames)
        self._post(self._wake)

    def _wake(self) -> None:
        if self._arrived is not None:
            self._arrived.set()

    async def recv_multipart(self) -> list[Any]:
        while not self._frames:
            self._arrived = anyio.Event()
            try:
                await self._arrived.wait()
            finally:
                self._arrived = None
        return self._frames.popleft()

    def recv_multipart_nowait(self) -> list[Any] | None:
        return self._frames.popleft() if self._frames else None

    def send_multipart(self, frames: list[Any], copy: bool = True) -> None:
        self._send(frames)


def subshell_of(frames: list[Any]) -> str | None:
    """The ``subshell_id`` in a request's header, unverified (None: the parent shell)."""
    try:
        start = frames.index(DELIMITER)
        header = orjson.loads(bytes(frames[start + 2]))
    except (ValueError, IndexError, orjson.JSONDecodeError, TypeError):
        return None  # the parent shell's dispatcher drops it, saying why
    subshell = header.get("subshell_id") if isinstance(header, dict) else None
    return subshell if isinstance(subshell, str) else None


class ShellRouter:
    """Owns the shell socket once subshells exist (on the control thread's loop)."""

    def __init__(
        self,
        shell_socket: HandoverSocket,
        session: Session,
        iopub: IOPubPublisher,
        post: Post,
    ) -> None:
        """``post`` runs a call in the router's loop (the control thread's mailbox)."""
        self.shell_socket = shell_socket
        self.session = session
        self.iopub = iopub
        self.post = post
        self.inboxes: dict[str, Inbox] = {}
        self._socket: AsyncSocket | None = None
        self._started: anyio.Event | None = None

    @property
    def active(self) -> bool:
        return self._socket is not None

    def send(self, frames: list[Any]) -> None:
        """Send on the shell socket, from any thread (in order, per thread)."""
        self.post(lambda: self._send_now(frames))

    def _send_now(self, frames: list[Any]) -> None:
        if self._socket is not None:
            self._socket.send_multipart(frames)

    def take_over(self, parent_inbox: Inbox, wake_parent: Post) -> None:
        """In the router's loop: own the shell socket from now on; the parent
        shell's requests go to ``parent_inbox``."""
        if self._socket is not None:
            return
        self.shell_socket.hand_over(parent_inbox, wake_parent)
        self.parent = parent_inbox
        self._socket = AsyncSocket(self.shell_socket.socket)
        if self._started is not None:
            self._started.set()

    async def serve(self) -> None:
        """Route requests once :meth:`take_over` has happened; until cancelled."""
        if self._socket is None:
            self._started = anyio.Event()
            await self._started.wait()
        assert self._socket is not None
        while True:
            frames = await self._socket.recv_multipart()
            subshell = subshell_of(frames)
            if subshell is None:
                self.parent.deliver(frames)
                continue
            inbox = self.inboxes.get(subshell)
            if inbox is not None:
                inbox.deliver(frames)
            else:
                self._no_such_subshell(frames, subshell)

    def _no_such_subshell(self, frames: list[Any], subshell: str) -> None:
        try:
            msg = self.session.deserialize(frames)
        except WireError as error:
            log.warning("shell: dropped a message: %s", error)
            return
        except Exception:
            log.exception("shell: dropped a message that could not be decoded")
            return
        self.iopub.publish_status("busy", msg, wait=False)
        if msg.msg_type.endswith("_request"):
            self._reply_error(msg, subshell)
        else:
            log.warning("shell: %s for unknown subshell %r dropped", msg.msg_type, subshell)
        self.iopub.publish_status("idle", msg, wait=False)

    def _reply_error(self, msg: Message, subshell: str) -> None:
        reply_type, content = no_such_subshell(msg, subshell)
        frames = self.session.serialize(reply_type, content, msg, identities=msg.identities)
        self._send_now(frames)


def no_such_subshell(msg: Message, subshell: Any) -> tuple[str, dict[str, Any]]:
    """The error reply (type, content) to a request for a subshell that does not exist."""
    return msg.msg_type[: -len("_request")] + "_reply", {
        "status": "error",
        "ename": "SubshellNotFound",
        "evalue": f"no subshell with id {subshell!r} (it was never created, or deleted)",
        "traceback": [],
    }
