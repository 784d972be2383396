"""Connection files and the five bound kernel sockets."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import zmq

from ..wire import digest_for, new_id

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
CURVE_FIELDS = ("curve_publickey", "curve_secretkey")
# ZeroMQ's Z85 alphabet (RFC 32); a CurveZMQ key is 32 bytes, 40 characters of it.
_Z85 = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)


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
    # CurveZMQ: the kernel's own keypair (Z85), as jupyter_client provisions it.
    # Clients use the public key as their server key.
    curve_publickey: str = ""
    curve_secretkey: str = ""
    extra: dict = field(default_factory=dict)
    # Fields the file did not have: the kernel chooses them (a key, ports).
    absent: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

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
        """Validate ``data``; what it lacks takes the defaults and is named in ``absent``."""
        info = cls()
        known = {f for f in cls.__dataclass_fields__ if f not in ("extra", "absent")}
        info.absent = frozenset(known - data.keys())
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
        _check_curve_keys(info, source)
        return info

    @property
    def uses_curve(self) -> bool:
        """Whether the sockets are served with CurveZMQ encryption."""
        return bool(self.curve_secretkey)

    def chooses_ports(self) -> bool:
        """Whether binding picks any port (0 or absent), which clients must be told."""
        return any(getattr(self, f"{channel}_port") == 0 for channel in CHANNELS)

    def make_curve_keys(self) -> None:
        """Give the kernel a fresh CurveZMQ keypair."""
        public, secret = zmq.curve_keypair()
        self.curve_publickey, self.curve_secretkey = public.decode(), secret.decode()

    def unencrypted_warning(self) -> str | None:
        """The warning to log at start when traffic goes over TCP in plain text."""
        # As ipykernel 7.4 does, loopback addresses are not exempt: whoever shares
        # the host's (or the container's) network namespace with enough privilege
        # can read loopback traffic, and users comparing kernels expect one notice.
        # ipc is not reachable from the network, and its files are the user's own.
        if self.transport != "tcp" or self.uses_curve:
            return None
        return (
            f"serving on tcp://{self.ip} without encryption: code and outputs travel in plain"
            " text, readable by anyone who can watch the traffic (signatures only stop forged"
            " messages); start the kernel with CurveZMQ keys (jupyter_client's"
            " KernelManager.transport_encryption) or over ipc"
        )

    def to_dict(self) -> dict:
        data = asdict(self)
        del data["absent"]
        data.update(data.pop("extra"))
        # A file without encryption holds no curve fields at all: jupyter_client
        # takes even empty ones for keys.
        for name in CURVE_FIELDS:
            if not data[name]:
                del data[name]
        return data

    def write(self, path: str | os.PathLike[str]) -> None:
        """Replace the file atomically with one readable by its owner only (0600)."""
        path = Path(path)
        if not path.parent.is_dir():
            raise ConnectionError_(f"directory for connection file does not exist: {path.parent}")
        try:
            # mkstemp makes the file 0600 whatever the umask; readers see the old
            # file or the whole new one, never a half-written one.
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as e:
            raise ConnectionError_(f"cannot write connection file {path}: {e.strerror}") from None
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_dict(), f, indent=1)
            os.replace(tmp, path)
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            raise ConnectionError_(f"cannot write connection file {path}: {e.strerror}") from None

    def address(self, channel: str) -> str:
        port = getattr(self, f"{channel}_port")
        if self.transport == "tcp":
            return f"tcp://{self.ip}:{port}"
        return f"ipc://{self.ip}-{port}"


def _check_curve_keys(info: ConnectionInfo, source: str) -> None:
    given = [name for name in CURVE_FIELDS if getattr(info, name)]
    if not given:
        return
    if len(given) == 1:
        missing = next(name for name in CURVE_FIELDS if name not in given)
        raise ConnectionError_(f"{source}: {given[0]} without {missing} (both or neither)")
    for name in CURVE_FIELDS:
        value = getattr(info, name)
        if len(value) != 40 or not _Z85.issuperset(value):
            raise ConnectionError_(f"{source}: {name} is not a CurveZMQ key (40 characters of Z85)")
    if not zmq.has("curve"):
        raise ConnectionError_(
            f"{source} asks for CurveZMQ encryption, which this libzmq was built without"
        )
    try:
        matches = zmq.curve_public(info.curve_secretkey.encode()) == info.curve_publickey.encode()
    except zmq.ZMQError:
        matches = False
    if not matches:
        raise ConnectionError_(f"{source}: curve_publickey does not belong to curve_secretkey")


def explicit_connection_fields(
    transport: str | None, ip: str | None, ports: Mapping[str, int] | None, key: str | None
) -> dict[str, Any]:
    """The connection fields a caller gave (``None``: not given), named as in a
    connection file; ``ports`` maps channel names to ports."""
    fields: dict[str, Any] = {}
    if transport is not None:
        fields["transport"] = transport
    if ip is not None:
        fields["ip"] = ip
    if key is not None:
        fields["key"] = key
    for channel, port in (ports or {}).items():
        if channel not in CHANNELS:
            raise ConnectionError_(
                f"ports: unknown channel {channel!r} (one of {', '.join(CHANNELS)})"
            )
        fields[f"{channel}_port"] = port
    return fields


def connection_to_serve(
    path: Path, file_given: bool, explicit: dict[str, Any]
) -> tuple[ConnectionInfo, bool, dict[str, Any] | None]:
    """What an embedded kernel serves: the given file at ``path`` if it exists, then
    the ``explicit`` fields over it; a key is made if none was given. Also whether
    the file existed, and what it held (``None`` if it did not exist), to tell
    whether it must be written."""
    existed = file_given and path.exists()
    data: dict[str, Any] = {}
    original: dict[str, Any] | None = None
    if existed:
        loaded = ConnectionInfo.load(path)
        original = loaded.to_dict()
        # What the file says, without the defaults of what it lacks (a key, say).
        data.update({k: v for k, v in original.items() if k not in loaded.absent})
    data.update(explicit)
    info = ConnectionInfo.from_dict(data, source=str(path) if existed else "connection")
    if "key" in info.absent:
        info.key = new_id()
    elif not info.key:
        # A launched kernel accepts this only with --allow-unsigned; an embedded
        # one runs in someone's service: no unsigned kernels at all.
        given = "key=''" if "key" in explicit else f"connection file {path}"
        raise ConnectionError_(
            f"{given}: an empty key means unsigned messages, and anyone who can reach the ports"
            " could run code in this process"
        )
    if "ip" in info.absent or not info.ip:
        info.ip = default_ip(info.transport, path)
    return info, existed, original


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

_SOCKET_TYPES = {
    "shell": zmq.ROUTER,
    "iopub": zmq.XPUB,
    "stdin": zmq.ROUTER,
    "control": zmq.ROUTER,
    "hb": zmq.ROUTER,
}


def _serve_curve(sock: zmq.Socket, info: ConnectionInfo) -> None:
    """Make ``sock`` a CurveZMQ server (before it binds): clients that do not
    know the kernel's public key, or speak plain text, are refused by ZeroMQ."""
    sock.curve_secretkey = info.curve_secretkey.encode("ascii")
    sock.curve_publickey = info.curve_publickey.encode("ascii")
    sock.curve_server = True


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
    """Create and bind the kernel's sockets; ports 0 in ``info`` are filled in.
    With curve keys in ``info``, every socket (the heartbeat's too) is encrypted."""
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
                # subscriber is IOPUB_HWM messages behind, senders wait. How
                # long, before one that has stopped reading is left behind, is
                # the publisher's to say (akernel.channels.iopub_flow).
                sock.setsockopt(zmq.XPUB_NODROP, 1)
                sock.sndhwm = IOPUB_HWM
            if channel in ("shell", "control", "stdin"):
                sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
            if info.uses_curve:
                _serve_curve(sock, info)
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


def default_ip(transport: str, connection_file: str | os.PathLike[str]) -> str:
    """Where a kernel listens when told nothing: the loopback for tcp; for ipc,
    a path beside its connection file."""
    if transport == "tcp":
        return "127.0.0.1"
    return str(Path(connection_file).with_suffix("")) + "-ipc"
