"""What a hostile client can do to akernel (asyncio and trio) and to ipykernel, side by side.

Run it with ``nox -s hostile`` or directly::

    python benchmarks/hostile.py [--quick] [--kernels akernel,akernel-trio,ipykernel]
                                 [--only 1,3,10] [--json PATH] [--fuzz-cases N] [--fuzz-seed S]

Each scenario sends input that once killed, stalled or opened a kernel, the way a
hostile tester would, to every kernel in turn, each time on fresh kernel processes, and
records what happened. Kernels are started as in benchmarks/bench_kernel.py: their
kernelspec command (``python -m akernel launch -f FILE [--backend trio]``, ``python -m
ipykernel_launcher -f FILE``) run by this interpreter, from connection files this
script writes; scenarios 8 and 9 start them through jupyter_client's ``KernelManager``
from kernelspecs written to a private ``JUPYTER_PATH``. Kernels get a private
IPYTHONDIR and Jupyter runtime directory.

The scenarios (rows of the table):

1. Output that cannot be UTF-8 (``'ok\\udcff'`` printed, printed from a thread,
   displayed, raised; ``b'ok\\xff'`` written to file descriptor 1): the reply, the
   output as it arrives, then whether ``1+1`` still runs; then ``os.system('seq
   100000')`` on the same kernel: all 100,000 lines arrive.
2. A correctly signed message nested 5,000 levels deep around a 22-digit number, on
   shell (an execute_request that would write a marker file) and on control (a
   kernel_info_request): executed or dropped, and whether shell and control still answer.
3. A stalled IOPub subscriber (subscribes, takes one message, never reads again):
   a cell publishing 6,000 displays of 4 KB while a healthy client reads (all of them,
   in order? time to idle; control kernel_info latency meanwhile), then 200 ``pass``
   round trips; on a fresh kernel, a cell printing 300 MB in 1 MiB chunks (completeness,
   time, the kernel's RSS growth at its peak, sampled every ~20 ms with psutil).
4. Connection files: without ``key`` (does an unsigned execute run? is a key written
   back?), without ports (are ports written back, can a client connect?), with
   ``"key": ""`` (refused, or runs unsigned code?).
5. Requests whose handler fails (``history_request`` with ``n`` ``"ten"`` and
   ``2**63``, ``complete_request`` with ``cursor_pos`` 99): the reply, or none.
6. JSON jupyter_client's decoder accepts (``NaN``, ``Infinity``, ``1e400`` in an extra
   field of an execute_request): executed or dropped.
7. ``signature_scheme: hmac-shake_128``: how the kernel refuses it (or not).
8. A signed execute captured, the kernel restarted by ``KernelManager`` with the same
   connection file, the same frames sent again: how many times it ran.
9. CurveZMQ (``KernelManager(transport_encryption="required")``, kernelspecs
   declaring ``supported_encryption: ["curve"]``): does execute work, and does a
   plaintext client with the right HMAC key get its code run?
10. Seeded fuzzing with the request generator of tests/test_fuzz.py (imported; it
    needs pytest): N requests (1,000; 300 with ``--quick``) of every type on shell and
    control, the same for every kernel, in batches of 50 followed by a kernel_info on
    each channel; requests a handler should answer (as akernel's decoder reads them)
    answered or not, by type; kernel deaths; kernels silent for 10 + 30 s (stuck:
    replaced by a fresh one) or answering only after more than 10 s (slow); ``1+1`` at
    the end. ``--quick`` also prints 100 MB instead of 300 in scenario 3.

A request unanswered for ``--reply-timeout`` seconds (10) counts as "no reply"; every wait
has a timeout, so a hung kernel is an outcome, never a hung script. Every process the
script starts is killed when it ends, also on an error or Ctrl-C.

The Markdown table goes to stdout, progress to stderr; ``--json PATH`` also writes the
raw results. Exit status 1 if an akernel cell is not the expected outcome.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import psutil
import zmq
from bench_kernel import KERNELS, KernelKind, free_ports  # this script's directory
from jupyter_client.manager import KernelManager
from jupyter_client.session import Session as ReferenceSession
from zmq.utils.monitor import recv_monitor_message

from akernel.wire import Session

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DELIM = b"<IDS|MSG>"
SURROGATE = "ok\udcff"  # a byte decoded with surrogateescape
REPLACED = "ok\ufffd"
MiB = 1 << 20


@dataclass(frozen=True)
class Config:
    """Sizes and timeouts."""

    reply_timeout: float = 10.0
    startup_timeout: float = 60.0
    displays: int = 6_000
    display_chars: int = 4_000
    roundtrips: int = 200
    print_mib: int = 300
    fuzz_cases: int = 1_000
    fuzz_batch: int = 50
    fuzz_quiet: float = 3.0  # seconds without a message: the batch is over
    stuck_timeout: float = 30.0  # more seconds for a silent kernel before it is replaced
    fuzz_seed: int | None = None  # None: tests/test_fuzz.py's default

    @classmethod
    def quick(cls) -> Config:
        """Fewer fuzz cases and a smaller print, same scenarios."""
        return cls(print_mib=100, fuzz_cases=300)


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- processes ------------------------------------------------------------------------------


class Reaper:
    """Every process this script starts, so that all of them are killed at the end."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.managers: list[KernelManager] = []

    def popen(self, argv: list[str], log: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own process group: the kernel's children (os.system) die with it,
                # and a Ctrl-C here reaches only this script, which then cleans up.
                start_new_session=True,
            )
        self.processes.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        """Kill the process and its group, unless it was already reaped."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        with contextlib.suppress(ValueError):
            self.processes.remove(proc)

    def manage(self, km: KernelManager) -> KernelManager:
        self.managers.append(km)
        return km

    def kill_manager(self, km: KernelManager) -> None:
        """Kill a KernelManager's kernel now and remove its files."""
        with contextlib.suppress(Exception):
            if km.has_kernel:
                km.shutdown_kernel(now=True)
        with contextlib.suppress(Exception):
            km.cleanup_resources()
        with contextlib.suppress(ValueError):
            self.managers.remove(km)

    def kill_all(self) -> None:
        for km in list(self.managers):
            self.kill_manager(km)
        for proc in list(self.processes):
            self.kill(proc)


# -- a client that can send what a client should not ----------------------------------------


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


# -- kernels --------------------------------------------------------------------------------


def full_connection_info() -> dict[str, Any]:
    shell, iopub, stdin, control, hb = free_ports(5)
    return {
        "transport": "tcp",
        "ip": "127.0.0.1",
        "shell_port": shell,
        "iopub_port": iopub,
        "stdin_port": stdin,
        "control_port": control,
        "hb_port": hb,
        "key": os.urandom(16).hex(),
        "signature_scheme": "hmac-sha256",
        "kernel_name": "",
    }


PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


