"""The transport layer: pyzmq sockets driven from anyio, connection files, heartbeat."""

from .connection import ConnectionError_, ConnectionInfo, KernelSockets, bind_kernel_sockets
from .heartbeat import Heartbeat
from .mailbox import Mailbox
from .zmqsocket import AsyncSocket

__all__ = [
    "AsyncSocket",
    "ConnectionError_",
    "ConnectionInfo",
    "Heartbeat",
    "KernelSockets",
    "Mailbox",
    "bind_kernel_sockets",
]
