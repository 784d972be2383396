"""A blocking client that can send what a client should not, and files what comes back."""

from __future__ import annotations

import contextlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
import zmq
from jupyter_client.session import Session as ReferenceSession

from .config import DELIM


@dataclass
class Msg:
    """A message from the kernel, as this client read it."""

    msg_type: str
    parent_id: str | None
    content: dict[str, Any]
    arrived: float
    problems: list[str]  # a bad signature, invalid UTF-8


def _text_problems(value: Any) -> bool:
    """Whether a JSON value holds a string that is not valid Unicode (lone surrogates)."""
    pending = [value]
    while pending:
        v = pending.pop()
        if isinstance(v, str):
            try:
                v.encode()
            except UnicodeEncodeError:
                return True
        elif isinstance(v, dict):
            pending.extend(v.keys())
            pending.extend(v.values())
        elif isinstance(v, list):
            pending.extend(v)
    return False


_MSG_ID = re.compile(rb'"msg_id":\s*"([^"]*)"')


def _loads(data: bytes, problems: list[str]) -> Any:
    """A JSON frame, read as jupyter_client reads it (orjson first, then the standard
    library with invalid UTF-8 replaced), noting what is wrong with it; {} when it
    cannot be read at all."""
    with contextlib.suppress(orjson.JSONDecodeError):
        return orjson.loads(data)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        problems.append("invalid UTF-8")
        text = data.decode(errors="replace")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        problems.append("unreadable")
        return {}


