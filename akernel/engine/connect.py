"""Joining an ipyparallel controller: connection info, registration, sockets.

The controller's engine connection info (``$IPP_CONNECTION_INFO``, or the
profile's ``security/ipcontroller[-CLUSTER]-engine.json``) names its
endpoints. An engine registers over a DEALER socket (identity: its uuid),
gets an id and the heartbeat period, then connects:

* shell: one ROUTER (identity: uuid) connected to mux, task and one broadcast
  leaf, so replies go back along the identities requests came with;
* control: a ROUTER connected to the controller;
* iopub: an XPUB connected to the controller, never dropping;
* heartbeat: pings from a SUB echoed to a DEALER (identity: uuid).

CurveZMQ keys and SSH tunnels from the connection info are honoured.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import zmq

from ..transport import KernelSockets
from ..wire import Message, Session, WireError

log = logging.getLogger("akernel.engine")


class EngineError(Exception):
    """Joining the controller failed; the message says why, in one line."""


@dataclass
class ControllerInfo:
    """The parts of the engine connection info an engine uses."""

    data: dict[str, Any]
    interface: str
    key: str
    signature_scheme: str
    location: str = ""
    ssh: str = ""
    curve_serverkey: bytes = b""

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> ControllerInfo:
        missing = [k for k in ("interface", "registration", "signature_scheme") if k not in data]
        if missing:
            raise EngineError(f"{source}: missing {', '.join(missing)}")
        for name in ("pack", "unpack"):
            # "json", or the dotted name of jupyter_client's JSON (un)packer.
            if "json" not in str(data.get(name, "json")):
                raise EngineError(
                    f"{source}: only JSON message packing is supported ({name}: {data[name]!r})"
                )
        return cls(
            data=data,
            interface=data["interface"],
            key=data.get("key", ""),
            signature_scheme=data["signature_scheme"],
            location=data.get("location", "") or "",
            ssh=data.get("ssh", "") or "",
            curve_serverkey=_curve_serverkey(data.get("curve_serverkey"), source),
        )

    def url(self, name: str) -> str:
        return f"{self.interface}:{self.data[name]}"

    def urls(self, name: str) -> list[str]:
        return [f"{self.interface}:{port}" for port in self.data[name]]


def _curve_serverkey(value: Any, source: str) -> bytes:
    """The controller's CurveZMQ public key (null or absent: no encryption)."""
    if not value:
        return b""
    if not isinstance(value, str) or len(value) != 40 or not value.isascii():
        raise EngineError(f"{source}: curve_serverkey is not a CurveZMQ key (40 characters)")
    if not zmq.has("curve"):
        raise EngineError(
            f"{source}: the controller uses CurveZMQ, which this libzmq was built without"
        )
    return value.encode("ascii")


def load_controller_info(env_value: str, url_file: str, wait: float) -> ControllerInfo:
    """From ``$IPP_CONNECTION_INFO`` if set, else from ``url_file`` (waiting
    up to ``wait`` seconds for it to appear, as batch systems need)."""
    if env_value:
        try:
            data = json.loads(env_value)
        except ValueError as e:
            raise EngineError(f"$IPP_CONNECTION_INFO is not valid JSON: {e}") from None
        source = "$IPP_CONNECTION_INFO"
    else:
        deadline = time.monotonic() + wait
        while not os.path.exists(url_file) and time.monotonic() < deadline:
            time.sleep(0.1)
        try:
            with open(url_file) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise EngineError(f"controller connection file not found: {url_file}") from None
        except (OSError, ValueError) as e:
            raise EngineError(f"cannot read controller connection file {url_file}: {e}") from None
        source = url_file
    if not isinstance(data, dict):
        raise EngineError(f"{source} does not hold a JSON object")
    return ControllerInfo.from_dict(data, source)


