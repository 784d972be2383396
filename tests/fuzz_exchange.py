"""Sending fuzzed requests to a real kernel, reading what it sends back, and judging it."""

from __future__ import annotations

import time
from collections.abc import Callable

import zmq
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.session import Session as ReferenceSession

from akernel.wire import Session, WireError

from .conftest import start_kernel, stop_kernel
from .fuzz_requests import Case, plain_case
from .fuzzing import describe
from .rawclient import channel_of
from .utils import is_idle_of

BATCH = 40
BATCH_TIMEOUT = 60  # seconds for a whole batch to be answered
QUIET_TIMEOUT = 10  # seconds without a message from the kernel: it is stuck
# Seconds to go on reading once a batch is idle and answered: a second reply to
# the same request would show up meanwhile.
SETTLE = 0.1
STATUSES = {"ok", "error", "aborted"}
# is_complete_reply's status says whether the code is complete instead.
IS_COMPLETE_STATUSES = {"complete", "incomplete", "invalid", "unknown", "error"}


def heartbeat_answers(kc: BlockingKernelClient, timeout: float = 10) -> bool:
    url = f"tcp://{kc.ip}:{kc.hb_port}" if kc.transport == "tcp" else f"ipc://{kc.ip}-{kc.hb_port}"
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.linger = 0
    try:
        sock.connect(url)
        sock.send(b"ping")
        return bool(sock.poll(int(timeout * 1000))) and sock.recv() == b"ping"
    finally:
        sock.close()


class FuzzedKernel:
    """The module's kernel for one backend; replaced when a test broke it."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.km, self.kc = start_kernel(backend)
        self.healthy = True  # as far as the last check knows

    def problems(self) -> list[str]:
        """What is wrong with the kernel: empty when it is alive and serves."""
        problems = self._problems()
        self.healthy = not problems
        return problems

    def _problems(self) -> list[str]:
        if not self.km.is_alive():
            return ["the kernel process is gone"]
        if not heartbeat_answers(self.kc):
            return ["the heartbeat does not answer"]
        execute = plain_case(self.kc, "shell", "execute_request", {"code": "1+1"})
        # Only whether the kernel serves: a fuzzed batch's own reading (SETTLE)
        # looks for second replies, the health check need not wait for them.
        replies, iopub, _ = send_and_collect(self.kc, [execute], self.km.is_alive, settle=0)
        got = replies[execute.msg_id] + iopub[execute.msg_id]
        if check_case(execute, replies[execute.msg_id], iopub[execute.msg_id]):
            return [f"execute '1+1' was not answered: {describe(got)}"]
        results = [m["content"].get("data") for m in got if m["msg_type"] == "execute_result"]
        if got[0]["content"]["status"] != "ok" or results != [{"text/plain": "2"}]:
            return [f"execute '1+1' failed: {describe(got)}"]
        info = plain_case(self.kc, "control", "kernel_info_request", {})
        replies, iopub, _ = send_and_collect(self.kc, [info], self.km.is_alive, settle=0)
        if check_case(info, replies[info.msg_id], iopub[info.msg_id]):
            return ["control's kernel_info_request was not answered"]
        return []

    def ready(self) -> None:
        """Replace the kernel if an earlier test broke it; drop old messages."""
        if not self.healthy:
            stop_kernel(self.km, self.kc)
            self.km, self.kc = start_kernel(self.backend)
            self.healthy = True
        for channel in (self.kc.shell_channel, self.kc.control_channel, self.kc.iopub_channel):
            while channel.socket.poll(0):
                channel.socket.recv_multipart()

    def stop(self) -> None:
        stop_kernel(self.km, self.kc)


class KernelReader:
    """Reads what the kernel sends, verifying its signatures: with akernel's
    decoder (which reads any depth of nesting it accepted), and noting what
    jupyter_client's could not read."""

    def __init__(self, kc: BlockingKernelClient) -> None:
        self.ours = Session(kc.session.key, kc.session.signature_scheme)
        self.reference = ReferenceSession(
            key=kc.session.key, signature_scheme=kc.session.signature_scheme
        )
        self.unreadable: list[str] = []

    def read(self, sock: zmq.Socket, into: dict[str, list[dict]]) -> bool:
        """File every message ready on ``sock`` under its parent's msg_id; whether any came."""
        got = False
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return got
            got = True
            try:
                msg = self.ours.deserialize(frames)
            except WireError as e:
                self.unreadable.append(f"{e}: {describe(frames)}")
                continue
            record = {
                "msg_type": msg.msg_type,
                "content": msg.content,
                "parent_header": msg.parent_header,
            }
            try:
                self.reference.deserialize(self.reference.feed_identities(frames)[1])
            except Exception as e:
                record["unreadable"] = f"{type(e).__name__}: {str(e)[:200]}"
            into.setdefault(msg.parent_header.get("msg_id"), []).append(record)


