"""Connection files and the five bound kernel sockets."""

from __future__ import annotations

import errno
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import zmq

from ..wire import digest_for

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")


class ConnectionError_(Exception):
    """The connection file is unusable or a socket cannot be bound."""


@dataclass
class ConnectionInfo:
    """The contents of a kernel connection file."""

    transport: str = "tcp"
    ip: str = "127.0.0.1"
    shell_port: int = 0
    iopub_port: int = 0
    stdin_port: int = 0
    control_port: int = 0
    hb_port: int = 0
    key: str = ""
    signature_scheme: str = "hmac-sha256"
    kernel_name: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ConnectionInfo:
        """Read and validate a connection file; errors name the problem."""
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            raise ConnectionError_(f"connection file not found: {path}") from None
        except OSError as e:
            raise ConnectionError_(f"cannot read connection file {path}: {e.strerror}") from None
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ConnectionError_(f"connection file {path} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ConnectionError_(f"connection file {path} does not hold a JSON object")
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "connection info") -> ConnectionInfo:
        info = cls()
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        for name, value in data.items():
            if name not in known:
                info.extra[name] = value
                continue
            expected = type(getattr(info, name))
            if expected is int and (not isinstance(value, int) or isinstance(value, bool)):
                raise ConnectionError_(f"{source}: {name} must be an integer, got {value!r}")
            if expected is str and not isinstance(value, str):
                raise ConnectionError_(f"{source}: {name} must be a string, got {value!r}")
            setattr(info, name, value)
        if info.transport not in ("tcp", "ipc"):
            raise ConnectionError_(f"{source}: unknown transport {info.transport!r} (tcp or ipc)")
        for channel in CHANNELS:
            port = getattr(info, f"{channel}_port")
            if not 0 <= port <= 65535:
                raise ConnectionError_(f"{source}: {channel}_port {port} is out of range")
        if info.signature_scheme:
            try:
                digest_for(info.signature_scheme)
            except ValueError as e:
                raise ConnectionError_(f"{source}: signature_scheme: {e}") from None
        return info

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(data.pop("extra"))
        return data

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the file readable by its owner only (mode 0600)."""
        path = Path(path)
        if not path.parent.is_dir():
            raise ConnectionError_(f"directory for connection file does not exist: {path.parent}")
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.to_dict(), f, indent=1)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    def address(self, channel: str) -> str:
        port = getattr(self, f"{channel}_port")
        if self.transport == "tcp":
            return f"tcp://{self.ip}:{port}"
        return f"ipc://{self.ip}-{port}"


@dataclass
class KernelSockets:
    """The five sockets a kernel binds, and the context that owns them."""

    context: zmq.Context
    shell: zmq.Socket
    iopub: zmq.Socket
    stdin: zmq.Socket
    control: zmq.Socket
    hb: zmq.Socket
    ipc_paths: list[str] = field(default_factory=list)
    # An engine's heartbeat echoes pings from ``hb`` (SUB) to this (DEALER).
    hb_backend: zmq.Socket | None = None

    def close(self) -> None:
        """Close the sockets and remove the ipc socket files they bound."""
        for sock in (self.shell, self.iopub, self.stdin, self.control, self.hb, self.hb_backend):
            if sock is not None and not sock.closed:
                sock.close(linger=0)
        for path in self.ipc_paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


IOPUB_HWM = 1000
IOPUB_SEND_TIMEOUT_MS = 10_000

_SOCKET_TYPES = {
    "shell": zmq.ROUTER,
    "iopub": zmq.XPUB,
    "stdin": zmq.ROUTER,
    "control": zmq.ROUTER,
    "hb": zmq.ROUTER,
}


def _bind(sock: zmq.Socket, info: ConnectionInfo, channel: str) -> None:
    port = getattr(info, f"{channel}_port")
    try:
        if info.transport == "tcp":
            if port == 0:
                port = sock.bind_to_random_port(f"tcp://{info.ip}")
            else:
                sock.bind(f"tcp://{info.ip}:{port}")
        else:
            if port == 0:
                port = 1
                while os.path.exists(f"{info.ip}-{port}"):
                    port += 1
            sock.bind(f"ipc://{info.ip}-{port}")
    except zmq.ZMQError as e:
        where = info.address(channel) if port else f"{info.transport}://{info.ip}"
        if e.errno == errno.EADDRINUSE:
            raise ConnectionError_(f"{channel} port {port} is already in use ({where})") from None
        raise ConnectionError_(f"cannot bind {channel} socket to {where}: {e}") from None
    setattr(info, f"{channel}_port", port)


def bind_kernel_sockets(info: ConnectionInfo, context: zmq.Context | None = None) -> KernelSockets:
    """Create and bind the kernel's sockets; ports 0 in ``info`` are filled in."""
    context = context or zmq.Context()
    created: dict[str, zmq.Socket] = {}
    try:
        for channel in CHANNELS:
            sock = context.socket(_SOCKET_TYPES[channel])
            sock.linger = 1000
            created[channel] = sock
            if channel == "iopub":
                # Tell us about every subscription, so each new subscriber gets
                # its own iopub_welcome.
                sock.setsockopt(zmq.XPUB_VERBOSE, 1)
                # Back-pressure instead of loss or unbounded memory: when a
                # subscriber is IOPUB_HWM messages behind, senders wait (output
                # batches are at most 64 KiB). A subscriber that stays stuck
                # for IOPUB_SEND_TIMEOUT_MS costs that message, not a hang.
                sock.setsockopt(zmq.XPUB_NODROP, 1)
                sock.sndhwm = IOPUB_HWM
                sock.sndtimeo = IOPUB_SEND_TIMEOUT_MS
            if channel in ("shell", "control", "stdin"):
                sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
            _bind(sock, info, channel)
    except BaseException:
        for sock in created.values():
            sock.close(linger=0)
        raise
    ipc_paths = (
        [f"{info.ip}-{getattr(info, f'{channel}_port')}" for channel in CHANNELS]
        if info.transport == "ipc"
        else []
    )
    return KernelSockets(context=context, ipc_paths=ipc_paths, **created)
