"""``get_ipython().kernel``: the kernel object libraries written for ipykernel reach for.

What they use of ipykernel's ``Kernel`` is here under the same names:
``shell``, ``session`` and ``iopub_socket`` (to publish their own messages),
``get_parent``/``set_parent``, ``comm_manager``, ``execution_count``,
``language_info``, ``log``, ``send_response``. The shell's
``set_thread_parent``/``reset_thread_parent`` come from :class:`ThreadParents`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextvars import Token
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..channels import current_request
from ..wire import PROTOCOL_VERSION, Message
from .info import kernel_info
from .kernel_session import IOPubSocket, KernelSession, as_message

if TYPE_CHECKING:
    from ..channels import RequestDispatcher
    from .shell import ZMQInteractiveShell

log = logging.getLogger("akernel")


def message_dict(msg: Message | None) -> dict[str, Any]:
    """A request as the message dict ipykernel's API returns (empty if none)."""
    if msg is None:
        return {}
    return {
        "header": msg.header,
        "parent_header": msg.parent_header,
        "metadata": msg.metadata,
        "content": msg.content,
        "msg_id": msg.msg_id,
        "msg_type": msg.msg_type,
    }


class KernelHandle:
    """``get_ipython().kernel``: what libraries written for ipykernel look up.

    ipywidgets' ``Output`` widget, for one, needs a kernel object and the
    request being handled to capture output into the widget; JupyterLab's
    variable inspector needs ``kernel.shell``.
    """

    implementation = "akernel"
    implementation_version = __version__
    protocol_version = PROTOCOL_VERSION
    language = "python"

    # The kernel's task group for work that outlives a cell (set by the kernel).
    task_group: Any = None
    # The kernel's subshells (execution/subshells.py; set by the kernel), for %subshell.
    subshells: Any = None

    def __init__(self, shell: ZMQInteractiveShell) -> None:
        self._shell = shell
        self._control_parent: dict[str, Any] = {}
        self._session: KernelSession | None = None
        self._iopub_socket: IOPubSocket | None = None

    @property
    def shell(self) -> ZMQInteractiveShell:
        """The IPython shell that runs the cells."""
        return self._shell

    @property
    def log(self) -> logging.Logger:
        """The kernel's logger: its records go to the kernel's stderr, not to cells."""
        return log

    @property
    def iopub_socket(self) -> IOPubSocket:
        """Where ``session.send`` publishes: IOPub, through the kernel's publisher."""
        if self._iopub_socket is None:
            self._iopub_socket = IOPubSocket(self._iopub())
        return self._iopub_socket

    @property
    def session(self) -> KernelSession:
        """Builds and sends messages: ``session.send(kernel.iopub_socket, ...)``."""
        if self._session is None:
            self._session = KernelSession(self._iopub(), self.iopub_socket)
        return self._session

    def _iopub(self) -> Any:
        router = self._shell.router
        if router is None:
            raise RuntimeError("this shell is not connected to a running kernel")
        return router.iopub

    def _topic(self, topic: str) -> bytes:
        """The ZeroMQ topic of IOPub messages of this kind (as ipykernel names them)."""
        return f"kernel.{self.session.session}.{topic}".encode()

    @property
    def execution_count(self) -> int:
        """The number of the cell running, or of the last cell run between cells.

        (IPython's ``shell.execution_count`` is already the next cell's.)
        """
        return self._shell.execution_count - 1

    @property
    def language_info(self) -> dict[str, Any]:
        return dict(kernel_info()["language_info"])

    @property
    def banner(self) -> str:
        return kernel_info()["banner"]

    @property
    def help_links(self) -> list[dict[str, str]]:
        return list(kernel_info()["help_links"])

    @property
    def comm_manager(self) -> Any:
        import comm

        return comm.get_comm_manager()

    # -- parents ----------------------------------------------------------------

    def get_parent(self, channel: str | None = None) -> dict[str, Any]:
        """The request being handled on ``channel`` ("shell" or "control"; by
        default the shell's), as a message dict; empty if there is none.

        For the control channel it is the last control request the kernel
        received.
        """
        if channel is None:
            in_control = threading.current_thread().name == "akernel-control"
            channel = "control" if in_control else "shell"
        if channel == "control":
            return self._control_parent
        if channel != "shell":
            raise ValueError(f"channel must be 'shell' or 'control', not {channel!r}")
        return self._shell.get_parent()

    def set_parent(self, ident: Any, parent: dict[str, Any], channel: str = "shell") -> None:
        """Make ``parent`` the request being handled on ``channel``.

        On the shell channel, output of the code running in this context
        (this thread, this task) is published with ``parent`` as its parent
        from now on, until the request being handled ends.
        """
        if channel == "control":
            self._control_parent = dict(parent or {})
            return
        router = self._shell.router
        last = router.last_execute if router is not None else None
        message = as_message(parent, (last,))
        if message is not None and ident and message.identities != list(ident):
            message = Message(
                message.header,
                message.parent_header,
                message.metadata,
                message.content,
                identities=[bytes(i) for i in ident],
            )
        current_request.set(message)

    def send_response(
        self,
        stream: Any,
        msg_or_type: dict[str, Any] | str,
        content: dict[str, Any] | None = None,
        ident: Any = None,
        buffers: list[Any] | None = None,
        track: bool = False,
        header: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        channel: str = "shell",
    ) -> None:
        """``session.send`` with the request being handled on ``channel`` as parent."""
        self.session.send(
            stream,
            msg_or_type,
            content,
            self.get_parent(channel),
            ident,
            buffers,
            track,
            header,
            metadata,
        )

    def follow_control_requests(self, dispatcher: RequestDispatcher) -> None:
        """Record each request ``dispatcher`` (the control channel's) handles
        as the control parent, before its handler runs (call after the
        handlers are installed)."""
        for msg_type, handler in list(dispatcher.handlers.items()):
            dispatcher.handlers[msg_type] = self._recording(handler)

    def _recording(self, handler: Callable[[Message], Any]) -> Callable[[Message], Any]:
        def record_then_handle(msg: Message) -> Any:
            self._control_parent = message_dict(msg)
            return handler(msg)

        return record_then_handle


class ThreadParents:
    """``set_thread_parent``/``reset_thread_parent`` of ipykernel's shell.

    Output goes to the request of the context it is written in: setting the
    parent for "this thread" is setting it for the current context, which a
    thread (or task) started from here copies.
    """

    def set_thread_parent(self, parent: dict[str, Any]) -> Token:
        """Publish the output of this thread (context) with ``parent`` as its
        parent; returns the token for :meth:`reset_thread_parent`."""
        router = getattr(self, "router", None)
        last = router.last_execute if router is not None else None
        return current_request.set(as_message(parent, (last,)))

    def reset_thread_parent(self, token: Token) -> None:
        """Undo the :meth:`set_thread_parent` call that returned ``token``."""
        current_request.reset(token)
