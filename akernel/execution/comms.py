"""Comms through the ``comm`` package, so ipywidgets and friends find us."""

from __future__ import annotations

from typing import Any

import comm
from comm.base_comm import BaseComm, CommManager

from ..wire import Message
from .io import OutputRouter
from .output_captures import OutputCaptures


def publish_comm_msg(
    comm: BaseComm,
    msg_type: str,
    data: dict | None = None,
    metadata: dict | None = None,
    buffers: list | None = None,
    **keys: Any,
) -> bool:
    """Publish ``comm``'s message on IOPub; False when no kernel is running here."""
    router = KernelComm.router
    if router is None:
        return False
    if KernelComm.output_captures is not None:
        KernelComm.output_captures.note_published(msg_type, data)
    content = {"data": data or {}, "comm_id": comm.comm_id, **keys}
    router.publish(msg_type, content, metadata=metadata, buffers=buffers)
    return True


class KernelComm(BaseComm):
    """A comm whose messages go out on IOPub."""

    router: OutputRouter | None = None
    output_captures: OutputCaptures | None = None

    def publish_msg(
        self,
        msg_type: str,
        data: dict | None = None,
        metadata: dict | None = None,
        buffers: list | None = None,
        **keys: Any,
    ) -> None:
        publish_comm_msg(self, msg_type, data, metadata, buffers, **keys)


class KernelCommManager(CommManager):
    """The comm manager; it shows the client's comm messages to ``output_captures``."""

    def __init__(self, output_captures: OutputCaptures) -> None:
        super().__init__()
        self.output_captures = output_captures

    def comm_msg(self, stream: Any, ident: Any, msg: dict[str, Any]) -> None:
        self.output_captures.note_received(msg["content"])
        super().comm_msg(stream, ident, msg)


def install_comms(router: OutputRouter) -> KernelCommManager:
    """Make ``comm.create_comm``/``get_comm_manager`` use this kernel."""
    manager = KernelCommManager(OutputCaptures())
    KernelComm.router = router
    KernelComm.output_captures = manager.output_captures

    def create_comm(*args: Any, **kwargs: Any) -> KernelComm:
        return KernelComm(*args, **kwargs)

    comm.create_comm = create_comm
    comm.get_comm_manager = lambda: manager
    return manager


def uninstall_comms() -> None:
    """Detach comms from the kernel: after shutdown they send nothing.

    (Widgets close their comms when garbage collected, also at exit.)
    """
    KernelComm.router = None
    KernelComm.output_captures = None


def as_comm_msg(msg: Message) -> dict[str, Any]:
    """The dict form the ``comm`` package's handlers expect."""
    return {
        "header": msg.header,
        "parent_header": msg.parent_header,
        "metadata": msg.metadata,
        "content": msg.content,
        "buffers": [memoryview(b) for b in msg.buffers],
        "msg_id": msg.msg_id,
        "msg_type": msg.msg_type,
    }