@dataclass
class Connector:
    """Connects sockets to the controller: addresses made reachable from here,
    CurveZMQ keys set, SSH tunnels opened when asked for."""

    info: ControllerInfo
    location: str = ""
    sshserver: str = ""
    sshkey: str = ""
    curve_publickey: bytes = b""
    curve_secretkey: bytes = b""
    _tunnels: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.info.curve_serverkey and not self.curve_secretkey:
            self.curve_publickey, self.curve_secretkey = zmq.curve_keypair()
        if self.sshkey and not self.sshserver:
            # Tunnel to the controller's own host.
            self.sshserver = self.info.interface.split("://")[1]

    def address(self, url: str) -> str:
        from ipyparallel.util import disambiguate_url

        return disambiguate_url(url, self.location or self.info.location)

    def connect(self, sock: zmq.Socket, url: str) -> None:
        if self.info.curve_serverkey:
            sock.curve_serverkey = self.info.curve_serverkey
            sock.curve_secretkey = self.curve_secretkey
            sock.curve_publickey = self.curve_publickey
        url = self.address(url)
        if self.sshserver:
            from zmq.ssh import tunnel

            self._tunnels.append(
                tunnel.tunnel_connection(sock, url, self.sshserver, keyfile=self.sshkey or None)
            )
        else:
            sock.connect(url)


def register(
    context: zmq.Context,
    connector: Connector,
    session: Session,
    uuid: str,
    requested_id: int | None,
    timeout: float,
) -> tuple[zmq.Socket, int, int]:
    """Register with the controller; return the registration socket (kept to
    unregister), the engine id, and the heartbeat period (ms)."""
    registrar = context.socket(zmq.DEALER)
    registrar.identity = uuid.encode("ascii")
    registrar.linger = 1000
    connector.connect(registrar, connector.info.url("registration"))
    content: dict[str, Any] = {"uuid": uuid}
    if requested_id is not None:
        content["id"] = requested_id
    registrar.send_multipart(session.serialize("registration_request", content))
    if not registrar.poll(int(timeout * 1000)):
        registrar.close(linger=0)
        raise EngineError(
            f"no answer from the controller at {connector.info.url('registration')}"
            f" within {timeout:g} s (is it running, and reachable from here?)"
        )
    try:
        reply: Message = session.deserialize(registrar.recv_multipart())
    except WireError as e:
        registrar.close(linger=0)
        raise EngineError(f"bad registration reply from the controller: {e}") from None
    if reply.content.get("status") != "ok":
        registrar.close(linger=0)
        reason = reply.content.get("evalue") or reply.content.get("reason") or reply.content
        raise EngineError(f"the controller refused the registration: {reason}")
    return registrar, int(reply.content["id"]), int(reply.content.get("hb_period", 3000))


def unregister(registrar: zmq.Socket, session: Session, engine_id: int) -> None:
    registrar.send_multipart(session.serialize("unregistration_request", {"id": engine_id}))


def connect_engine_sockets(
    context: zmq.Context,
    connector: Connector,
    uuid: str,
    engine_id: int,
    *,
    nanny_url: str = "",
) -> KernelSockets:
    """The engine's sockets, connected to the controller (control through the
    nanny at ``nanny_url``, if there is one)."""
    info = connector.info
    identity = uuid.encode("ascii")
    created: list[zmq.Socket] = []

    def socket(kind: int) -> zmq.Socket:
        sock = context.socket(kind)
        sock.linger = 1000
        created.append(sock)
        return sock

    try:
        shell = socket(zmq.ROUTER)
        shell.identity = identity
        broadcast = info.urls("broadcast")
        for url in (info.url("mux"), info.url("task"), broadcast[engine_id % len(broadcast)]):
            connector.connect(shell, url)
        control = socket(zmq.ROUTER)
        control.identity = identity
        if nanny_url:
            if connector.curve_secretkey:  # the nanny serves with our own keys
                control.curve_serverkey = connector.curve_publickey
                control.curve_secretkey = connector.curve_secretkey
                control.curve_publickey = connector.curve_publickey
            control.connect(nanny_url)
        else:
            connector.connect(control, info.url("control"))
        iopub = socket(zmq.XPUB)
        iopub.identity = identity
        iopub.sndhwm = 0  # as ipyparallel's engines: output is never dropped
        connector.connect(iopub, info.url("iopub"))
        ping = socket(zmq.SUB)
        ping.setsockopt(zmq.SUBSCRIBE, b"")
        connector.connect(ping, info.url("hb_ping"))
        pong = socket(zmq.DEALER)
        pong.identity = identity
        connector.connect(pong, info.url("hb_pong"))
        # Engines have no stdin channel: input() says so (allow_stdin is false).
        stdin = socket(zmq.ROUTER)
    except BaseException:
        for sock in created:
            sock.close(linger=0)
        raise
    return KernelSockets(
        context=context,
        shell=shell,
        iopub=iopub,
        stdin=stdin,
        control=control,
        hb=ping,
        hb_backend=pong,
    )