def send_and_collect(
    kc: BlockingKernelClient,
    batch: list[Case],
    alive: Callable[[], bool],
    settle: float = SETTLE,
) -> tuple[dict, dict, list[str]]:
    """Send the batch at once, then read replies and IOPub messages by parent
    msg_id until every accepted request is idle and answered (and ``settle``
    seconds more), or nothing more comes, or the kernel is gone."""
    sock = channel_of(kc, batch[0].channel).socket
    for case in batch:
        sock.send_multipart(case.frames)
    reader = KernelReader(kc)
    replies: dict[str, list[dict]] = {case.msg_id: [] for case in batch}
    iopub: dict[str, list[dict]] = {case.msg_id: [] for case in batch}
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(kc.iopub_channel.socket, zmq.POLLIN)
    deadline = time.monotonic() + BATCH_TIMEOUT
    last_news = settled_at = time.monotonic()
    settled = False
    while time.monotonic() < deadline and time.monotonic() - last_news < QUIET_TIMEOUT:
        if reader.read(sock, replies) | reader.read(kc.iopub_channel.socket, iopub):
            last_news = time.monotonic()
        elif time.monotonic() - last_news > 1 and not alive():
            break
        idle = all(
            any(is_idle_of(m, c.msg_id) for m in iopub[c.msg_id]) for c in batch if c.accepted
        )
        answered = all(replies[c.msg_id] for c in batch if c.wants_reply)
        if idle:
            # A reply leaves before its idle: give a late one a moment, and
            # let a second reply to the same request show up.
            if not settled:
                settled, settled_at = True, time.monotonic()
            if time.monotonic() - settled_at >= (settle if answered else 2):
                break
        poller.poll(50)
    return replies, iopub, reader.unreadable


def sequence(iopub: list[dict]) -> str:
    """IOPub messages in short: their types, status messages by state."""
    return ", ".join(
        m["content"].get("execution_state", "?") if m["msg_type"] == "status" else m["msg_type"]
        for m in iopub
    )


def check_case(case: Case, replies: list[dict], iopub: list[dict]) -> list[str]:
    """What the kernel did wrong with one request."""
    if case.decoder_error:
        return [f"akernel's decoder raises {case.decoder_error} (expected a WireError)"]
    if not case.accepted:
        return [f"dropped by the wire layer, yet answered: {describe(replies + iopub)}"] * bool(
            replies or iopub
        )
    problems = [
        f"jupyter_client cannot read the kernel's {m['msg_type']}: {m['unreadable']}"
        for m in replies + iopub
        if "unreadable" in m
    ]
    statuses = [m["content"]["execution_state"] for m in iopub if m["msg_type"] == "status"]
    if not statuses or statuses[-1] != "idle" or iopub[-1]["msg_type"] != "status":
        problems.append(f"no idle at the end of its IOPub messages: {sequence(iopub)}")
    elif iopub[0]["msg_type"] != "status" or statuses != ["busy", "idle"]:
        problems.append(f"not bracketed by one busy and one idle: {sequence(iopub)}")
    expected = case.msg_type.rsplit("_", 1)[0] + "_reply"
    if len(replies) > (1 if case.wants_reply or case.msg_type.endswith("_request") else 0):
        problems.append(f"{len(replies)} replies: {describe(replies)}")
    elif case.wants_reply and not replies:
        problems.append("no reply")
    for reply in replies[:1]:
        content = reply["content"]
        status = content.get("status")
        if reply["msg_type"] != expected:
            problems.append(f"reply of type {reply['msg_type']!r}, not {expected!r}")
        elif expected == "debug_reply":
            # A DAP response, which has no status: success says it all.
            if content.get("type") != "response" or not isinstance(content.get("success"), bool):
                problems.append(f"debug_reply that is not a DAP response: {describe(content)}")
        elif status not in (IS_COMPLETE_STATUSES if expected == "is_complete_reply" else STATUSES):
            problems.append(f"reply status {status!r}: {describe(content)}")
        elif status == "error" and not (
            isinstance(content.get("ename"), str)
            and isinstance(content.get("evalue"), str)
            and isinstance(content.get("traceback"), list)
        ):
            problems.append(f"error reply without ename, evalue, traceback: {describe(content)}")
    return problems