class Peer:
    """A blocking client on shell, control (DEALERs) and IOPub (SUB), with its own signer.

    Messages are built with the standard library's ``json`` (which writes NaN) and read
    as jupyter_client reads them, noting invalid UTF-8, lone surrogates and frames that
    cannot be read, so that what a kernel sends is seen as it is. Everything received is
    filed by parent msg_id.
    """

    def __init__(
        self,
        ctx: zmq.Context,
        info: dict[str, Any],
        *,
        key: bytes | None = None,
        iopub: bool = True,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self.key = (info.get("key") or "").encode() if key is None else key
        scheme = info.get("signature_scheme") or "hmac-sha256"
        self.digest = scheme.partition("-")[2]
        self.session = uuid.uuid4().hex
        self.alive = alive
        url = f"{info.get('transport', 'tcp')}://{info['ip']}:"

        def make(kind: int, port: int) -> zmq.Socket:
            sock = ctx.socket(kind)
            sock.linger = 0
            sock.sndhwm = sock.rcvhwm = 0
            sock.connect(url + str(port))
            return sock

        self.sockets: dict[str, zmq.Socket] = {
            "shell": make(zmq.DEALER, info["shell_port"]),
            "control": make(zmq.DEALER, info["control_port"]),
        }
        if iopub:
            self.sockets["iopub"] = make(zmq.SUB, info["iopub_port"])
            self.sockets["iopub"].setsockopt(zmq.SUBSCRIBE, b"")
        self.poller = zmq.Poller()
        for sock in self.sockets.values():
            self.poller.register(sock, zmq.POLLIN)
        self.replies: dict[str | None, list[Msg]] = {}
        self.iopub: dict[str | None, list[Msg]] = {}
        self.sent: dict[str, float] = {}
        self.unreadable = 0  # messages with a frame jupyter_client's decoder cannot read
        self.reference = ReferenceSession(key=self.key, signature_scheme=scheme)

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close(linger=0)

    def forget(self) -> None:
        """Drop what was received so far."""
        self.replies.clear()
        self.iopub.clear()

    # -- sending --

    def sign(self, parts: list[bytes], key: bytes | None = None) -> bytes:
        key = self.key if key is None else key
        if not key:
            return b""
        h = hmac.new(key, digestmod=self.digest)
        for part in parts:
            h.update(part)
        return h.hexdigest().encode()

    def build(
        self, msg_type: str, content: dict[str, Any] | bytes, *, key: bytes | None = None
    ) -> tuple[str, list[bytes]]:
        """A request's msg_id and frames (``content`` as bytes is sent as it is)."""
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": msg_type,
            "username": "hostile",
            "session": self.session,
            "date": datetime.now(timezone.utc).isoformat(),
            "version": "5.4",
        }
        body = content if isinstance(content, bytes) else json.dumps(content).encode()
        parts = [json.dumps(header).encode(), b"{}", b"{}", body]
        return msg_id, [DELIM, self.sign(parts, key), *parts]

    def send(self, channel: str, frames: list[bytes], msg_id: str | None = None) -> None:
        # The clock starts before the send: this process may be descheduled right after.
        if msg_id is not None:
            self.sent[msg_id] = time.perf_counter()
        self.sockets[channel].send_multipart(frames)

    def request(
        self, channel: str, msg_type: str, content: dict[str, Any] | bytes | None = None
    ) -> str:
        msg_id, frames = self.build(msg_type, {} if content is None else content)
        self.send(channel, frames, msg_id)
        return msg_id

    # -- receiving --

    def decode(self, frames: list[bytes]) -> Msg:
        problems = []
        i = frames.index(DELIM)
        parts = frames[i + 2 : i + 6]
        if self.key and not hmac.compare_digest(self.sign(parts), frames[i + 1]):
            problems.append("bad signature")
        header, parent, content = (
            _loads(part, problems) for part in (parts[0], parts[1], parts[3])
        )
        if "unreadable" in problems:
            # Whatever this client cannot read, jupyter_client itself may still.
            try:
                msg = self.reference.deserialize(self.reference.feed_identities(frames)[1])
                header, parent, content = msg["header"], msg["parent_header"], msg["content"]
                problems.remove("unreadable")
            except Exception:
                self.unreadable += 1
                # File it under its parent all the same: the msg_id is near the start.
                found = _MSG_ID.search(parts[1])
                parent = {"msg_id": found[1].decode()} if found else {}
        if _text_problems(content):
            problems.append("lone surrogates")
        return Msg(
            header.get("msg_type", "?"),
            parent.get("msg_id"),
            content,
            time.perf_counter(),
            problems,
        )

    def pump(
        self,
        timeout: float,
        until: Callable[[], bool] = lambda: False,
        *,
        quiet: float | None = None,
        sink: Callable[[Msg], bool] | None = None,
        tick: Callable[[], None] | None = None,
    ) -> bool:
        """Read every socket, filing messages, until ``until()`` holds (True), or
        ``timeout`` seconds pass, nothing comes for ``quiet`` seconds, or the
        kernel process is gone (False). ``sink`` may consume IOPub messages (True:
        not filed); ``tick`` runs every ~20 ms."""
        start = last = time.perf_counter()
        next_alive_check = start + 0.5
        while True:
            if until():
                return True
            now = time.perf_counter()
            if now - start > timeout or (quiet is not None and now - last > quiet):
                return False
            if now > next_alive_check:
                next_alive_check = now + 0.5
                if self.alive is not None and not self.alive():
                    # What was sent before it died may still be queued here.
                    self._drain_ready(sink)
                    return until()
            if tick is not None:
                tick()
            ready = dict(self.poller.poll(20))
            if ready:
                last = time.perf_counter()
                self._drain_ready(sink, ready)

    def _drain_ready(self, sink: Callable[[Msg], bool] | None, ready: dict | None = None) -> None:
        for name, sock in self.sockets.items():
            if ready is not None and sock not in ready:
                continue
            # At most 100 at a time: a flood on IOPub must not delay reading the others.
            for _ in range(100):
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    msg = self.decode(frames)
                except (ValueError, IndexError):
                    continue  # not a message: nothing to file it under
                if name == "iopub":
                    if sink is None or not sink(msg):
                        self.iopub.setdefault(msg.parent_id, []).append(msg)
                else:
                    self.replies.setdefault(msg.parent_id, []).append(msg)

    def reply(self, msg_id: str) -> Msg | None:
        got = self.replies.get(msg_id)
        return got[0] if got else None

    def idle(self, msg_id: str) -> bool:
        return any(
            m.msg_type == "status" and m.content.get("execution_state") == "idle"
            for m in self.iopub.get(msg_id, ())
        )

    def wait_reply(self, msg_id: str, timeout: float) -> Msg | None:
        self.pump(timeout, lambda: self.reply(msg_id) is not None)
        return self.reply(msg_id)

    def execute(
        self, code: str, timeout: float, *, sink: Callable[[Msg], bool] | None = None, **kw: Any
    ) -> Run:
        """Run ``code``: its reply and IOPub messages, once both the reply and idle came
        (or ``timeout`` passed)."""
        content = {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        msg_id = self.request("shell", "execute_request", content)
        done = self.pump(
            timeout, lambda: self.reply(msg_id) is not None and self.idle(msg_id), sink=sink, **kw
        )
        return Run(msg_id, self.reply(msg_id), self.iopub.get(msg_id, []), done, self.sent[msg_id])

    def settle(self, timeout: float) -> bool:
        """Wait until the IOPub subscription is live (the kernel's welcome, or a status
        for a kernel_info request)."""
        if self.pump(min(3.0, timeout), lambda: bool(self.iopub.get(None))):
            self.forget()
            return True
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            msg_id = self.request("shell", "kernel_info_request")
            if self.pump(2.0, lambda msg_id=msg_id: self.idle(msg_id)):
                self.forget()
                return True
        return False


@dataclass
class Run:
    """An execute request and what came back."""

    msg_id: str
    reply: Msg | None
    outputs: list[Msg]
    complete: bool  # reply and idle both arrived
    sent: float

    def of_type(self, *types: str) -> list[Msg]:
        return [m for m in self.outputs if m.msg_type in types]

    def stream_text(self) -> str:
        return "".join(m.content.get("text", "") for m in self.of_type("stream"))

    @property
    def status(self) -> str | None:
        return None if self.reply is None else self.reply.content.get("status")