class Kernel:
    """A kernel process started on a connection file this script wrote."""

    def __init__(self, lab: Lab, kind: KernelKind, info: dict[str, Any]) -> None:
        self.lab = lab
        self.kind = kind
        stem = f"{kind.name}-{lab.next_number()}"
        self.connection_file = lab.workdir / f"{stem}.json"
        self.log_path = lab.workdir / f"{stem}.log"
        fd = os.open(self.connection_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        self.info = info
        argv = [sys.executable, *kind.argv]
        argv = [a.replace("{connection_file}", str(self.connection_file)) for a in argv]
        self.proc = lab.reaper.popen(argv, self.log_path, dict(os.environ), lab.workdir)
        self.peers: list[Peer] = []
        lab.kernels.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def exit_text(self) -> str:
        return f"exit status {self.proc.returncode}"

    def file_info(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            return json.loads(self.connection_file.read_text())
        return {}

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def peer(
        self, *, key: bytes | None = None, iopub: bool = True, info: dict | None = None
    ) -> Peer:
        peer = Peer(self.lab.ctx, info or self.info, key=key, iopub=iopub, alive=self.alive)
        self.peers.append(peer)
        return peer

    def wait_exit(self, timeout: float) -> int | None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.proc.wait(timeout)
        return None

    def wait_listening(self, port: int, timeout: float) -> bool:
        """Whether the process listens on ``port`` within ``timeout`` (False if it exits)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            with contextlib.suppress(psutil.Error):
                for conn in psutil.Process(self.pid).net_connections("tcp"):
                    if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
                        return True
            time.sleep(0.05)
        return False

    def still_runs(self, peer: Peer, timeout: float) -> str | None:
        """None if the kernel is alive and ``1+1`` gives 2; else what is wrong."""
        if not self.alive():
            return f"kernel died ({self.exit_text()})"
        run = peer.execute("1+1", timeout)
        if run.reply is None:
            if not self.alive():
                return f"kernel died ({self.exit_text()})"
            return f"1+1 unanswered in {timeout:g} s"
        results = [
            m.content.get("data", {}).get("text/plain") for m in run.of_type("execute_result")
        ]
        if run.status != "ok" or results != ["2"]:
            return f"1+1 gave {run.status} {results}"
        return None

    def stop(self) -> None:
        """Ask for a shutdown on control (with a client that signs); kill whatever is left."""
        peer = next((p for p in self.peers if p.key), None)
        if self.alive() and peer is not None:
            with contextlib.suppress(Exception):
                msg_id = peer.request("control", "shutdown_request", {"restart": False})
                if peer.wait_reply(msg_id, 3.0) is not None:
                    self.wait_exit(5.0)
        for peer in self.peers:
            peer.close()
        self.peers.clear()
        self.lab.reaper.kill(self.proc)
        self.connection_file.unlink(missing_ok=True)


class Lab:
    """What every scenario shares: the zmq context, the settings, the work directory."""

    def __init__(self, ctx: zmq.Context, cfg: Config, workdir: Path, reaper: Reaper) -> None:
        self.ctx = ctx
        self.cfg = cfg
        self.workdir = workdir
        self.reaper = reaper
        self.kernels: list[Kernel] = []
        self._counter = 0

    def next_number(self) -> int:
        self._counter += 1
        return self._counter

    def path(self, name: str) -> Path:
        return self.workdir / f"{name}-{self.next_number()}"

    def launch(self, kind: KernelKind, info: dict[str, Any] | None = None) -> Kernel:
        return Kernel(self, kind, full_connection_info() if info is None else info)

    def start(self, kind: KernelKind) -> tuple[Kernel, Peer]:
        """A fresh kernel that answered kernel_info, with a client whose IOPub is live."""
        kernel = self.launch(kind)
        peer = kernel.peer()
        msg_id = peer.request("shell", "kernel_info_request")
        if peer.wait_reply(msg_id, self.cfg.startup_timeout) is None:
            raise RuntimeError(
                f"{kind.name} did not start ({'alive' if kernel.alive() else kernel.exit_text()})"
                f": {kernel.log()[-500:]}"
            )
        if not peer.settle(self.cfg.startup_timeout):
            raise RuntimeError(f"{kind.name}: IOPub never became live")
        return kernel, peer

    def stop_all(self) -> None:
        for kernel in self.kernels:
            kernel.stop()
        self.kernels.clear()


@dataclass
class Outcome:
    """One cell of the table: what happened, whether it is what a kernel should do
    (None: a measure, no verdict), and the raw figures."""

    text: str
    ok: bool | None = None
    data: dict[str, Any] = field(default_factory=dict)


Results = dict[str, Outcome]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _marker_code(path: Path, mode: str = "w") -> str:
    return f"open({str(path)!r}, {mode!r}).write('ran\\n')"


def _runs(path: Path) -> int:
    with contextlib.suppress(OSError):
        return path.read_text().count("ran")
    return 0


# -- 1. output that cannot be UTF-8 ---------------------------------------------------------

OUTPUT_STEPS = [
    ("1a", f"print({SURROGATE!r})", "stream"),
    (
        "1b",
        "import threading\n"
        f"t = threading.Thread(target=print, args=({SURROGATE!r},)); t.start(); t.join()",
        "stream",
    ),
    (
        "1c",
        f"from IPython.display import display; display({{'text/plain': {SURROGATE!r}}}, raw=True)",
        "display",
    ),
    ("1d", f"raise ValueError({SURROGATE!r})", "error"),
    ("1e", "import os; os.write(1, b'ok\\xff')", "stream"),
]


def _shown(run: Run, where: str) -> tuple[str, list[str]]:
    """The text the step should have produced, and the wire problems seen with it."""
    if where == "stream":
        msgs = run.of_type("stream")
        return run.stream_text(), [p for m in msgs for p in m.problems]
    if where == "display":
        msgs = run.of_type("display_data")
        return "".join(m.content.get("data", {}).get("text/plain", "") for m in msgs), [
            p for m in msgs for p in m.problems
        ]
    msgs = run.of_type("error")
    evalue = run.reply.content.get("evalue", "") if run.reply else ""
    return evalue + "".join(m.content.get("evalue", "") for m in msgs), [
        p for m in msgs for p in m.problems
    ]


def _judge_text(text: str, problems: list[str]) -> tuple[str, bool]:
    if "invalid UTF-8" in problems:
        # jupyter_client decodes with errors="replace": it shows U+FFFD.
        return "output as invalid UTF-8 (read as U+FFFD)", False
    if REPLACED in text:
        return "output (U+FFFD)", True
    if SURROGATE in text or "lone surrogates" in problems:
        return "output with a lone surrogate (\\udcff escape: not Unicode)", False
    if not text:
        return "no output", False
    return f"output {text[:30]!r}", False


def scenario_output(lab: Lab, kind: KernelKind) -> Results:
    timeout = lab.cfg.reply_timeout
    out: Results = {}
    kernel, peer = lab.start(kind)
    for key, code, where in OUTPUT_STEPS:
        fresh = ""
        if not kernel.alive():
            kernel, peer = lab.start(kind)
            fresh = " (fresh kernel)"
        run = peer.execute(code, timeout)
        if run.reply is not None and where != "error":
            # Output a kernel forwards from a thread or a pipe may trail the idle.
            run.outputs = peer.iopub.setdefault(run.msg_id, [])
            peer.pump(2.0, lambda run=run, where=where: bool(_shown(run, where)[0]))
        shown, good = _judge_text(*_shown(run, where))
        expected_status = "error" if where == "error" else "ok"
        if run.reply is None:
            head = f"no reply in {timeout:g} s" if kernel.alive() else "kernel died"
            good = False
        else:
            head = f"{'error ' if where == 'error' else ''}reply + {shown}"
            good = good and run.status == expected_status
        after = kernel.still_runs(peer, timeout)
        good = good and after is None
        served = run.reply is not None and after is None
        text = f"{'ok: ' if served else ''}{head}; {after or '1+1 runs'}{fresh}"
        out[key] = Outcome(text, good, {"output": _shown(run, where)[0][:100]})
    fresh = ""
    if not kernel.alive():
        kernel, peer = lab.start(kind)
        fresh = " (fresh kernel: the one above died)"
    lines = 100_000
    received = []

    def count(msg: Msg) -> bool:
        if msg.msg_type == "stream":
            received.append(msg.content.get("text", ""))
            return True
        return False

    t0 = time.perf_counter()
    run = peer.execute(f"import os; os.system('seq {lines}')", 60.0, sink=count)
    text = "".join(received)
    if not text.endswith(f"{lines}\n"):  # fd output may trail the idle
        peer.pump(3.0, lambda: "".join(received).endswith(f"{lines}\n"), sink=count)
        text = "".join(received)
    elapsed = time.perf_counter() - t0
    complete = text == "".join(f"{i}\n" for i in range(1, lines + 1))
    if run.reply is None:
        text_out = "no reply in 60 s" if kernel.alive() else "kernel died"
    else:
        got = text.count("\n")
        text_out = (
            f"ok: all {lines:,} lines in {_ms(elapsed)}"
            if complete
            else f"bad: {got:,} of {lines:,} lines"
        )
    out["1f"] = Outcome(text_out + fresh, complete, {"seconds": elapsed})
    return out


# -- 2. deep nesting ------------------------------------------------------------------------

DEPTH = 5_000


def _deep(prefix: bytes) -> bytes:
    return prefix + b'"x": ' + b"[" * DEPTH + b"1234567890123456789012" + b"]" * DEPTH + b"}"


def scenario_deep(lab: Lab, kind: KernelKind) -> Results:
    timeout = lab.cfg.reply_timeout
    out: Results = {}
    for key, channel in (("2a", "shell"), ("2b", "control")):
        kernel, peer = lab.start(kind)
        marker = lab.path("deep-ran")
        if channel == "shell":
            code = json.dumps(_marker_code(marker)).encode()
            body = _deep(
                b'{"code": ' + code + b', "silent": false, "store_history": false,'
                b' "user_expressions": {}, "allow_stdin": false, "stop_on_error": true, '
            )
            msg_id, frames = peer.build("execute_request", body)
        else:
            msg_id, frames = peer.build("kernel_info_request", _deep(b"{"))
        peer.send(channel, frames, msg_id)
        # Requests on one channel are handled in order: once the next one is
        # answered, the deep one was handled or dropped.
        sentinel = peer.request(channel, "kernel_info_request")
        sentinel_reply = peer.wait_reply(sentinel, timeout)
        peer.pump(0.5)
        answered = peer.reply(msg_id) is not None or _runs(marker) > 0
        checks = {}
        for other in ("shell", "control"):
            probe = peer.request(other, "kernel_info_request")
            checks[other] = peer.wait_reply(probe, timeout) is not None
        if not kernel.alive():
            text, good = f"kernel died ({kernel.exit_text()})", False
        elif not checks["control"] and checks["shell"]:
            text, good = "control thread dead (control no longer answers)", False
        elif not checks["shell"]:
            text, good = "shell no longer answers", False
        else:
            what = "executed" if _runs(marker) else "answered" if answered else "dropped"
            text = f"{what}; kernel alive, shell and control answer"
            good = True
            if sentinel_reply is None:
                text += f" (the next {channel} request was not answered in {timeout:g} s)"
                good = False
        out[key] = Outcome(text, good)
        kernel.stop()
    return out


# -- 3. a stalled IOPub subscriber ------------------------------------------------------------


def _stalled_subscriber(lab: Lab, kernel: Kernel) -> zmq.Socket:
    """An IOPub SUB that subscribes, takes one message, never reads again."""
    sock = lab.ctx.socket(zmq.SUB)
    sock.linger = 0
    sock.rcvhwm = 1
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(f"tcp://127.0.0.1:{kernel.info['iopub_port']}")
    # akernel welcomes a new subscriber; ipykernel 7.4 does not: make it publish.
    deadline = time.monotonic() + 10
    while not sock.poll(200):
        if time.monotonic() > deadline:
            sock.close(linger=0)
            raise RuntimeError("the stalled subscriber never got a first message")
        kernel.peers[0].request("shell", "kernel_info_request")
    sock.recv_multipart()
    return sock


def scenario_stall(lab: Lab, kind: KernelKind) -> Results:
    cfg = lab.cfg
    out: Results = {}
    kernel, peer = lab.start(kind)
    stalled = _stalled_subscriber(lab, kernel)
    try:
        numbers: list[int] = []
        latencies: list[float] = []
        pending: list[str] = []

        def take(msg: Msg) -> bool:
            if msg.msg_type == "display_data":
                numbers.append(int(msg.content["data"]["text/plain"][:6]))
                return True
            return False

        last_probe = 0.0

        def probe_control() -> None:
            """A control kernel_info every 50 ms, whether the previous ones were answered."""
            nonlocal last_probe
            for msg_id in [m for m in pending if peer.reply(m) is not None]:
                latencies.append(peer.reply(msg_id).arrived - peer.sent[msg_id])
                pending.remove(msg_id)
            if time.perf_counter() - last_probe > 0.05:
                last_probe = time.perf_counter()
                pending.append(peer.request("control", "kernel_info_request"))

        code = (
            "from IPython.display import display\n"
            f"for i in range({cfg.displays}):\n"
            f"    display({{'text/plain': f'{{i:06d}}' + 'x' * {cfg.display_chars}}}, raw=True)\n"
        )
        run = peer.execute(code, 120.0, sink=take, tick=probe_control)
        elapsed = (
            max(m.arrived for m in run.outputs if m.msg_type == "status") - run.sent
            if run.complete
            else None
        )
        in_order = numbers == list(range(cfg.displays))
        if run.complete:
            head = "all" if in_order else f"{len(numbers):,} of"
            text = (
                f"{head} {cfg.displays:,} {'in order' if in_order else ''}, idle in {_ms(elapsed)}"
            )
        else:
            text = f"no idle in 120 s ({len(numbers):,} of {cfg.displays:,} received)"
            if not kernel.alive():
                text = f"kernel died ({kernel.exit_text()}); " + text
        out["3a"] = Outcome(
            f"{'ok' if in_order and run.complete else 'bad'}: {text}",
            in_order and run.complete,
            {"received": len(numbers), "in_order": in_order, "seconds_to_idle": elapsed},
        )
        peer.pump(cfg.reply_timeout, lambda: all(peer.reply(m) for m in pending))
        for msg_id in pending:
            reply = peer.reply(msg_id)
            latencies.append(float("inf") if reply is None else reply.arrived - peer.sent[msg_id])
        if latencies:
            finite = [x for x in latencies if x != float("inf")]
            lost = len(latencies) - len(finite)
            text = (
                f"median {_ms(statistics.median(latencies))}, max "
                f"{'no reply' if lost else _ms(max(latencies))} ({len(latencies)} requests)"
            )
            if not finite:
                text = f"no reply in {cfg.reply_timeout:g} s"
            out["3b"] = Outcome(text, None if finite and not lost else False, {"samples": finite})
        else:
            out["3b"] = Outcome("no sample", False)

        times: list[float] = []
        failures = 0
        for _ in range(cfg.roundtrips):
            peer.forget()
            run = peer.execute("pass", cfg.reply_timeout)
            if not run.complete or run.status != "ok":
                failures += 1
                if not kernel.alive() or failures > 3:
                    break
                continue
            times.append(max(run.reply.arrived, run.outputs[-1].arrived) - run.sent)
        if times:
            text = f"median {_ms(statistics.median(times))}, max {_ms(max(times))}"
            if failures:
                text += f"; {failures} of {cfg.roundtrips} not answered"
        else:
            text = f"none answered in {cfg.reply_timeout:g} s"
        out["3c"] = Outcome(text, None if not failures else False, {"samples": times})
    finally:
        stalled.close(linger=0)
        kernel.stop()

    kernel, peer = lab.start(kind)
    stalled = _stalled_subscriber(lab, kernel)
    try:
        process = psutil.Process(kernel.pid)
        before = process.memory_info().rss
        peak = before
        size = 0

        def count(msg: Msg) -> bool:
            nonlocal size
            if msg.msg_type == "stream":
                size += len(msg.content.get("text", ""))
                return True
            return False

        last_sample = 0.0

        def sample() -> None:
            nonlocal peak, last_sample
            if time.perf_counter() - last_sample > 0.02:
                last_sample = time.perf_counter()
                with contextlib.suppress(psutil.Error):
                    peak = max(peak, process.memory_info().rss)

        code = f"chunk = 'y' * {MiB}\nfor _ in range({cfg.print_mib}):\n    print(chunk)\n"
        t0 = time.perf_counter()
        run = peer.execute(code, 300.0, sink=count, tick=sample)
        elapsed = time.perf_counter() - t0
        expected = cfg.print_mib * (MiB + 1)
        grown = (peak - before) / 1e6
        if not run.complete:
            text = f"no idle in 300 s ({size / MiB:.0f} MiB received)"
            if not kernel.alive():
                text = f"kernel died ({kernel.exit_text()}); " + text
            good = False
        else:
            good = size == expected
            what = "complete" if good else f"{size / MiB:.1f} of {cfg.print_mib} MiB"
            text = f"{what} in {_ms(elapsed)}, RSS +{grown:.0f} MB at peak"
        out["3d"] = Outcome(
            f"{'ok' if good else 'bad'}: {text}",
            good,
            {"bytes": size, "expected": expected, "seconds": elapsed, "rss_growth_mb": grown},
        )
    finally:
        stalled.close(linger=0)
    return out


# -- 4. connection files --------------------------------------------------------------------


def _unsigned_execute(
    kernel: Kernel, marker: Path, timeout: float, sentinel_key: bytes | None
) -> bool:
    """Send an unsigned execute that writes ``marker``; whether it ran. With the key the
    kernel uses, a signed kernel_info sent behind it shows when it was handled."""
    peer = kernel.peer(key=b"", iopub=False)
    msg_id = peer.request(
        "shell",
        "execute_request",
        {"code": _marker_code(marker), "silent": False, "store_history": False},
    )
    if sentinel_key:
        sentinel, frames = peer.build("kernel_info_request", {}, key=sentinel_key)
        peer.send("shell", frames, sentinel)
        peer.pump(timeout, lambda: peer.reply(sentinel) is not None or _runs(marker) > 0)
        peer.pump(0.5)
    else:
        peer.pump(timeout, lambda: peer.reply(msg_id) is not None or _runs(marker) > 0)
    return _runs(marker) > 0


def _last_line(kernel: Kernel, width: int = 72) -> str:
    """The last line of the kernel's log, the connection file's path shown as FILE."""
    lines = [line for line in kernel.log().splitlines() if line.strip()]
    if not lines:
        return "(nothing)"
    line = lines[-1].replace(str(kernel.connection_file), "FILE")
    return repr(line if len(line) <= width else line[: width - 3] + "...")


def scenario_connection_files(lab: Lab, kind: KernelKind) -> Results:
    cfg = lab.cfg
    out: Results = {}

    # a. no key
    info = full_connection_info()
    del info["key"]
    kernel = lab.launch(kind, info)
    if not kernel.wait_listening(info["shell_port"], cfg.startup_timeout):
        out["4a"] = Outcome(f"did not start ({kernel.exit_text()}): {_last_line(kernel)}", False)
    else:
        # A key written back may come just after the kernel binds.
        deadline = time.monotonic() + 3.0
        while not (written := kernel.file_info().get("key")) and time.monotonic() < deadline:
            time.sleep(0.05)
        ran = _unsigned_execute(
            kernel, lab.path("nokey-ran"), cfg.reply_timeout, (written or "").encode()
        )
        signed = None
        if written:
            peer = kernel.peer(info={**info, "key": written}, iopub=False)
            probe = peer.request("shell", "kernel_info_request")
            signed = peer.wait_reply(probe, cfg.reply_timeout) is not None
        text = "RAN UNSIGNED CODE" if ran else "unsigned execute refused"
        if written:
            text += f"; key written back ({len(written)} characters)"
            text += ", a client with it is served" if signed else ", yet a client with it is not"
        else:
            text += "; no key written back"
        out["4a"] = Outcome(text, not ran and bool(written) and bool(signed))
    kernel.stop()

    # b. no ports
    info = {k: v for k, v in full_connection_info().items() if k not in PORTS}
    kernel = lab.launch(kind, info)
    deadline = time.monotonic() + cfg.startup_timeout
    written = {}
    while time.monotonic() < deadline and kernel.alive():
        written = kernel.file_info()
        if all(written.get(p) for p in PORTS):
            break
        time.sleep(0.05)
    if all(written.get(p) for p in PORTS):
        peer = kernel.peer(info=written, iopub=False)
        probe = peer.request("shell", "kernel_info_request")
        served = peer.wait_reply(probe, cfg.startup_timeout) is not None
        text = "ports written back; " + ("a client connects" if served else "no client is served")
        out["4b"] = Outcome(text, served)
    elif not kernel.alive():
        out["4b"] = Outcome(f"refused ({kernel.exit_text()}): {_last_line(kernel)}", None)
    else:
        out["4b"] = Outcome("running; no ports written back: no client can connect", False)
    kernel.stop()

    # c. an empty key
    info = {**full_connection_info(), "key": ""}
    kernel = lab.launch(kind, info)
    if kernel.wait_listening(info["shell_port"], cfg.startup_timeout):
        ran = _unsigned_execute(kernel, lab.path("emptykey-ran"), cfg.reply_timeout, None)
        out["4c"] = Outcome(
            "starts; RAN UNSIGNED CODE" if ran else "starts; unsigned execute not run", not ran
        )
    else:
        kernel.wait_exit(10)
        lines = len([line for line in kernel.log().splitlines() if line.strip()])
        out["4c"] = Outcome(
            f"refused to start ({kernel.exit_text()}, {lines} line{'s' * (lines != 1)}): "
            f"{_last_line(kernel)}",
            lines == 1,
        )
    kernel.stop()
    return out


# -- 5. requests whose handler fails --------------------------------------------------------

FAILING = [
    (
        "5a",
        "history_request",
        {"hist_access_type": "tail", "n": "ten", "output": False, "raw": True},
    ),
    (
        "5b",
        "history_request",
        {"hist_access_type": "tail", "n": 2**63, "output": False, "raw": True},
    ),
    ("5c", "complete_request", {"code": "pri", "cursor_pos": 99}),
]


def _describe_reply(reply: Msg | None, timeout: float, kernel: Kernel) -> tuple[str, bool]:
    if reply is None:
        if not kernel.alive():
            return f"kernel died ({kernel.exit_text()})", False
        return f"no reply in {timeout:g} s", False
    status = reply.content.get("status")
    if status == "error":
        return f"error reply: {reply.content.get('ename')}", True
    extra = ""
    if "matches" in reply.content:
        extra = f" ({len(reply.content['matches'])} matches)"
    elif "history" in reply.content:
        extra = f" ({len(reply.content['history'])} entries)"
    return f"{status} reply{extra}", status in ("ok", "error")


def scenario_failing_handlers(lab: Lab, kind: KernelKind) -> Results:
    timeout = lab.cfg.reply_timeout
    kernel, peer = lab.start(kind)
    sent = [(key, peer.request("shell", t, content)) for key, t, content in FAILING]
    # All three are sent at once: a kernel that never answers costs one timeout, not three.
    peer.pump(timeout, lambda: all(peer.reply(m) is not None for _, m in sent))
    after = kernel.still_runs(peer, timeout)
    out: Results = {}
    for key, msg_id in sent:
        text, good = _describe_reply(peer.reply(msg_id), timeout, kernel)
        out[key] = Outcome(text + ("" if after is None else f"; then {after}"), good and not after)
    return out


# -- 6. JSON the reference decoder accepts --------------------------------------------------

TOKENS = ["NaN", "Infinity", "1e400"]


def scenario_json(lab: Lab, kind: KernelKind) -> Results:
    timeout = lab.cfg.reply_timeout
    kernel, peer = lab.start(kind)
    markers = {token: lab.path(f"json-{token}") for token in TOKENS}
    for token in TOKENS:
        body = (
            '{"code": ' + json.dumps(_marker_code(markers[token])) + ', "silent": false,'
            ' "store_history": false, "user_expressions": {}, "allow_stdin": false,'
            f' "extra": {token}}}'
        ).encode()
        msg_id, frames = peer.build("execute_request", body)
        peer.send("shell", frames, msg_id)
    sentinel = peer.request("shell", "kernel_info_request")
    peer.pump(timeout, lambda: peer.reply(sentinel) is not None)
    peer.pump(0.5)
    ran = [t for t in TOKENS if _runs(markers[t])]
    if not kernel.alive():
        return {"6": Outcome(f"kernel died ({kernel.exit_text()})", False)}
    dropped = [t for t in TOKENS if t not in ran]
    text = f"executed {len(ran)} of {len(TOKENS)}"
    if dropped:
        text += f" (dropped: {', '.join(dropped)})"
    return {"6": Outcome(text, not dropped)}


# -- 7. a signature scheme that cannot sign -------------------------------------------------


def scenario_shake(lab: Lab, kind: KernelKind) -> Results:
    info = {**full_connection_info(), "signature_scheme": "hmac-shake_128"}
    kernel = lab.launch(kind, info)
    listening = kernel.wait_listening(info["shell_port"], 20.0)
    if listening:
        # It serves: a message signed any way it can be (sha256 with the key).
        peer = kernel.peer(info={**info, "signature_scheme": "hmac-sha256"}, iopub=False)
        peer.request("shell", "kernel_info_request")
        peer.pump(3.0)
    status = kernel.wait_exit(5.0)
    log = kernel.log()
    lines = [line for line in log.splitlines() if line.strip()]
    traceback = "Traceback" in log
    if status is None:
        what = "runs" + (" (tracebacks in its log)" if traceback else "")
        return {"7": Outcome(what + f"; {len(lines)} log lines", False)}
    when = "after binding" if listening else "at start"
    if traceback:
        text = f"traceback {when} ({kernel.exit_text()}, {len(lines)} log lines)"
        return {"7": Outcome(text, False)}
    return {
        "7": Outcome(f"one-line error {when} ({kernel.exit_text()}): {_last_line(kernel)}", True)
    }


# -- 8 and 9. kernels started by jupyter_client's KernelManager ------------------------------


def _write_kernelspecs(root: Path) -> None:
    for kind in KERNELS.values():
        spec = root / "kernels" / f"hostile-{kind.name}"
        spec.mkdir(parents=True, exist_ok=True)
        (spec / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [sys.executable, *kind.argv],
                    "display_name": kind.label,
                    "language": "python",
                    "metadata": {"supported_encryption": ["curve"]},
                }
            )
        )


@contextlib.contextmanager
def managed_kernel(lab: Lab, kind: KernelKind, **kw: Any) -> Iterator[tuple[KernelManager, Any]]:
    km = lab.reaper.manage(KernelManager(kernel_name=f"hostile-{kind.name}", **kw))
    kc = None
    # The kernel's output goes to a log file, which a restart uses again.
    log = open(lab.path(f"{kind.name}-managed.log"), "wb")
    try:
        km.start_kernel(stdout=log, stderr=subprocess.STDOUT)
        kc = km.client()
        kc.start_channels()
        yield km, kc
    finally:
        if kc is not None:
            kc.stop_channels()
        with contextlib.suppress(Exception):
            if km.has_kernel:
                km.shutdown_kernel(now=False)
        lab.reaper.kill_manager(km)
        log.close()


def _shell_reply(kc: Any, msg_id: str, timeout: float) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # queue.Empty
            reply = kc.get_shell_msg(timeout=max(0.05, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply
    return None


def scenario_replay(lab: Lab, kind: KernelKind) -> Results:
    timeout = lab.cfg.reply_timeout
    runs = lab.path("replay-runs")
    with managed_kernel(lab, kind) as (km, kc):
        kc.wait_for_ready(timeout=lab.cfg.startup_timeout)
        msg = kc.session.msg(
            "execute_request",
            {"code": _marker_code(runs, "a"), "silent": False, "store_history": False},
        )
        frames = kc.session.serialize(msg)
        kc.shell_channel.socket.send_multipart(frames)
        if _shell_reply(kc, msg["header"]["msg_id"], timeout) is None:
            return {"8": Outcome("the first execute was not answered", False)}
        km.restart_kernel(now=False)
        kc.wait_for_ready(timeout=lab.cfg.startup_timeout)
        kc.shell_channel.socket.send_multipart(frames)
        sync = kc.execute("pass")
        answered = _shell_reply(kc, sync, timeout) is not None
        time.sleep(0.3)
        count = _runs(runs)
        if count == 1:
            text, good = "ran once: the replay was refused", True
        else:
            text, good = f"RAN {count} TIMES", count == 1
        if not answered:
            text += f" (no reply to the next request in {timeout:g} s)"
            good = False
        return {"8": Outcome(text, good, {"runs": count})}


_HANDSHAKE_ENDS = {
    zmq.EVENT_HANDSHAKE_SUCCEEDED,
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
    zmq.EVENT_HANDSHAKE_FAILED_AUTH,
}


def _plaintext_execute(
    lab: Lab, kc: Any, info: dict[str, Any], marker: Path
) -> tuple[bool | None, bool]:
    """Send a correctly signed execute from a socket without CurveZMQ keys: whether
    ZeroMQ's handshake succeeded (None: no verdict in time), whether a reply came."""
    sock = lab.ctx.socket(zmq.DEALER)
    sock.linger = 0
    monitor = sock.get_monitor_socket()
    handshake: bool | None = None
    replied = False
    try:
        sock.connect(f"tcp://{info['ip']}:{info['shell_port']}")
        msg = kc.session.msg(
            "execute_request",
            {"code": _marker_code(marker), "silent": False, "store_history": False},
        )
        sock.send_multipart(kc.session.serialize(msg))
        deadline = time.monotonic() + lab.cfg.reply_timeout
        while time.monotonic() < deadline and not replied and not _runs(marker):
            while handshake is None and monitor.poll(0):
                event = recv_monitor_message(monitor)["event"]
                if event in _HANDSHAKE_ENDS:
                    handshake = event == zmq.EVENT_HANDSHAKE_SUCCEEDED
            if handshake is False:
                break
            replied = bool(sock.poll(100))
        time.sleep(0.2)  # code that runs anyway writes its marker by now
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)
    return handshake, replied


def scenario_curve(lab: Lab, kind: KernelKind) -> Results:
    cfg = lab.cfg
    out: Results = {}
    with managed_kernel(lab, kind, transport_encryption="required") as (km, kc):
        info = km.get_connection_info()
        if not info.get("curve_publickey"):
            return {"9a": Outcome("no curve keys provisioned", False)}
        try:
            kc.wait_for_ready(timeout=30)
            msg_id = kc.execute("1+1")
            reply = _shell_reply(kc, msg_id, cfg.reply_timeout)
            ok = reply is not None and reply["content"]["status"] == "ok"
            out["9a"] = Outcome("execute works (encrypted)" if ok else "execute failed", ok)
        except RuntimeError:
            alive = km.is_alive()
            out["9a"] = Outcome(
                f"no kernel_info reply in 30 s ({'alive' if alive else 'kernel exited'})", False
            )
        marker = lab.path("plaintext-ran")
        handshake, replied = _plaintext_execute(lab, kc, info, marker)
        ran = _runs(marker) > 0
        if ran:
            out["9b"] = Outcome("RAN CODE from a plaintext client", False)
        elif handshake is False:
            out["9b"] = Outcome("refused at the ZeroMQ handshake, code not run", True)
        else:
            what = "answered, code not run" if replied else "no reply, code not run"
            out["9b"] = Outcome(what, not replied)
    return out


# -- 10. fuzzing ------------------------------------------------------------------------------


def load_fuzz() -> tuple[ModuleType | None, str | None]:
    """tests/test_fuzz.py (its generator), or why it cannot be imported.

    Importing it runs tests/conftest.py, which sets environment variables for a test
    session and makes a temporary directory: both are undone here.
    """
    saved = dict(os.environ)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        import tests.test_fuzz as fuzz

        for name in ("make_case", "rng_for", "GROUPS", "DEFAULT_SEED"):
            if not hasattr(fuzz, name):
                return None, f"tests/test_fuzz.py has no {name}"
        return fuzz, None
    except Exception as e:
        return None, f"{type(e).__name__}: {e}"
    finally:
        os.environ.clear()
        os.environ.update(saved)
        conftest = sys.modules.get("tests.conftest")
        tmp = getattr(conftest, "_tmp", None)
        if tmp is not None and Path(tmp).name.startswith("akernel-tests-"):
            shutil.rmtree(tmp, ignore_errors=True)


FUZZ: tuple[ModuleType | None, str | None] = (None, "not loaded")


def _fuzz_cases(fuzz: ModuleType, cfg: Config, peer: Peer, info: dict) -> list[Any]:
    """The same cases for every kernel (only the signatures differ)."""
    seed = fuzz.DEFAULT_SEED if cfg.fuzz_seed is None else cfg.fuzz_seed
    oracle = Session(info["key"].encode(), info["signature_scheme"])
    total_share = sum(g[2] for g in fuzz.GROUPS)
    cases = []
    for channel, group, share in fuzz.GROUPS:
        rng: random.Random = fuzz.rng_for(seed, "hostile", channel, group)
        count = max(1, round(cfg.fuzz_cases * share / total_share))
        for n in range(count):
            cases.append(fuzz.make_case(rng, n, channel, group, peer.sign, oracle))
    return cases


def _fuzz_health(kernel: Kernel, peer: Peer, cfg: Config) -> tuple[str | None, float | None]:
    """After a batch: a kernel_info on each channel. Each channel handles its requests
    in order, so a request without a reply once the probe is answered got none.

    Returns what is wrong (None, "died", "shell silent", ...) and, for a kernel that
    answered only after ``reply_timeout``, after how long.
    """
    probes = {ch: peer.request(ch, "kernel_info_request") for ch in ("shell", "control")}

    def answered() -> bool:
        return all(peer.reply(m) is not None for m in probes.values())

    start = time.perf_counter()
    peer.pump(cfg.reply_timeout, answered)
    if kernel.alive() and answered():
        return None, None
    # Slow, or stuck for good? Give it longer before replacing it.
    peer.pump(cfg.stuck_timeout, answered)
    if not kernel.alive():
        return "died", None
    silent = " and ".join(ch for ch, m in probes.items() if peer.reply(m) is None)
    if silent:
        return f"{silent} silent", None
    return None, time.perf_counter() - start


def scenario_fuzz(lab: Lab, kind: KernelKind) -> Results:
    fuzz, why = FUZZ
    if fuzz is None:
        return {k: Outcome(f"not run: {why}", None) for k in ("10a", "10b", "10c")}
    cfg = lab.cfg
    kernel, peer = lab.start(kind)
    cases = _fuzz_cases(fuzz, cfg, peer, kernel.info)
    expected = answered = deaths = stuck = slow = unreadable = 0
    incidents: list[str] = []  # what went wrong, with the case to replay it
    briefly: list[str] = []
    seed = fuzz.DEFAULT_SEED if cfg.fuzz_seed is None else cfg.fuzz_seed
    unanswered: Counter[str] = Counter()
    t0 = time.perf_counter()
    for start in range(0, len(cases), cfg.fuzz_batch):
        batch = cases[start : start + cfg.fuzz_batch]
        # A batch goes to one channel at a time, in order.
        for channel in dict.fromkeys(c.channel for c in batch):
            part = [c for c in batch if c.channel == channel]
            peer.forget()
            for case in part:
                peer.send(channel, case.frames)
            want = [c for c in part if c.wants_reply]
            accepted = [c for c in part if c.accepted]
            peer.pump(
                60.0,
                lambda want=want, accepted=accepted, peer=peer: (
                    all(peer.reply(c.msg_id) for c in want)
                    and all(peer.idle(c.msg_id) for c in accepted)
                ),
                quiet=cfg.fuzz_quiet,
            )
            what, late = _fuzz_health(kernel, peer, cfg)
            if late is not None:
                slow += 1
                briefly.append(f"answered after {late:.0f} s, after {channel} {part[0].msg_type}")
            peer.pump(0.1)
            for case in want:
                expected += 1
                if peer.reply(case.msg_id) is not None:
                    answered += 1
                else:
                    unanswered[f"{case.channel} {case.msg_type}"] += 1
            if what is not None:
                stuck += what != "died"
                deaths += what == "died"
                first = next((c for c in want if peer.reply(c.msg_id) is None), None)
                briefly.append(f"{what} after {channel} {part[0].msg_type}")
                incidents.append(
                    f"{what} after {channel} cases {part[0].number}-{part[-1].number} of"
                    f" {part[0].msg_type}...; first unanswered: "
                    + (first.describe(seed) if first else "none")
                )
                _progress(f"  [{kind.name}] fuzz: {incidents[-1][:300]}")
                unreadable += peer.unreadable
                kernel.stop()
                kernel, peer = lab.start(kind)
                # The next cases are signed with the new kernel's key.
                for case in cases[start:]:
                    case.frames[1] = peer.sign(case.frames[2:6])
    elapsed = time.perf_counter() - t0
    unreadable += peer.unreadable
    top = ", ".join(f"{name} {n}" for name, n in unanswered.most_common(4))
    text = f"{answered:,} of {expected:,} answered"
    if unanswered:
        text += f"; unanswered: {top}"
    if unreadable:
        text += f"; {unreadable} messages from the kernel unreadable by jupyter_client's decoder"
    out = {
        "10a": Outcome(
            text,
            answered == expected and not unreadable,
            {"unanswered": dict(unanswered), "unreadable": unreadable},
        )
    }
    out["10b"] = Outcome(
        f"{deaths} deaths, {stuck} stuck, {slow} slow"
        + (f" ({'; '.join(briefly)})" if briefly else "")
        + f"; {len(cases):,} requests in {elapsed:.0f} s",
        deaths == 0 and stuck == 0,
        {
            "deaths": deaths,
            "stuck": stuck,
            "slow": slow,
            "incidents": incidents,
            "requests": len(cases),
            "seconds": elapsed,
        },
    )
    after = kernel.still_runs(peer, cfg.reply_timeout)
    out["10c"] = Outcome("yes" if after is None else f"no: {after}", after is None)
    return out


# -- the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    number: str
    run: Callable[[Lab, KernelKind], Results]
    rows: tuple[tuple[str, str], ...]  # (key, what the row shows)


SCENARIOS = [
    Scenario(
        "1",
        scenario_output,
        (
            ("1a", "`print('ok\\udcff')`; then `1+1`"),
            ("1b", "the same from a thread; then `1+1`"),
            ("1c", "`display({'text/plain': 'ok\\udcff'}, raw=True)`; then `1+1`"),
            ("1d", "`raise ValueError('ok\\udcff')`; then `1+1`"),
            ("1e", "`os.write(1, b'ok\\xff')`; then `1+1`"),
            ("1f", "after 1a to 1e, `os.system('seq 100000')`"),
        ),
    ),
    Scenario(
        "2",
        scenario_deep,
        (
            ("2a", "signed execute_request nested 5,000 deep (22-digit number), shell"),
            ("2b", "the same nesting in a kernel_info_request on control"),
        ),
    ),
    Scenario(
        "3",
        scenario_stall,
        (
            ("3a", "stalled IOPub subscriber; 6,000 displays of 4 KB: healthy client"),
            ("3b", "control kernel_info latency during that cell"),
            ("3c", "then 200 `pass` round trips (reply + idle)"),
            ("3d", "print 300 MB (1 MiB chunks), stalled subscriber: kernel RSS"),
        ),
    ),
    Scenario(
        "4",
        scenario_connection_files,
        (
            ("4a", "connection file without `key`: unsigned execute"),
            ("4b", "connection file without ports"),
            ("4c", 'connection file with `"key": ""`'),
        ),
    ),
    Scenario(
        "5",
        scenario_failing_handlers,
        (
            ("5a", '`history_request` with `n: "ten"`'),
            ("5b", "`history_request` with `n: 2**63`"),
            ("5c", "`complete_request` with `cursor_pos: 99` (code `pri`)"),
        ),
    ),
    Scenario("6", scenario_json, (("6", "execute_request with `NaN`, `Infinity`, `1e400`"),)),
    Scenario("7", scenario_shake, (("7", "`signature_scheme: hmac-shake_128`"),)),
    Scenario(
        "8", scenario_replay, (("8", "signed execute replayed after a KernelManager restart"),)
    ),
    Scenario(
        "9",
        scenario_curve,
        (
            ("9a", 'CurveZMQ (`transport_encryption="required"`): execute'),
            ("9b", "CurveZMQ kernel, plaintext client with the HMAC key"),
        ),
    ),
    Scenario(
        "10",
        scenario_fuzz,
        (
            ("10a", "fuzz: requests a handler should answer"),
            ("10b", "fuzz: deaths; stuck (silent 10 + 30 s); slow (silent over 10 s)"),
            ("10c", "fuzz: `1+1` runs at the end"),
        ),
    ),
]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(results: dict[str, Results], kinds: list[KernelKind], cfg: Config) -> str:
    head = ["#", "scenario", *(k.label for k in kinds)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scenario in SCENARIOS:
        if not any(scenario.rows[0][0] in results.get(k.name, {}) for k in kinds):
            continue
        for key, label in scenario.rows:
            if key == "3d":
                label = label.replace("300", str(cfg.print_mib))
            if key.startswith("10") and key == "10a":
                label += f" ({cfg.fuzz_cases:,} requests)"
            cells = [results.get(k.name, {}).get(key, Outcome("not run")).text for k in kinds]
            lines.append("| " + " | ".join(_cell(c) for c in [key, label, *cells]) + " |")
    return "\n".join(lines)


def _fuzz_generator_digest() -> str | None:
    """What identifies the fuzzed requests: tests/test_fuzz.py's digest (it changes)."""
    with contextlib.suppress(OSError):
        data = (ROOT / "tests" / "test_fuzz.py").read_bytes()
        return "tests/test_fuzz.py (sha256 " + hashlib.sha256(data).hexdigest()[:12] + ")"
    return None


def environment() -> dict[str, Any]:
    import importlib.metadata as md

    def version(dist: str) -> str | None:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return {
        "akernel": version("akernel"),
        "akernel_commit": commit or None,
        "ipykernel": version("ipykernel"),
        "jupyter_client": version("jupyter_client"),
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "python": platform.python_version(),
        "fuzz_generator": _fuzz_generator_digest(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer fuzz cases, a smaller print")
    parser.add_argument(
        "--kernels",
        default=",".join(KERNELS),
        help=f"comma-separated, from {', '.join(KERNELS)} (default: all)",
    )
    parser.add_argument("--only", help="comma-separated scenario numbers (default: all)")
    parser.add_argument("--json", metavar="PATH", help="also write the raw results to PATH")
    parser.add_argument("--fuzz-cases", type=int, help="fuzzed requests per kernel (1000)")
    parser.add_argument("--fuzz-seed", type=int, help="fuzzing seed (tests/test_fuzz.py's)")
    parser.add_argument("--reply-timeout", type=float, help="seconds before 'no reply' (10)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.kernels.split(",") if n.strip()]
    unknown = [n for n in names if n not in KERNELS]
    if unknown or not names:
        parser.error(f"unknown kernel {unknown}; choose from {', '.join(KERNELS)}")
    args.kinds = [KERNELS[n] for n in dict.fromkeys(names)]
    numbers = {s.number for s in SCENARIOS}
    only = [n.strip() for n in (args.only or ",".join(numbers)).split(",") if n.strip()]
    if not set(only) <= numbers:
        parser.error(f"unknown scenario in --only: {sorted(set(only) - numbers)}")
    args.scenarios = [s for s in SCENARIOS if s.number in only]
    return args


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    global FUZZ
    args = parse_args(argv)
    cfg = Config.quick() if args.quick else Config()
    overrides = {
        "fuzz_cases": args.fuzz_cases,
        "fuzz_seed": args.fuzz_seed,
        "reply_timeout": args.reply_timeout,
    }
    cfg = Config(**{**cfg.__dict__, **{k: v for k, v in overrides.items() if v is not None}})
    if any(s.number == "10" for s in args.scenarios):
        FUZZ = load_fuzz()
    env = environment()
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGHUP, _interrupted)
    reaper = Reaper()
    ctx = zmq.Context()
    results: dict[str, Results] = {k.name: {} for k in args.kinds}
    errors: list[str] = []
    t_start = time.perf_counter()
    saved_env = dict(os.environ)
    tmp = tempfile.mkdtemp(prefix="akernel-hostile-")
    try:
        workdir = Path(tmp)
        _write_kernelspecs(workdir / "jupyter")
        os.environ["JUPYTER_PATH"] = os.pathsep.join(
            [str(workdir / "jupyter"), *filter(None, [os.environ.get("JUPYTER_PATH")])]
        )
        os.environ["IPYTHONDIR"] = str(workdir / "ipython")
        os.environ["JUPYTER_RUNTIME_DIR"] = str(workdir / "runtime")
        lab = Lab(ctx, cfg, workdir, reaper)
        for scenario in args.scenarios:
            for kind in args.kinds:
                t0 = time.perf_counter()
                try:
                    got = scenario.run(lab, kind)
                except Exception as e:
                    got = {}
                    errors.append(f"scenario {scenario.number}, {kind.name}: {e!r}")
                    _progress(f"[{kind.name}] scenario {scenario.number}: harness error {e!r}")
                except BaseException:
                    reaper.kill_all()  # interrupted: no polite shutdowns
                    raise
                finally:
                    lab.stop_all()
                for key, _ in scenario.rows:
                    got.setdefault(key, Outcome("harness error (see below)", None))
                results[kind.name].update(got)
                _progress(
                    f"[{kind.name}] scenario {scenario.number} ({time.perf_counter() - t0:.1f} s): "
                    + "; ".join(f"{k} {o.text}" for k, o in got.items())
                )
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
        reaper.kill_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        ctx.destroy(linger=0)
        os.environ.clear()
        os.environ.update(saved_env)
        shutil.rmtree(tmp, ignore_errors=True)
    env["duration_s"] = round(time.perf_counter() - t_start, 1)

    print(
        f"akernel {env['akernel']} (commit {env['akernel_commit']}), ipykernel {env['ipykernel']},"
        f" jupyter_client {env['jupyter_client']}, pyzmq {env['pyzmq']} (libzmq"
        f" {env['libzmq']}), Python {env['python']}; {env['cpus']} CPUs"
        f"{'; --quick' if args.quick else ''}"
    )
    if FUZZ[0] is not None:
        seed = FUZZ[0].DEFAULT_SEED if cfg.fuzz_seed is None else cfg.fuzz_seed
        print(f"fuzzing: the generator of {env['fuzz_generator']}, seed {seed}")
    print()
    print(render_table(results, args.kinds, cfg))
    print(f"\n(total {env['duration_s']} s; no reply = none within {cfg.reply_timeout:g} s)")
    for error in errors:
        print(f"harness error: {error}")
    failing = [
        f"{kind.label} {key}: {outcome.text}"
        for kind in args.kinds
        if kind.name != "ipykernel"
        for key, outcome in results[kind.name].items()
        if outcome.ok is False
    ]
    if failing:
        print("\nakernel cells that are not the expected outcome:")
        print("\n".join(f"- {line}" for line in failing))
    if args.json:
        data = {
            "environment": env,
            "config": cfg.__dict__,
            "errors": errors,
            "results": {
                name: {k: {"text": o.text, "ok": o.ok, **o.data} for k, o in cells.items()}
                for name, cells in results.items()
            },
        }
        Path(args.json).write_text(json.dumps(data, indent=1, default=str) + "\n")
        print(f"\nraw results written to {args.json}")
    return 1 if failing or errors else 0


if __name__ == "__main__":
    sys.exit(main())
