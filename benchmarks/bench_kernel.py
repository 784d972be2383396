"""Benchmark akernel (asyncio and trio) against ipykernel, side by side, in one run.

Run it with ``nox -s bench`` or directly::

    python benchmarks/bench_kernel.py [--quick] [--kernels akernel,akernel-trio,ipykernel]
                                      [--json PATH] [--big-output [--big-output-mib MIB]]
                                      [--only core|debugger|subshells|journal|gui]

Each kernel is started as its own process, with the command its kernelspec
uses (``python -m akernel launch -f FILE [--backend trio]``, ``python -m
ipykernel_launcher -f FILE``) run by this interpreter, from a connection file
this script writes; it gets a private IPYTHONDIR. The kernels are benchmarked
one after the other, never concurrently, so that they do not compete for the
CPU. The client is deliberately lean so that it does not dominate the figures:
plain blocking pyzmq sockets, requests serialized with
:class:`akernel.wire.Session` (pre-serialized before timed loops), replies
decoded by a minimal decoder that checks the HMAC signature and parses only
what it needs. The table shows the client's own CPU time per round trip.

Measures (medians, after a warm-up):

1. execute round trip for ``pass``: until both the execute_reply and the idle
   status for the request have arrived;
2. pipelined throughput: N execute requests sent back to back, until all
   replies and all idle statuses have arrived;
3. control ``kernel_info_request`` latency while the shell sleeps in a cell;
4. shell ``kernel_info_request`` latency while a cell awaits ``anyio.sleep``
   (requests back to back; the cells use anyio, so they run on every kernel);
5. comm echo while a cell awaits: the cell opens a comm (``comm.create_comm``)
   that sends back each comm_msg's data, then awaits an ``anyio.Event``; from
   sending a comm_msg on shell to its echo on iopub, back to back;
6. interrupt latency of ``while True: pass``, by ``interrupt_request`` on the
   control channel (message mode) and by SIGINT (signal mode), until the
   execute_reply (``KeyboardInterrupt``) arrives;
7. process start to the first ``kernel_info_reply``;
8. printing 200k lines: time to idle, lines/s and MB/s, completeness, number
   of stream messages;
9. live output of a slow cell: it prints ``i time.time()`` every 0.3 s (10
   lines), with ``flush=True`` and without, and with a busy loop (holding the
   GIL) instead of ``time.sleep`` between prints; each line's delay is its
   arrival time at the client minus the kernel's timestamp in it (same
   machine, same clock): median and max, and the number of stream messages;
10. the kernel's resident set size (VmRSS) after all of the above;
11. only with ``--big-output``, on a fresh kernel: a cell printing 1 GiB in
    1 KiB lines while the client drains iopub as fast as it can, counting and
    checking the text without keeping it: time to idle, MB/s, bytes received
    (exactly 1 GiB, in order), stream messages, the CPU time of kernel and
    client, and the kernel's RSS before the cell and at its peak during it
    (VmHWM after resetting it through ``/proc/PID/clear_refs``, and VmRSS
    polled every 10 ms). The client's SUB socket keeps ZeroMQ's default
    receive high-water mark here, so a kernel that outruns it must hold or
    drop the excess itself.
12. JupyterLab's debugger (``benchmarks/bench_debugger.py``), on fresh
    kernels: execute round trips (median and p90) of ``pass`` and of
    ``sum(i * i for i in range(20000))`` (many Python-level calls, where
    tracing costs show) with the debugger not started, then started as
    JupyterLab starts it (initialize, attach, configurationDone; no
    breakpoints), and their ratio, the cost of tracing, then once more after
    ``disconnect`` switched the debugger off; the time to start the
    debugger, from ``initialize`` sent to ``attach`` answered, the first start
    in each process. A kernel whose debugger fails shows ``failed: <reason>``
    in these rows.
13. kernel subshells (JEP 91, ``benchmarks/bench_subshells.py``), on a fresh
    kernel: execute round trips (median and p90) of ``pass`` on the parent
    shell before any subshell exists, then after one was created (a kernel
    may then route every shell request through another thread); in the
    subshell while the parent shell is idle, and while the parent shell runs
    ``time.sleep`` (the subshell's requests go through a second client, whose
    requests carry the ``subshell_id`` in their header); the time from
    ``create_subshell_request`` to its reply, the first one in the process
    and then for create-and-delete cycles, and from ``delete_subshell_request``
    to its reply. ``list_subshell_request`` must list exactly the live
    subshells, and an execute_request for a deleted subshell must get an
    error reply. A kernel whose subshells fail shows ``failed: <reason>`` in
    these rows.
14. akernel's crash journal (``benchmarks/bench_journal.py``), on pairs of
    fresh kernels, one with the journal on (the default) and one with it off
    (``--Kernel.crash_journal=False``), both running: execute round trips
    (median and p90) of ``pass``, timed in interleaved rounds in ABBA order
    so that machine noise does not favour either, and their ratio, the
    journal's cost; the journal file's size after the measured cells. The
    journal must hold every cell sent (started, finished ok); the kernel with
    it off must write none. ipykernel keeps no journal: the "off" rows show
    its plain round trip, on fresh kernels measured the same way, for scale.

15. GUI event loops (``benchmarks/bench_gui.py``), on a fresh kernel, with a
    display (``$DISPLAY``, or an Xvfb started for it): ``pass`` round trips
    with no GUI and with ``%gui qt`` and a Qt window open, in interleaved
    rounds; interrupts with Qt on of ``while True: pass`` and of an ``await
    anyio.sleep`` cell (also with no GUI), by interrupt_request and by SIGINT.

``--only debugger``, ``--only subshells``, ``--only journal`` and ``--only gui``
run only those measures, ``--only core`` all the others.

Besides timing, the harness checks what it receives: every reply and idle
status must arrive, replies in order, printed lines and bytes complete and in
order, an interrupted cell must end in ``KeyboardInterrupt``, and no request
may be answered ``aborted`` when it was sent after the previous cell's reply
and idle (such requests are counted and sent again). A request that ipykernel
answers only once the awaiting cell has ended is shown as ``n/a``, which is
not a problem; for akernel it is a failure.

The table goes to stdout, followed by a JSON summary (or the JSON goes to the
file given with ``--json``). Progress goes to stderr. The exit status is 1 if
any kernel had a problem (a failed measure, a timeout, lost, wrong or
unexpectedly aborted messages).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hmac
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
import zmq
from bench_debugger import (  # benchmarks/, the script's directory
    CELL_TITLES,
    DEBUGGER_CELLS,
    REQUEST_TIMEOUT,
    DapRequests,
    DebuggerError,
    start_debugger,
    stop_debugger,
)
from bench_gui import NO_RATIO as GUI_NO_RATIO
from bench_gui import ROWS as GUI_ROWS
from bench_gui import GuiError, GuiRun, display
from bench_journal import JOURNAL_OFF_FLAG, JournalError, JournalRun, cells_per_kernel
from bench_journal import STATES as JOURNAL_STATES
from bench_subshells import (
    CHUNK,
    PARENT_SLEEP,
    SubshellError,
    SubshellRequests,
    check_unknown_subshell,
    measure_create_delete,
    measure_during_parent_sleep,
)
from bench_subshells import REQUEST_TIMEOUT as SUBSHELL_REQUEST_TIMEOUT

from akernel.wire import DELIMITER, Session

# -- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelKind:
    """A kernel to benchmark: a short name, a label and its launch command."""

    name: str
    label: str
    argv: tuple[str, ...]
    kernelspec: str = "python3"  # the kernelspec's name, which JupyterLab's debugger sends
    journal_off: tuple[str, ...] | None = None  # flags that turn the crash journal off; None: none


KERNELS: dict[str, KernelKind] = {
    "akernel": KernelKind(
        "akernel",
        "akernel (asyncio)",
        ("-m", "akernel", "launch", "-f", "{connection_file}", "--backend", "asyncio"),
        "akernel",
        (JOURNAL_OFF_FLAG,),
    ),
    "akernel-trio": KernelKind(
        "akernel-trio",
        "akernel (trio)",
        ("-m", "akernel", "launch", "-f", "{connection_file}", "--backend", "trio"),
        "akernel",
        (JOURNAL_OFF_FLAG,),
    ),
    "ipykernel": KernelKind(
        "ipykernel", "ipykernel", ("-m", "ipykernel_launcher", "-f", "{connection_file}")
    ),
}
REFERENCE = "ipykernel"
# The parts of the benchmark: the debugger's measures, the subshells', the crash
# journal's, and all the others.
SECTIONS = ("core", "debugger", "subshells", "journal", "gui")


@dataclass(frozen=True)
class Config:
    """How many iterations each measure does."""

    roundtrip_n: int = 1000
    roundtrip_warmup: int = 100
    pipeline_n: int = 2000
    pipeline_reps: int = 3
    control_rounds: int = 3
    control_samples: int = 15
    await_rounds: int = 2
    await_samples: int = 20
    comm_echo_n: int = 50
    interrupt_reps: int = 5
    startup_runs: int = 5
    print_lines: int = 200_000
    print_reps: int = 3
    live_lines: int = 10
    live_gap: float = 0.3
    big_output_mib: int = 0  # 0: the big-output measure is not run
    debugger_pass_n: int = 500
    debugger_work_n: int = 150
    debugger_warmup: int = 30
    debugger_start_runs: int = 4  # fresh kernels whose debugger start is timed
    subshell_n: int = 500  # round trips timed in each subshell measure
    subshell_warmup: int = 50
    subshell_cycles: int = 20  # subshells created and deleted, one after the other
    journal_n: int = 4000  # round trips timed with the journal on, and as many with it off
    journal_warmup: int = 100  # untimed round trips on each fresh kernel
    journal_rounds: int = 10  # interleaved rounds on each pair of kernels
    journal_pairs: int = 4  # pairs of fresh kernels (journal on, journal off)
    timeout: float = 60.0
    sections: tuple[str, ...] = SECTIONS

    @classmethod
    def quick(cls) -> Config:
        """Fewer iterations, for a fast check of the harness."""
        return cls(
            roundtrip_n=200,
            roundtrip_warmup=30,
            pipeline_n=500,
            pipeline_reps=1,
            control_rounds=1,
            control_samples=10,
            await_rounds=1,
            await_samples=10,
            comm_echo_n=10,
            interrupt_reps=2,
            startup_runs=2,
            print_reps=1,
            live_lines=5,
            live_gap=0.2,
            debugger_pass_n=100,
            debugger_work_n=30,
            debugger_warmup=10,
            debugger_start_runs=2,
            subshell_n=100,
            subshell_warmup=20,
            subshell_cycles=5,
            journal_n=400,
            journal_warmup=30,
            journal_rounds=4,
            journal_pairs=2,
        )


EXECUTE_CONTENT: dict[str, Any] = {
    "silent": False,
    "store_history": True,
    "user_expressions": {},
    "allow_stdin": False,
    "stop_on_error": True,
}


# A request the kernel answered 'aborted' when it should not have is sent again,
# after a pause: resending at once can keep a racy abort window open indefinitely.
MAX_RESENDS = 10
ABORT_BACKOFF = 0.05


class BenchError(Exception):
    """The kernel misbehaved: a timeout, a lost, malformed or unexpected message."""


class Unsupported(BenchError):
    """The kernel cannot do what a measure needs; it was left idle and ready."""


# -- the lean client ----------------------------------------------------------------------


@dataclass(slots=True)
class Msg:
    """What the benchmark needs of a received message."""

    msg_type: str
    parent_id: str | None
    content: dict[str, Any]


def recv_frames(sock: zmq.Socket) -> list[bytes]:
    """Receive one multipart message as bytes frames (blocking, honouring RCVTIMEO).

    Leaner than ``Socket.recv_multipart``, which asks the socket for RCVMORE
    (through Python enums) after every frame: a ``Frame`` knows it itself.
    """
    recv = sock.recv
    frame = recv(copy=False)
    frames = [frame]
    while frame.more:
        frame = recv(copy=False)
        frames.append(frame)
    return [f.bytes for f in frames]


class Codec:
    """The client's message codec: Session to build requests, a minimal decoder for the rest."""

    def __init__(self, key: str, signature_scheme: str = "hmac-sha256") -> None:
        self.session = Session(key.encode(), signature_scheme, username="bench")
        self._hmac = hmac.new(key.encode(), digestmod=signature_scheme.partition("-")[2])

    def build(
        self, msg_type: str, content: dict[str, Any], subshell_id: str | None = None
    ) -> tuple[str, list[bytes]]:
        """A new request's msg_id and frames, ready to send from a DEALER.

        With ``subshell_id``, the header says so: a shell request for that subshell.
        """
        header = None
        if subshell_id is not None:
            header = {**self.session.new_header(msg_type), "subshell_id": subshell_id}
        frames = self.session.serialize(msg_type, content, header=header)
        return orjson.loads(frames[2])["msg_id"], frames

    def decode(self, frames: list[bytes]) -> Msg:
        """Verify the signature and parse header, parent header and content."""
        try:
            i = frames.index(DELIMITER)
            signature = frames[i + 1]
            parts = frames[i + 2 : i + 6]
            h = self._hmac.copy()
            for part in parts:
                h.update(part)
            if not hmac.compare_digest(h.hexdigest().encode(), signature):
                raise BenchError("message with a bad signature")
            header = orjson.loads(parts[0])
            parent = orjson.loads(parts[1])
            return Msg(header["msg_type"], parent.get("msg_id"), orjson.loads(parts[3]))
        except (ValueError, IndexError, KeyError, TypeError, AttributeError) as e:
            raise BenchError(f"malformed message ({e!r}): {frames[:8]!r}") from None


class Client:
    """A minimal blocking Jupyter client: shell and control DEALERs, an iopub SUB."""

    def __init__(
        self,
        ctx: zmq.Context,
        info: dict[str, Any],
        *,
        reconnect_ivl_ms: int | None = None,
        subscribe: bool = True,
        iopub_rcvhwm: int | None = 0,
    ) -> None:
        self.codec = Codec(info["key"], info["signature_scheme"])
        self.build = self.codec.build
        self.decode = self.codec.decode
        self._timeouts: dict[zmq.Socket, int] = {}
        self.recent: list[str] = []  # the last iopub messages seen, for error reports
        self.unexpected_aborts = 0  # requests aborted although sent after an idle
        url = f"{info['transport']}://{info['ip']}:"

        def make(kind: int, port: int, rcvhwm: int | None = 0) -> zmq.Socket:
            sock = ctx.socket(kind)
            sock.linger = 0
            sock.sndhwm = 0
            if rcvhwm is not None:  # None: ZeroMQ's default (1000 messages)
                sock.rcvhwm = rcvhwm
            if reconnect_ivl_ms is not None:
                sock.setsockopt(zmq.RECONNECT_IVL, reconnect_ivl_ms)
            sock.connect(url + str(port))
            return sock

        self.shell = make(zmq.DEALER, info["shell_port"])
        self.control = make(zmq.DEALER, info["control_port"])
        self.iopub: zmq.Socket | None = None
        if subscribe:
            self.iopub = make(zmq.SUB, info["iopub_port"], iopub_rcvhwm)
            self.iopub.setsockopt(zmq.SUBSCRIBE, b"")

    def close(self) -> None:
        """Close the sockets without lingering."""
        for sock in (self.shell, self.control, self.iopub):
            if sock is not None:
                sock.close(linger=0)

    # -- sending and receiving --

    def send(
        self,
        sock: zmq.Socket,
        msg_type: str,
        content: dict[str, Any],
        subshell_id: str | None = None,
    ) -> str:
        """Build and send a request (for a subshell: ``subshell_id``); return its msg_id."""
        msg_id, frames = self.build(msg_type, content, subshell_id)
        sock.send_multipart(frames)
        return msg_id

    def set_timeout(self, sock: zmq.Socket, timeout: float) -> None:
        """Make blocking receives on ``sock`` give up after ``timeout`` seconds."""
        ms = max(0, int(timeout * 1000))
        if self._timeouts.get(sock) != ms:
            sock.rcvtimeo = ms
            self._timeouts[sock] = ms

    def recv(self, sock: zmq.Socket, timeout: float) -> Msg | None:
        """The next message on ``sock``, or None after ``timeout`` seconds."""
        self.set_timeout(sock, timeout)
        try:
            frames = recv_frames(sock)
        except zmq.Again:
            return None
        msg = self.decode(frames)
        if sock is self.iopub:
            self.recent.append(f"{msg.msg_type}{_brief(msg.content)}")
            del self.recent[:-8]
        return msg

    def wait(
        self,
        sock: zmq.Socket,
        until: Callable[[Msg], bool],
        timeout: float,
        what: str,
        on_msg: Callable[[Msg], None] | None = None,
    ) -> Msg:
        """Receive on ``sock`` until a message satisfies ``until``; BenchError on timeout."""
        deadline = time.perf_counter() + timeout
        while True:
            msg = self.recv(sock, deadline - time.perf_counter())
            if msg is None:
                extra = f"; last iopub messages: {self.recent}" if sock is self.iopub else ""
                raise BenchError(f"no {what} within {timeout:g} s{extra}")
            if on_msg is not None:
                on_msg(msg)
            if until(msg):
                return msg

    def wait_reply(self, sock: zmq.Socket, msg_id: str, timeout: float, what: str) -> Msg:
        """The reply to ``msg_id`` on ``sock`` (other replies are skipped)."""
        return self.wait(sock, lambda m: m.parent_id == msg_id, timeout, what)

    def wait_iopub(
        self,
        msg_id: str,
        msg_type: str,
        timeout: float,
        on_msg: Callable[[Msg], None] | None = None,
        state: str = "idle",
    ) -> Msg:
        """Wait for an iopub message of ``msg_type`` (a status: ``state``) for ``msg_id``."""
        assert self.iopub is not None

        def done(m: Msg) -> bool:
            return (
                m.parent_id == msg_id
                and m.msg_type == msg_type
                and (msg_type != "status" or m.content.get("execution_state") == state)
            )

        what = f"iopub {state if msg_type == 'status' else msg_type} for {msg_id[:8]}"
        return self.wait(self.iopub, done, timeout, what, on_msg)

    def drain_iopub(self) -> int:
        """Discard what is already queued on iopub; return how many messages that was."""
        n = 0
        while self.iopub is not None and self.iopub.poll(0):
            self.iopub.recv_multipart()
            n += 1
        return n

    def settle(self, timeout: float) -> None:
        """Make sure the iopub subscription is live before measuring anything.

        Both kernels greet a new subscriber with ``iopub_welcome``; if none
        comes, fall back to nudging with kernel_info until a status arrives.
        """
        assert self.iopub is not None
        first = self.recv(self.iopub, 2.0)
        if first is not None and first.msg_type == "iopub_welcome":
            self.drain_iopub()
            return
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            msg_id = self.send(self.shell, "kernel_info_request", {})
            self.wait_reply(self.shell, msg_id, timeout, "kernel_info_reply (settling)")
            with contextlib.suppress(BenchError):
                self.wait_iopub(msg_id, "status", 0.3)
                time.sleep(0.05)
                self.drain_iopub()
                return
        raise BenchError(f"iopub subscription not live after {timeout:g} s")

    def execute(
        self, code: str, timeout: float, on_msg: Callable[[Msg], None] | None = None
    ) -> Msg:
        """Run ``code``; return the execute_reply once the idle status arrived too."""
        msg_id = self.send(self.shell, "execute_request", {"code": code, **EXECUTE_CONTENT})
        reply = self.wait_reply(self.shell, msg_id, timeout, f"execute_reply for {code!r}")
        self.wait_iopub(msg_id, "status", timeout, on_msg)
        return reply

    def start_cell(self, code: str, timeout: float) -> str:
        """Send ``code`` and return its msg_id once its execute_input is out (it runs now).

        This client sends a request only after the previous one's reply and idle
        status arrived, so a kernel must not abort it; if it does, the abort is
        counted in ``unexpected_aborts`` and the request sent again.
        """
        assert self.iopub is not None
        for _ in range(MAX_RESENDS):
            msg_id = self.send(self.shell, "execute_request", {"code": code, **EXECUTE_CONTENT})

            def started_or_done(m: Msg, msg_id: str = msg_id) -> bool:
                return m.parent_id == msg_id and (
                    m.msg_type == "execute_input"
                    or (m.msg_type == "status" and m.content.get("execution_state") == "idle")
                )

            m = self.wait(self.iopub, started_or_done, timeout, f"execute_input for {code!r}")
            if m.msg_type == "execute_input":
                return msg_id
            reply = self.wait_reply(self.shell, msg_id, timeout, f"execute_reply for {code!r}")
            if reply.content.get("status") != "aborted":
                raise BenchError(
                    f"{code!r} finished without execute_input: {_summary(reply.content)}"
                )
            self.unexpected_aborts += 1
            time.sleep(ABORT_BACKOFF)
        raise BenchError(f"{code!r}: {MAX_RESENDS} execute_requests in a row aborted")

    def sync(self, timeout: float) -> None:
        """Run ``pass`` until it succeeds (counting unexpected aborts, see ``start_cell``)."""
        for _ in range(MAX_RESENDS):
            reply = self.execute("pass", timeout)
            if reply.content.get("status") == "ok":
                return
            if reply.content.get("status") != "aborted":
                raise BenchError(f"'pass' failed: {_summary(reply.content)}")
            self.unexpected_aborts += 1
            time.sleep(ABORT_BACKOFF)
        raise BenchError(f"'pass': {MAX_RESENDS} execute_requests in a row aborted")


def _brief(content: dict[str, Any]) -> str:
    state = content.get("execution_state") or content.get("name") or ""
    return f"({state})" if state else ""


# -- kernel processes ---------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on the loopback interface."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def connection_info() -> dict[str, Any]:
    """A fresh connection file's contents: free tcp ports, a new key."""
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


def write_connection_file(path: Path) -> dict[str, Any]:
    """Write a fresh connection file (mode 0600) and return its contents."""
    info = connection_info()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    return info


class KernelProcess:
    """One kernel process, its connection info, its log and a client connected to it."""

    counter = 0

    def __init__(self, kind: KernelKind, workdir: Path, ctx: zmq.Context) -> None:
        KernelProcess.counter += 1
        stem = f"{kind.name}-{KernelProcess.counter}"
        self.kind = kind
        self.connection_file = workdir / f"{stem}.json"
        self.log_path = workdir / f"{stem}.log"
        self.info = write_connection_file(self.connection_file)
        self.workdir = workdir
        self.ctx = ctx
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: Client | None = None

    def connect(
        self,
        *,
        reconnect_ivl_ms: int | None = None,
        subscribe: bool = True,
        iopub_rcvhwm: int | None = 0,
    ) -> Client:
        """Connect a client; the kernel may bind later (ZeroMQ keeps reconnecting)."""
        self.client = Client(
            self.ctx,
            self.info,
            reconnect_ivl_ms=reconnect_ivl_ms,
            subscribe=subscribe,
            iopub_rcvhwm=iopub_rcvhwm,
        )
        return self.client

    def launch(self) -> None:
        """Start the kernel process (like the kernelspec's argv, with this interpreter)."""
        argv = [sys.executable, *self.kind.argv]
        argv = [a.replace("{connection_file}", str(self.connection_file)) for a in argv]
        env = dict(os.environ, IPYTHONDIR=str(self.workdir / "ipython"))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: interrupts reach only the kernel
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check_alive(self) -> None:
        """BenchError if the kernel process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"kernel process exited with status {self.proc.returncode}")

    def log_tail(self, lines: int = 15) -> str:
        """The end of the kernel's stdout/stderr."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def shutdown(self, timeout: float = 10.0) -> str | None:
        """Shut the kernel down cleanly (shutdown_request); kill it if that fails.

        Returns a description of what went wrong, or None for a clean shutdown.
        """
        problem = None
        try:
            if self.proc is not None and self.proc.poll() is None and self.client is not None:
                try:
                    msg_id = self.client.send(
                        self.client.control, "shutdown_request", {"restart": False}
                    )
                    self.client.wait_reply(self.client.control, msg_id, 5.0, "shutdown_reply")
                except BenchError as e:
                    problem = str(e)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    problem = f"still running {timeout:g} s after shutdown_request: killed"
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            if self.client is not None:
                self.client.close()
            self.connection_file.unlink(missing_ok=True)
        return problem


def rss_mb(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (peak) of a process, in MB."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


# -- measures -----------------------------------------------------------------------------


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Keep the client's garbage collector out of a timed loop."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def measure_startup(kind: KernelKind, workdir: Path, ctx: zmq.Context, cfg: Config) -> float:
    """Seconds from launching the process to the first kernel_info_reply on shell."""
    kp = KernelProcess(kind, workdir, ctx)
    try:
        # Reconnect often so that the wait for the kernel to bind is not quantized
        # by ZeroMQ's default 100 ms reconnect interval.
        client = kp.connect(reconnect_ivl_ms=2, subscribe=False)
        msg_id, frames = client.build("kernel_info_request", {})
        t0 = time.perf_counter()
        kp.launch()
        client.shell.send_multipart(frames)  # queued until the connection is up
        deadline = t0 + cfg.timeout
        while True:
            msg = client.recv(client.shell, 0.05)
            if msg is not None and msg.parent_id == msg_id:
                break
            if msg is None:
                kp.check_alive()
                if time.perf_counter() > deadline:
                    raise BenchError(f"no kernel_info_reply within {cfg.timeout:g} s of launch")
        elapsed = time.perf_counter() - t0
        if msg.msg_type != "kernel_info_reply":
            raise BenchError(f"expected kernel_info_reply, got {msg.msg_type}")
        return elapsed
    except BenchError as e:
        raise BenchError(f"{e}\n--- kernel log ---\n{kp.log_tail()}") from None
    finally:
        problem = kp.shutdown()
        if problem:
            _progress(f"  [{kind.name}] startup-run kernel shutdown: {problem}")


def measure_roundtrip(
    client: Client,
    cfg: Config,
    code: str = "pass",
    n: int | None = None,
    warmup: int | None = None,
    subshell_id: str | None = None,
) -> tuple[list[float], float]:
    """Execute round trips of ``code`` (reply and idle), in seconds.

    ``n`` timed ones after ``warmup`` untimed ones (by default, the
    configuration's for ``pass``), on the parent shell or on the subshell
    ``subshell_id``. Also returns the client's own CPU time per
    round trip (its main thread, in microseconds), to show how much of the
    figure the harness itself costs.
    """
    assert client.iopub is not None
    shell, iopub, decode = client.shell, client.iopub, client.decode
    n = cfg.roundtrip_n if n is None else n
    warmup = cfg.roundtrip_warmup if warmup is None else warmup
    samples: list[float] = []
    cpu = 0.0
    not_ok: list[Msg] = []
    for count, keep in ((warmup, False), (n, True)):
        if not count:
            continue
        content = {"code": code, **EXECUTE_CONTENT}
        requests = [client.build("execute_request", content, subshell_id) for _ in range(count)]
        client.set_timeout(shell, cfg.timeout)
        client.set_timeout(iopub, cfg.timeout)
        with no_gc():
            cpu0 = time.thread_time()
            for msg_id, frames in requests:
                t0 = time.perf_counter()
                shell.send_multipart(frames)
                try:
                    while (reply := decode(recv_frames(shell))).parent_id != msg_id:
                        pass
                    while True:
                        m = decode(recv_frames(iopub))
                        if (
                            m.msg_type == "status"
                            and m.parent_id == msg_id
                            and m.content["execution_state"] == "idle"
                        ):
                            break
                except zmq.Again:
                    raise BenchError(
                        f"execute of {code!r}: no reply or idle within {cfg.timeout:g} s"
                    ) from None
                if keep:
                    samples.append(time.perf_counter() - t0)
                if reply.content["status"] != "ok":
                    not_ok.append(reply)
            cpu = (time.thread_time() - cpu0) / count * 1e6
    if not_ok:
        raise BenchError(
            f"execute of {code!r}: {len(not_ok)} replies not ok, "
            f"first: {_summary(not_ok[0].content)}"
        )
    return samples, cpu


def measure_pipelined(client: Client, n: int, cfg: Config) -> float:
    """Send ``n`` execute requests back to back; requests per second until all are done."""
    iopub = client.iopub
    assert iopub is not None
    requests = [
        client.build("execute_request", {"code": "pass", **EXECUTE_CONTENT}) for _ in range(n)
    ]
    order = [msg_id for msg_id, _ in requests]
    replies: set[str] = set(order)
    idles: set[str] = set(order)
    received: list[str] = []
    errors: list[str] = []
    timeout = max(cfg.timeout, n / 50)
    with no_gc():
        t0 = time.perf_counter()
        for _, frames in requests:
            client.shell.send_multipart(frames)
        deadline = t0 + timeout
        while replies:
            m = client.recv(client.shell, deadline - time.perf_counter())
            if m is None:
                raise BenchError(
                    f"pipelined: {n - len(replies)}/{n} execute_replies within {timeout:g} s"
                )
            if m.parent_id in replies:
                replies.discard(m.parent_id)
                received.append(m.parent_id)
                if m.content.get("status") != "ok":
                    errors.append(str(m.content.get("status")))
        while idles:
            m = client.recv(iopub, deadline - time.perf_counter())
            if m is None:
                raise BenchError(
                    f"pipelined: {n - len(idles)}/{n} idle statuses within {timeout:g} s "
                    f"(all {n} replies arrived)"
                )
            if m.msg_type == "status" and m.content.get("execution_state") == "idle":
                idles.discard(m.parent_id or "")
        elapsed = time.perf_counter() - t0
    if errors:
        raise BenchError(f"pipelined: {len(errors)} replies not ok: {errors[:3]}")
    if received != order:
        raise BenchError("pipelined: execute_replies arrived out of order")
    return n / elapsed


def measure_control_during_sleep(client: Client, cfg: Config) -> list[float]:
    """kernel_info latencies on control while the shell runs ``time.sleep(2)``."""
    samples: list[float] = []
    for _ in range(cfg.control_rounds):
        msg_id = client.start_cell("import time; time.sleep(2)", cfg.timeout)
        started = time.perf_counter()
        time.sleep(0.1)
        round_samples = []
        while len(round_samples) < cfg.control_samples and time.perf_counter() - started < 1.6:
            request_id, frames = client.build("kernel_info_request", {})
            t0 = time.perf_counter()
            client.control.send_multipart(frames)
            client.wait_reply(client.control, request_id, cfg.timeout, "control kernel_info_reply")
            round_samples.append(time.perf_counter() - t0)
            time.sleep(0.05)
        if client.shell.poll(0):
            raise BenchError("control: the sleeping cell replied before the control samples ended")
        if time.perf_counter() - started > 1.95:
            raise BenchError("control: kernel_info replies came too slowly to fit into the sleep")
        reply = client.wait_reply(client.shell, msg_id, cfg.timeout, "execute_reply for sleep")
        client.wait_iopub(msg_id, "status", cfg.timeout)
        if reply.content.get("status") != "ok":
            raise BenchError(f"sleep cell failed: {reply.content}")
        samples.extend(round_samples)
    return samples


# While a cell awaits: the cells below use anyio, so that they run unchanged on
# asyncio and trio kernels alike.

AWAIT_SLEEP = 1.0  # seconds the cell of the shell kernel_info measure awaits
AWAIT_CELL = f"import anyio\nawait anyio.sleep({AWAIT_SLEEP!r})"
COMM_ECHO_TIMEOUT = 10.0  # the echo cell ends by itself after this many seconds
COMM_ECHO_WARMUP = 5  # echoes before the timed ones
COMM_ECHO_CELL = f"""\
import anyio, comm
_bench_stop = anyio.Event()
_bench_comm = comm.create_comm(target_name="bench.echo")


def _bench_echo(msg):
    _bench_comm.send(msg["content"]["data"])
    if msg["content"]["data"].get("stop"):
        _bench_stop.set()


_bench_comm.on_msg(_bench_echo)
with anyio.move_on_after({COMM_ECHO_TIMEOUT!r}):
    await _bench_stop.wait()
_bench_comm.close()
"""


def finish_cell(client: Client, msg_id: str, cfg: Config, what: str) -> Msg:
    """Wait for a started cell's execute_reply and idle status; return the reply."""
    reply = client.wait_reply(client.shell, msg_id, cfg.timeout, f"execute_reply ({what})")
    client.wait_iopub(msg_id, "status", cfg.timeout)
    return reply


def measure_shell_during_await(client: Client, cfg: Config) -> list[float]:
    """kernel_info latencies on shell, back to back, while a cell awaits ``anyio.sleep``.

    The first request of each round is a warm-up. Unsupported if the cell's
    execute_reply overtakes a kernel_info_reply: the kernel answered only once
    the cell had ended.
    """
    samples: list[float] = []
    window = AWAIT_SLEEP * 0.7  # requests are sent only while the cell surely still awaits
    for _ in range(cfg.await_rounds):
        msg_id = client.start_cell(AWAIT_CELL, cfg.timeout)
        started = time.perf_counter()
        time.sleep(0.05)
        round_samples: list[float] = []
        sent = 0
        with no_gc():
            while sent <= cfg.await_samples and time.perf_counter() - started < window:
                sent += 1
                request_id, frames = client.build("kernel_info_request", {})
                t0 = time.perf_counter()
                client.shell.send_multipart(frames)
                m = client.wait(
                    client.shell,
                    lambda m, ids=(request_id, msg_id): m.parent_id in ids,
                    cfg.timeout,
                    "shell kernel_info_reply",
                )
                elapsed = time.perf_counter() - t0
                if m.parent_id == msg_id:
                    client.wait_reply(client.shell, request_id, cfg.timeout, "kernel_info_reply")
                    client.wait_iopub(msg_id, "status", cfg.timeout)
                    raise Unsupported("shell kernel_info not answered until the cell ends")
                if sent > 1:
                    round_samples.append(elapsed)
        if time.perf_counter() - started > AWAIT_SLEEP * 0.95 or not round_samples:
            raise BenchError("shell during await: replies came too slowly to fit into the await")
        reply = finish_cell(client, msg_id, cfg, "awaiting cell")
        if reply.content.get("status") != "ok":
            raise BenchError(f"awaiting cell failed: {_summary(reply.content)}")
        samples.extend(round_samples)
    return samples


def measure_comm_echo(client: Client, cfg: Config, n: int) -> list[float]:
    """Round trips of ``n`` comm_msg requests to a comm that an awaiting cell opened.

    Each is timed from sending the comm_msg on shell to its echo on iopub,
    back to back, after ``COMM_ECHO_WARMUP`` untimed ones.
    Unsupported if the cell cannot open the comm, or if the echo comes only
    after the cell has ended.
    """
    assert client.iopub is not None
    msg_id = client.start_cell(COMM_ECHO_CELL, cfg.timeout)

    def opened_or_idle(m: Msg) -> bool:
        return m.parent_id == msg_id and (
            m.msg_type == "comm_open"
            or (m.msg_type == "status" and m.content.get("execution_state") == "idle")
        )

    m = client.wait(client.iopub, opened_or_idle, cfg.timeout, "comm_open from the echo cell")
    if m.msg_type != "comm_open":
        reply = client.wait_reply(client.shell, msg_id, cfg.timeout, "execute_reply (echo cell)")
        raise Unsupported(f"the echo cell opened no comm: {_summary(reply.content)}")
    comm_id = m.content["comm_id"]
    requests = [
        client.build("comm_msg", {"comm_id": comm_id, "data": {"seq": i}})[1]
        for i in range(COMM_ECHO_WARMUP + n)
    ]
    samples: list[float] = []
    with no_gc():
        for i, frames in enumerate(requests):

            def echoed_or_idle(m: Msg, i: int = i) -> bool:
                if m.msg_type == "comm_msg":
                    content = m.content
                    return content.get("comm_id") == comm_id and content.get("data") == {"seq": i}
                return m.parent_id == msg_id and (
                    m.msg_type == "status" and m.content.get("execution_state") == "idle"
                )

            t0 = time.perf_counter()
            client.shell.send_multipart(frames)
            m = client.wait(client.iopub, echoed_or_idle, cfg.timeout, f"echo of comm_msg {i}")
            if m.msg_type != "comm_msg":
                reply = client.wait_reply(client.shell, msg_id, cfg.timeout, "execute_reply")
                raise Unsupported(
                    f"comm_msg not answered until the cell ends ({_summary(reply.content)})"
                )
            if i >= COMM_ECHO_WARMUP:
                samples.append(time.perf_counter() - t0)
    client.send(client.shell, "comm_msg", {"comm_id": comm_id, "data": {"stop": True}})
    reply = finish_cell(client, msg_id, cfg, "echo cell")
    if reply.content.get("status") != "ok":
        raise BenchError(f"echo cell failed: {_summary(reply.content)}")
    return samples


def measure_interrupt(kp: KernelProcess, cfg: Config, mode: str, reps: int) -> list[float]:
    """Seconds from the interrupt to the execute_reply of ``while True: pass``."""
    client = kp.client
    assert client is not None
    samples: list[float] = []
    for _ in range(reps):
        msg_id = client.start_cell("while True: pass", cfg.timeout)
        time.sleep(0.2)  # well inside the loop, not in the kernel's own machinery
        control_id = None
        t0 = time.perf_counter()
        if mode == "message":
            control_id = client.send(client.control, "interrupt_request", {})
        else:
            os.kill(kp.pid, signal.SIGINT)
        reply = client.wait_reply(
            client.shell, msg_id, 10.0, f"execute_reply after a {mode}-mode interrupt"
        )
        samples.append(time.perf_counter() - t0)
        client.wait_iopub(msg_id, "status", cfg.timeout)
        if control_id is not None:
            ir = client.wait_reply(client.control, control_id, cfg.timeout, "interrupt_reply")
            if ir.content.get("status") != "ok":
                raise BenchError(f"interrupt_reply not ok: {ir.content}")
        if reply.content.get("status") != "error" or reply.content.get("ename") != (
            "KeyboardInterrupt"
        ):
            raise BenchError(f"interrupted cell replied {_summary(reply.content)}")
    client.sync(cfg.timeout)  # leave the kernel ready for the next measure
    return samples


def measure_print(client: Client, lines: int, cfg: Config) -> tuple[float, int, str | None]:
    """Print ``lines`` lines: seconds to idle, stream message count, problem or None."""
    parts: list[str] = []
    count = 0

    def on_msg(m: Msg) -> None:
        nonlocal count
        if m.msg_type == "stream" and m.parent_id == msg_id:
            count += 1
            if m.content.get("name") == "stdout":
                parts.append(m.content["text"])

    code = f"for i in range({lines}): print(i)"
    msg_id, frames = client.build("execute_request", {"code": code, **EXECUTE_CONTENT})
    timeout = max(cfg.timeout, lines / 1000)
    with no_gc():
        t0 = time.perf_counter()
        client.shell.send_multipart(frames)
        client.wait_iopub(msg_id, "status", timeout, on_msg)
        # The reply normally precedes the idle status; time until both are in.
        reply = client.wait_reply(client.shell, msg_id, timeout, "execute_reply (print loop)")
        elapsed = time.perf_counter() - t0
    if reply.content.get("status") != "ok":
        return elapsed, count, f"print cell failed: {_summary(reply.content)}"
    text = "".join(parts)
    expected = "".join(f"{i}\n" for i in range(lines))
    if text == expected:
        return elapsed, count, None
    got = text.splitlines()
    missing = lines - len(got)
    first_bad = next(
        (i for i, (a, b) in enumerate(zip(got, map(str, range(lines)), strict=False)) if a != b),
        None,
    )
    return (
        elapsed,
        count,
        f"stdout incomplete or wrong: {len(got)}/{lines} lines ({missing} missing), "
        f"first difference at line {first_bad}",
    )


# Live output: a cell prints time-stamped lines slowly; each line's delay is the
# client's time.time() when the line arrives minus the kernel's in the line
# (same machine, same clock).


@dataclass(frozen=True)
class LiveVariant:
    """One way for a cell to print slowly: a key, a title and how it waits and flushes."""

    key: str
    title: str
    flush: bool
    busy: bool  # wait in a busy loop (holding the GIL) rather than in time.sleep


LIVE_VARIANTS = (
    LiveVariant("live_flush", "live print, flush=True", flush=True, busy=False),
    LiveVariant("live_noflush", "live print, no flush", flush=False, busy=False),
    LiveVariant("live_busy", "live print, flush=True, busy cell", flush=True, busy=True),
)


def live_cell(lines: int, gap: float, variant: LiveVariant) -> str:
    """A cell printing ``lines`` lines ``i time.time()``, ``gap`` seconds apart."""
    if variant.busy:
        wait = f"    _t = time.time() + {gap!r}\n    while time.time() < _t:\n        pass\n"
    else:
        wait = f"    time.sleep({gap!r})\n"
    return (
        "import time\n"
        f"for _i in range({lines}):\n"
        f"    print(_i, repr(time.time()), flush={variant.flush})\n" + wait
    )


def measure_live(client: Client, code: str, lines: int, cfg: Config) -> tuple[list[float], int]:
    """Run a ``live_cell``: each line's delay (s) in order, and the stream message count.

    Every line must arrive, in order, before the idle status; a line split
    over two messages counts as arriving with the second.
    """
    iopub = client.iopub
    assert iopub is not None
    msg_id = client.start_cell(code, cfg.timeout)
    delays: list[float] = []
    msgs = 0
    pending = ""
    deadline = time.perf_counter() + cfg.timeout
    while True:
        client.set_timeout(iopub, deadline - time.perf_counter())
        try:
            frames = recv_frames(iopub)
        except zmq.Again:
            raise BenchError(
                f"live output: no idle within {cfg.timeout:g} s "
                f"({len(delays)}/{lines} lines arrived)"
            ) from None
        arrived = time.time()
        m = client.decode(frames)
        if m.parent_id != msg_id:
            continue
        if m.msg_type == "stream":
            msgs += 1
            text = m.content.get("text", "")
            if m.content.get("name") != "stdout":
                raise BenchError(f"live output: unexpected {m.content.get('name')}: {text[:200]!r}")
            *complete, pending = (pending + text).split("\n")
            for line in complete:
                index, _, stamp = line.partition(" ")
                if index != str(len(delays)):
                    raise BenchError(
                        f"live output: line {len(delays)} expected, got {line!r} "
                        "(lost or reordered output)"
                    )
                try:
                    delays.append(arrived - float(stamp))
                except ValueError:
                    raise BenchError(f"live output: malformed line {line!r}") from None
        elif m.msg_type == "status" and m.content.get("execution_state") == "idle":
            break
    reply = client.wait_reply(client.shell, msg_id, cfg.timeout, "execute_reply (live output)")
    if reply.content.get("status") != "ok":
        raise BenchError(f"live output cell failed: {_summary(reply.content)}")
    if pending or len(delays) != lines:
        raise BenchError(
            f"live output: {len(delays)}/{lines} complete lines before idle"
            + (f", then a partial line {pending[:80]!r}" if pending else "")
        )
    return delays, msgs


# Big output: a cell prints 1 KiB lines until it has printed ``big_output_mib``
# MiB, while the client drains iopub as fast as it can, checking and counting
# the text without keeping it, and a thread watches the kernel's memory.

BIG_LINE = 1024  # characters per line, newline included (all ASCII: bytes too)
BIG_PERIOD = 1024  # distinct numbered lines, printed round and round
BIG_CELL = (
    "_lines = ['%04d' % _j + 'x' * 1019 + '\\n' for _j in range(1024)]\n"
    "for _i in range({n}):\n"
    "    print(_lines[_i & 1023], end='')\n"
)


def big_period() -> str:
    """The MiB of text that ``BIG_CELL`` prints over and over."""
    return "".join(f"{j:04d}" + "x" * (BIG_LINE - 5) + "\n" for j in range(BIG_PERIOD))


class PeriodicText:
    """Checks that the pieces fed to it, joined, repeat ``period`` from its start.

    It keeps only a count and the first offset that differs: with 1024
    distinct lines in the period, a lost, duplicated or reordered piece shifts
    what follows and is caught.
    """

    def __init__(self, period: str) -> None:
        self.period = period
        self.size = 0
        self.first_difference: int | None = None

    def feed(self, text: str) -> None:
        """Check and count the next piece."""
        if self.first_difference is None:
            period, n = self.period, len(self.period)
            i, end = 0, len(text)
            while i < end:
                q = (self.size + i) % n
                k = min(end - i, n - q)
                if not text.startswith(period[q : q + k], i):  # compares in place
                    self.first_difference = self.size + i
                    break
                i += k
        self.size += len(text)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_peak_rss(pid: int) -> bool:
    """Reset a process's VmHWM to its current RSS (Linux >= 4.0); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class RssSampler:
    """Polls a process's VmRSS from a thread, keeping the largest value (MB)."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss, _ = rss_mb(self.pid)
            except (OSError, KeyError):
                return
            self.peak = max(self.peak, rss)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def recv_frame_objects(sock: zmq.Socket) -> list[zmq.Frame]:
    """Receive one multipart message as zero-copy ``Frame`` objects."""
    frame = sock.recv(copy=False)
    frames = [frame]
    while frame.more:
        frame = sock.recv(copy=False)
        frames.append(frame)
    return frames


def measure_big_output(kp: KernelProcess, cfg: Config) -> tuple[dict[str, float], list[str]]:
    """Print ``cfg.big_output_mib`` MiB in 1 KiB lines: figures, and problems seen.

    Figures: time to reply and idle, bytes and stream messages received,
    completeness, and the kernel's RSS before and at its peak during the cell.

    The drain loop parses only headers, parent headers and contents (without
    checking signatures, to keep up) and keeps no text. Its SUB socket keeps
    ZeroMQ's default receive high-water mark, like usual clients, so a kernel
    that outruns the client has to hold (or drop) the excess itself.
    """
    client = kp.client
    assert client is not None and client.iopub is not None
    iopub = client.iopub
    total = cfg.big_output_mib << 20
    lines = total // BIG_LINE
    client.execute(BIG_CELL.format(n=BIG_PERIOD), cfg.timeout)  # warm-up: 1 MiB
    client.sync(cfg.timeout)
    time.sleep(0.2)
    baseline, _ = rss_mb(kp.pid)
    hwm_reset = reset_peak_rss(kp.pid)
    checker = PeriodicText(big_period())
    other_streams: list[str] = []
    msgs = 0
    msg_id, request = client.build("execute_request", {"code": BIG_CELL.format(n=lines)})
    deadline = time.perf_counter() + max(cfg.timeout, cfg.big_output_mib * 0.5)
    with RssSampler(kp.pid) as sampler, no_gc():
        kernel_cpu0, client_cpu0 = cpu_seconds(kp.pid), time.process_time()
        t0 = time.perf_counter()
        client.shell.send_multipart(request)
        while True:
            client.set_timeout(iopub, min(cfg.timeout, deadline - time.perf_counter()))
            try:
                frames = recv_frame_objects(iopub)
            except zmq.Again:
                raise BenchError(
                    f"big output: nothing more on iopub for {cfg.timeout:g} s (or past the "
                    f"deadline) after {checker.size:,} bytes in {msgs} stream messages"
                ) from None
            i = next(
                (n for n, f in enumerate(frames[:8]) if f.bytes == DELIMITER),
                None,
            )
            if i is None or len(frames) < i + 6:
                raise BenchError("big output: malformed message on iopub")
            if orjson.loads(frames[i + 3].buffer).get("msg_id") != msg_id:
                continue
            msg_type = orjson.loads(frames[i + 2].buffer)["msg_type"]
            if msg_type == "stream":
                content = orjson.loads(frames[i + 5].buffer)
                msgs += 1
                if content["name"] == "stdout":
                    checker.feed(content["text"])
                else:
                    other_streams.append(content["text"][:200])
            elif msg_type == "status":
                if orjson.loads(frames[i + 5].buffer)["execution_state"] == "idle":
                    break
        reply = client.wait_reply(client.shell, msg_id, cfg.timeout, "execute_reply (big output)")
        elapsed = time.perf_counter() - t0
        kernel_cpu = cpu_seconds(kp.pid) - kernel_cpu0
        client_cpu = time.process_time() - client_cpu0
    _, hwm = rss_mb(kp.pid)
    peak = max(sampler.peak, hwm) if hwm_reset else sampler.peak
    if reply.content.get("status") != "ok":
        raise BenchError(f"big output cell failed: {_summary(reply.content)}")
    complete = checker.size == total and checker.first_difference is None
    values = {
        "big_s": elapsed,
        "big_mb_per_s": checker.size / elapsed / 1e6,
        "big_bytes": float(checker.size),
        "big_complete": 1.0 if complete else 0.0,
        "big_msgs": float(msgs),
        "big_kernel_cpu_s": kernel_cpu,
        "big_client_cpu_s": client_cpu,
        "big_rss_before_mb": baseline,
        "big_peak_rss_mb": peak,
        "big_rss_growth_mb": peak - baseline,
        "big_sampled_peak_rss_mb": sampler.peak,
        "big_rss_samples": float(sampler.samples),
        "big_hwm_reset": 1.0 if hwm_reset else 0.0,
    }
    problems = []
    if checker.size != total:
        problems.append(f"{checker.size:,} of {total:,} bytes arrived")
    if checker.first_difference is not None:
        problems.append(f"text differs from what was printed at byte {checker.first_difference:,}")
    if other_streams:
        problems.append(f"{len(other_streams)} stderr messages, first: {other_streams[0]!r}")
    return values, problems


def _summary(content: dict[str, Any]) -> str:
    keys = ("status", "ename", "evalue")
    return ", ".join(f"{k}={content[k]!r}" for k in keys if k in content)


# -- running one kernel -------------------------------------------------------------------


@dataclass
class KernelResult:
    """Raw samples and derived figures for one kernel."""

    kind: KernelKind
    samples: dict[str, list[float]] = field(default_factory=dict)
    values: dict[str, float | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unsupported: dict[str, str] = field(default_factory=dict)  # the reference cannot, by measure
    aborts: dict[str, int] = field(default_factory=dict)  # unexpected aborts, by measure


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def start_kernel(
    kind: KernelKind,
    workdir: Path,
    ctx: zmq.Context,
    cfg: Config,
    *,
    iopub_rcvhwm: int | None = 0,
) -> KernelProcess:
    """Start a kernel for the in-process measures and wait until it answers and iopub is live."""
    kp = KernelProcess(kind, workdir, ctx)
    try:
        client = kp.connect(iopub_rcvhwm=iopub_rcvhwm)
        kp.launch()
        msg_id = client.send(client.shell, "kernel_info_request", {})
        deadline = time.perf_counter() + cfg.timeout
        while True:
            msg = client.recv(client.shell, 0.1)
            if msg is not None and msg.parent_id == msg_id:
                break
            kp.check_alive()
            if time.perf_counter() > deadline:
                raise BenchError(f"no kernel_info_reply within {cfg.timeout:g} s of launch")
        client.settle(cfg.timeout)
    except BaseException as e:
        kp.shutdown()
        if isinstance(e, BenchError):
            raise BenchError(f"{e}\n--- kernel log ---\n{kp.log_tail()}") from None
        raise
    return kp


def bench_kernel(kind: KernelKind, workdir: Path, ctx: zmq.Context, cfg: Config) -> KernelResult:
    """Run the configured sections' measures against one kernel kind.

    Failures are recorded, not raised.
    """
    res = KernelResult(kind)
    if "core" in cfg.sections:
        bench_core(kind, workdir, ctx, cfg, res)
    if "debugger" in cfg.sections:
        bench_debugging(kind, workdir, ctx, cfg, res)
    if "subshells" in cfg.sections:
        bench_subshells(kind, workdir, ctx, cfg, res)
    if "journal" in cfg.sections:
        bench_crash_journal(kind, workdir, ctx, cfg, res)
    if "gui" in cfg.sections:
        bench_gui(kind, workdir, ctx, cfg, res)
    if res.aborts:
        total = sum(res.aborts.values())
        where = ", ".join(f"{n} during {key}" for key, n in res.aborts.items())
        res.errors["aborted_requests"] = (
            f"{total} execute_request(s) answered 'aborted' although sent after the previous "
            f"cell's execute_reply and idle status had arrived ({where}); they were resent"
        )
    for key, samples in res.samples.items():
        res.values[key] = _median(samples)
    return res


def bench_core(
    kind: KernelKind, workdir: Path, ctx: zmq.Context, cfg: Config, res: KernelResult
) -> None:
    """Every measure but the debugger's, into ``res``; failures are recorded, not raised."""
    tag = f"[{kind.name}]"

    # 7. start to first kernel_info reply (the first launch is a warm-up).
    try:
        measure_startup(kind, workdir, ctx, cfg)
        starts = [measure_startup(kind, workdir, ctx, cfg) for _ in range(cfg.startup_runs)]
        res.samples["startup_s"] = starts
        _progress(f"{tag} startup: " + ", ".join(f"{s:.3f}" for s in starts) + " s")
    except BenchError as e:
        res.errors["startup_s"] = str(e)
        _progress(f"{tag} startup FAILED: {e}")

    kp: KernelProcess | None = None
    start_failure: str | None = None

    def run(key: str, fn: Callable[[KernelProcess], None]) -> None:
        """Run one measure; on failure record it and start a fresh kernel for the next."""
        nonlocal kp, start_failure
        if start_failure is not None:
            res.errors[key] = f"not run: the kernel did not start ({start_failure})"
            return
        if kp is None:
            try:
                kp = start_kernel(kind, workdir, ctx, cfg)
            except BenchError as e:
                start_failure = str(e).splitlines()[0]
                res.errors[key] = f"the kernel did not start: {e}"
                _progress(f"{tag} kernel did not start: {e}")
                return
        try:
            try:
                fn(kp)
            finally:
                if kp.client is not None and kp.client.unexpected_aborts:
                    res.aborts[key] = res.aborts.get(key, 0) + kp.client.unexpected_aborts
                    kp.client.unexpected_aborts = 0
        except Unsupported as e:
            # The kernel is idle and ready. Only the reference may lack a feature.
            if kind.name == REFERENCE:
                res.unsupported[key] = str(e)
            else:
                res.errors[key] = str(e)
            _progress(f"{tag} {key}: {e}")
        except BenchError as e:
            message = str(e)
            if kp.proc is not None and kp.proc.poll() is not None:
                message += f" (kernel died: exit status {kp.proc.returncode})"
            tail = kp.log_tail(8)
            if tail:
                message += f"\n--- kernel log ---\n{tail}"
            res.errors[key] = message
            _progress(f"{tag} {key} FAILED: {message}")
            res.notes.append(f"a fresh kernel was started after the failure of {key}")
            problem = kp.shutdown()
            if problem:
                res.notes.append(f"shutdown of the failed kernel: {problem}")
            kp = None

    def roundtrip(kp: KernelProcess) -> None:
        assert kp.client is not None
        samples, cpu = measure_roundtrip(kp.client, cfg)
        res.samples["roundtrip_ms"] = [s * 1e3 for s in samples]
        res.values["roundtrip_client_cpu_us"] = cpu
        _progress(f"{tag} round trip: median {_median(res.samples['roundtrip_ms']):.3f} ms")

    def pipelined(kp: KernelProcess) -> None:
        assert kp.client is not None
        measure_pipelined(kp.client, max(100, cfg.pipeline_n // 10), cfg)  # warm-up
        rates = [
            measure_pipelined(kp.client, cfg.pipeline_n, cfg) for _ in range(cfg.pipeline_reps)
        ]
        res.samples["pipelined_rps"] = rates
        _progress(f"{tag} pipelined: " + ", ".join(f"{r:.0f}" for r in rates) + " req/s")

    def control(kp: KernelProcess) -> None:
        assert kp.client is not None
        for _ in range(5):  # warm-up of the control path
            msg_id = kp.client.send(kp.client.control, "kernel_info_request", {})
            kp.client.wait_reply(kp.client.control, msg_id, cfg.timeout, "kernel_info_reply")
        samples = measure_control_during_sleep(kp.client, cfg)
        res.samples["control_ms"] = [s * 1e3 for s in samples]
        _progress(f"{tag} control kernel_info during sleep: median {_median(samples) * 1e3:.2f} ms")

    def shell_await(kp: KernelProcess) -> None:
        assert kp.client is not None
        samples = measure_shell_during_await(kp.client, cfg)
        res.samples["shell_await_ms"] = [s * 1e3 for s in samples]
        _progress(f"{tag} shell kernel_info while awaiting: median {_median(samples) * 1e3:.2f} ms")

    def comm_echo(kp: KernelProcess) -> None:
        assert kp.client is not None
        samples = measure_comm_echo(kp.client, cfg, cfg.comm_echo_n)
        res.samples["comm_echo_ms"] = [s * 1e3 for s in samples]
        _progress(f"{tag} comm echo while awaiting: median {_median(samples) * 1e3:.2f} ms")

    def interrupt(mode: str) -> Callable[[KernelProcess], None]:
        def go(kp: KernelProcess) -> None:
            measure_interrupt(kp, cfg, mode, 1)  # warm-up
            samples = measure_interrupt(kp, cfg, mode, cfg.interrupt_reps)
            res.samples[f"interrupt_{mode}_ms"] = [s * 1e3 for s in samples]
            _progress(
                f"{tag} interrupt ({mode}): " + ", ".join(f"{s * 1e3:.1f}" for s in samples) + " ms"
            )

        return go

    def printing(kp: KernelProcess) -> None:
        assert kp.client is not None
        print_bytes = sum(len(str(i)) + 1 for i in range(cfg.print_lines))
        measure_print(kp.client, cfg.print_lines // 10, cfg)  # warm-up
        times: list[float] = []
        counts: list[float] = []
        problems: list[str] = []
        for _ in range(cfg.print_reps):
            elapsed, count, problem = measure_print(kp.client, cfg.print_lines, cfg)
            times.append(elapsed)
            counts.append(count)
            if problem:
                problems.append(problem)
        res.samples["print_s"] = times
        res.samples["print_lines_per_s"] = [cfg.print_lines / t for t in times]
        res.samples["print_mb_per_s"] = [print_bytes / t / 1e6 for t in times]
        res.samples["print_msgs"] = counts
        res.values["print_complete"] = 0.0 if problems else 1.0
        _progress(
            f"{tag} print {cfg.print_lines}: "
            + ", ".join(f"{t:.3f} s/{c:.0f} msgs" for t, c in zip(times, counts, strict=True))
        )
        if problems:
            raise BenchError(f"print: {problems[0]} ({len(problems)}/{cfg.print_reps} runs)")

    def live(variant: LiveVariant) -> Callable[[KernelProcess], None]:
        def go(kp: KernelProcess) -> None:
            assert kp.client is not None
            measure_live(kp.client, live_cell(2, 0.05, variant), 2, cfg)  # warm-up
            code = live_cell(cfg.live_lines, cfg.live_gap, variant)
            delays, msgs = measure_live(kp.client, code, cfg.live_lines, cfg)
            res.samples[f"{variant.key}_ms"] = [d * 1e3 for d in delays]
            res.values[f"{variant.key}_max_ms"] = max(delays) * 1e3
            res.values[f"{variant.key}_msgs"] = float(msgs)
            _progress(
                f"{tag} {variant.title}: delays "
                + ", ".join(f"{d * 1e3:.0f}" for d in delays)
                + f" ms; {msgs} stream messages"
            )

        return go

    try:
        run("roundtrip_ms", roundtrip)
        run("pipelined_rps", pipelined)
        run("control_ms", control)
        run("shell_await_ms", shell_await)
        run("comm_echo_ms", comm_echo)
        run("interrupt_message_ms", interrupt("message"))
        run("interrupt_signal_ms", interrupt("signal"))
        run("print_s", printing)
        for variant in LIVE_VARIANTS:
            run(f"{variant.key}_ms", live(variant))
        # 10. RSS of the kernel after all of the above.
        if kp is not None and kp.proc is not None and kp.proc.poll() is None:
            rss, hwm = rss_mb(kp.pid)
            res.values["rss_mb"] = rss
            res.values["peak_rss_mb"] = hwm
            _progress(f"{tag} RSS {rss:.1f} MB (peak {hwm:.1f} MB)")
        else:
            res.errors["rss_mb"] = "no kernel running that went through all the measures"
    finally:
        if kp is not None:
            problem = kp.shutdown()
            if problem:
                res.errors["shutdown"] = problem
                _progress(f"{tag} shutdown: {problem}")
    if cfg.big_output_mib and start_failure is None:
        bench_big_output(kind, workdir, ctx, cfg, res)


def bench_big_output(
    kind: KernelKind, workdir: Path, ctx: zmq.Context, cfg: Config, res: KernelResult
) -> None:
    """The big-output measure, on a fresh kernel of its own; failures are recorded."""
    tag = f"[{kind.name}]"
    kp: KernelProcess | None = None
    try:
        kp = start_kernel(kind, workdir, ctx, cfg, iopub_rcvhwm=None)
        _progress(f"{tag} big output: printing {cfg.big_output_mib} MiB ...")
        values, problems = measure_big_output(kp, cfg)
        res.values.update(values)
        _progress(
            f"{tag} big output: {values['big_s']:.2f} s, {values['big_bytes']:,.0f} bytes in "
            f"{values['big_msgs']:,.0f} messages; kernel RSS {values['big_rss_before_mb']:.1f} "
            f"-> peak {values['big_peak_rss_mb']:.1f} MB"
        )
        if problems:
            raise BenchError("big output: " + "; ".join(problems))
    except BenchError as e:
        message = str(e)
        if kp is not None and kp.proc is not None and kp.proc.poll() is not None:
            message += f" (kernel died: exit status {kp.proc.returncode})"
            tail = kp.log_tail(8)
            if tail:
                message += f"\n--- kernel log ---\n{tail}"
        res.errors["big_s"] = message
        _progress(f"{tag} big output FAILED: {message}")
    finally:
        if kp is not None:
            if kp.client is not None and kp.client.unexpected_aborts:
                res.aborts["big_s"] = kp.client.unexpected_aborts
            problem = kp.shutdown()
            if problem:
                res.notes.append(f"shutdown of the big-output kernel: {problem}")


# The errors entry that explains the debugger rows' missing figures.
DEBUGGER_ERROR = "debugger"


def bench_debugging(
    kind: KernelKind, workdir: Path, ctx: zmq.Context, cfg: Config, res: KernelResult
) -> None:
    """The debugger's cost, on fresh kernels, into ``res``; failures are recorded, not raised.

    On the first kernel: round trips of each of ``DEBUGGER_CELLS`` with the
    debugger not started, then started as JupyterLab starts it (no
    breakpoints), then switched off again. The start is timed on that kernel and
    on ``debugger_start_runs - 1`` more: the first start in each process.
    """
    tag = f"[{kind.name}]"
    starts: list[float] = []
    states = {
        "off": "with the debugger not started",
        "on": "with the debugger started",
        "after": "after the debugger was switched off",
    }

    def roundtrips(client: Client, cell: str, state: str) -> None:
        n = cfg.debugger_pass_n if cell == "pass" else cfg.debugger_work_n
        samples, _ = measure_roundtrip(client, cfg, DEBUGGER_CELLS[cell], n, cfg.debugger_warmup)
        key = f"dbg_{cell}_{state}_ms"
        res.samples[key] = [s * 1e3 for s in samples]
        res.values[f"{key}_p90"] = _p90(res.samples[key])
        _progress(
            f"{tag} {CELL_TITLES[cell]} {states[state]}: median "
            f"{_median(res.samples[key]):.3f} ms, p90 {res.values[f'{key}_p90']:.3f} ms"
        )

    for run in range(cfg.debugger_start_runs):
        first = run == 0
        kp: KernelProcess | None = None
        step = "starting the kernel"
        try:
            kp = start_kernel(kind, workdir, ctx, cfg)
            client = kp.client
            assert client is not None
            if first:
                step = "kernel_info"
                msg_id = client.send(client.shell, "kernel_info_request", {})
                info = client.wait_reply(client.shell, msg_id, cfg.timeout, "kernel_info_reply")
                # Protocol 5.5 lists it in supported_features; older kernels say debugger: true.
                features = info.content.get("supported_features") or []
                if "debugger" not in features and not info.content.get("debugger"):
                    res.notes.append(
                        "kernel_info_reply does not announce a debugger (JupyterLab would not "
                        "offer it); it is tried all the same"
                    )
                for cell in DEBUGGER_CELLS:
                    step = f"{CELL_TITLES[cell]} {states['off']}"
                    roundtrips(client, cell, "off")
            step = "starting the debugger"
            dap = DapRequests(client, min(cfg.timeout, REQUEST_TIMEOUT))
            starts.append(start_debugger(dap, kind.kernelspec))
            _progress(f"{tag} debugger start {run + 1}: {starts[-1]:.3f} s")
            client.drain_iopub()  # the debugger's events and control statuses
            if first:
                for cell in DEBUGGER_CELLS:
                    step = f"{CELL_TITLES[cell]} {states['on']}"
                    roundtrips(client, cell, "on")
                step = "switching the debugger off (disconnect)"
                stop_debugger(dap)
                client.drain_iopub()
                # Whether switching it off gives cells their cost back.
                for cell in DEBUGGER_CELLS:
                    step = f"{CELL_TITLES[cell]} {states['after']}"
                    roundtrips(client, cell, "after")
        except (BenchError, DebuggerError) as e:
            message = f"{e} ({step})"
            if kp is not None and kp.proc is not None and kp.proc.poll() is not None:
                message += f" (kernel died: exit status {kp.proc.returncode})"
            if kp is not None and isinstance(e, BenchError) and (tail := kp.log_tail(8)):
                message += f"\n--- kernel log ---\n{tail}"
            if DEBUGGER_ERROR in res.errors:
                res.notes.append(f"debugger, start {run + 1}: {message.splitlines()[0]}")
            else:
                res.errors[DEBUGGER_ERROR] = message
            _progress(f"{tag} debugger FAILED: {message}")
            if not starts:
                break  # it did not start here: it would not in the next kernels either
        finally:
            if kp is not None:
                problem = kp.shutdown()
                if problem:
                    res.notes.append(f"shutdown of a debugger kernel: {problem}")
    if starts:
        res.samples["dbg_start_s"] = starts
    for cell in DEBUGGER_CELLS:
        off, on = res.samples.get(f"dbg_{cell}_off_ms"), res.samples.get(f"dbg_{cell}_on_ms")
        if off and on:
            res.values[f"dbg_{cell}_cost"] = _median(on) / _median(off)


# The errors entry that explains the subshell rows' missing figures.
SUBSHELLS_ERROR = "subshells"


def bench_subshells(
    kind: KernelKind, workdir: Path, ctx: zmq.Context, cfg: Config, res: KernelResult
) -> None:
    """Kernel subshells' costs, on a fresh kernel, into ``res``; failures are recorded.

    In order: ``pass`` round trips on the parent shell; the first subshell's
    creation; round trips on the parent shell again, in the subshell with
    the parent idle, then with the parent in ``time.sleep``; create-and-delete
    cycles; the first subshell's deletion. The subshell's requests go through a
    second client. The measures stop at the first failure.
    """
    tag = f"[{kind.name}]"
    kp: KernelProcess | None = None
    other: Client | None = None
    step = "starting the kernel"

    def record(key: str, samples: list[float], title: str) -> None:
        res.samples[key] = [s * 1e3 for s in samples]
        res.values[f"{key}_p90"] = _p90(res.samples[key])
        _progress(
            f"{tag} {title}: median {_median(res.samples[key]):.3f} ms, "
            f"p90 {res.values[f'{key}_p90']:.3f} ms"
        )

    def roundtrips(client: Client, subshell_id: str | None = None) -> list[float]:
        client.drain_iopub()  # what the other client's requests left queued
        n, warmup = cfg.subshell_n, cfg.subshell_warmup
        return measure_roundtrip(client, cfg, "pass", n, warmup, subshell_id)[0]

    try:
        kp = start_kernel(kind, workdir, ctx, cfg)
        parent = kp.client
        assert parent is not None
        step = "connecting a second client"
        other = Client(ctx, kp.info)
        other.settle(cfg.timeout)
        requests = SubshellRequests(parent, min(cfg.timeout, SUBSHELL_REQUEST_TIMEOUT))

        step = "round trips on the parent shell, no subshell"
        record("sub_parent_before_ms", roundtrips(parent), "'pass' on the parent, no subshell")
        step = "creating a subshell"
        subshell_id, created = requests.create()
        res.values["sub_create_first_ms"] = created * 1e3
        _progress(f"{tag} first subshell created in {created * 1e3:.2f} ms")
        requests.check_listed({subshell_id})
        step = "round trips on the parent shell, one subshell"
        record("sub_parent_after_ms", roundtrips(parent), "'pass' on the parent, one subshell")
        res.values["sub_routing_cost"] = _median(res.samples["sub_parent_after_ms"]) / _median(
            res.samples["sub_parent_before_ms"]
        )
        step = "round trips in the subshell, parent idle"
        record("sub_idle_ms", roundtrips(other, subshell_id), "'pass' in a subshell, parent idle")
        step = "round trips in the subshell, parent in time.sleep"

        def chunk(count: int, warmup: int) -> list[float]:
            assert other is not None
            return measure_roundtrip(other, cfg, "pass", count, warmup, subshell_id)[0]

        other.drain_iopub()
        busy = measure_during_parent_sleep(
            parent, chunk, cfg.subshell_n, cfg.subshell_warmup, cfg.timeout
        )
        record("sub_busy_ms", busy, "'pass' in a subshell, parent in time.sleep")
        step = "creating and deleting subshells"
        creates, deletes = measure_create_delete(requests, cfg.subshell_cycles)
        record("sub_create_ms", creates, "create a subshell")
        record("sub_delete_ms", deletes, "delete a subshell")
        step = "deleting the first subshell"
        requests.delete(subshell_id)
        requests.check_listed(set())
        step = "an execute_request for the deleted subshell"
        check_unknown_subshell(other, subshell_id, min(cfg.timeout, SUBSHELL_REQUEST_TIMEOUT))
        step = "'pass' on the parent shell after the subshells"
        parent.sync(cfg.timeout)
    except (BenchError, SubshellError) as e:
        message = f"{e} ({step})"
        if kp is not None and kp.proc is not None and kp.proc.poll() is not None:
            message += f" (kernel died: exit status {kp.proc.returncode})"
        if kp is not None and isinstance(e, BenchError) and (tail := kp.log_tail(8)):
            message += f"\n--- kernel log ---\n{tail}"
        res.errors[SUBSHELLS_ERROR] = message
        _progress(f"{tag} subshells FAILED: {message}")
    finally:
        if other is not None:
            if other.unexpected_aborts:
                res.aborts[SUBSHELLS_ERROR] = other.unexpected_aborts
            other.close()
        if kp is not None:
            if kp.client is not None and kp.client.unexpected_aborts:
                res.aborts[SUBSHELLS_ERROR] = (
                    res.aborts.get(SUBSHELLS_ERROR, 0) + kp.client.unexpected_aborts
                )
            problem = kp.shutdown()
            if problem:
                res.notes.append(f"shutdown of the subshell kernel: {problem}")


# The errors (or n/a) entry that explains the journal rows' missing figures.
JOURNAL_ERROR = "journal"


def bench_crash_journal(
    kind: KernelKind, workdir: Path, ctx: zmq.Context, cfg: Config, res: KernelResult
) -> None:
    """The crash journal's cost (``bench_journal.py``), into ``res``; failures are recorded.

    A kernel without a journal gets its plain round trips, measured the same
    way on fresh kernels, in the "off" rows.
    """
    tag = f"[{kind.name}]"
    journal_off = kind.journal_off
    if journal_off is None:
        states: tuple[str, ...] = ("off",)
        labels = {"off": "no journal"}
        res.unsupported[JOURNAL_ERROR] = (
            "no crash journal; the 'journal off' rows show its plain round trip, for scale"
        )
    else:
        states = JOURNAL_STATES
        labels = {"on": "journal on", "off": f"journal off ({' '.join(journal_off)})"}
    variants = {"on": kind, "off": replace(kind, argv=kind.argv + (journal_off or ()))}

    def roundtrips(kp: KernelProcess, count: int, warmup: int) -> list[float]:
        assert kp.client is not None
        return measure_roundtrip(kp.client, cfg, "pass", count, warmup)[0]

    def describe(kp: KernelProcess) -> str:
        """Whether the kernel a measure failed on had died, and its log's end."""
        detail = ""
        if kp.proc is not None and kp.proc.poll() is not None:
            detail += f" (kernel died: exit status {kp.proc.returncode})"
        if tail := kp.log_tail(8):
            detail += f"\n--- kernel log ---\n{tail}"
        return detail

    run = JournalRun(
        lambda state: start_kernel(variants[state], workdir, ctx, cfg),
        roundtrips,
        states=states,
        n=cfg.journal_n,
        warmup=cfg.journal_warmup,
        rounds=cfg.journal_rounds,
        pairs=cfg.journal_pairs,
        labels=labels,
        progress=lambda text: _progress(f"{tag} {text}"),
        describe=describe,
    )
    try:
        figures = run.measure()
    except (BenchError, JournalError) as e:
        message = f"{e} ({run.step}){run.detail}"
        res.errors[JOURNAL_ERROR] = message
        _progress(f"{tag} journal FAILED: {message}")
        return
    finally:
        res.notes += run.notes
    for state, samples in figures.samples.items():
        key = f"jnl_{state}_ms"
        res.samples[key] = [s * 1e3 for s in samples]
        res.values[f"{key}_p90"] = _p90(res.samples[key])
        _progress(
            f"{tag} 'pass', {labels[state]}: median {_median(res.samples[key]):.3f} ms, "
            f"p90 {res.values[f'{key}_p90']:.3f} ms ({len(samples)} round trips)"
        )
    if "on" in figures.samples:
        cost = _median(res.samples["jnl_on_ms"]) / _median(res.samples["jnl_off_ms"])
        res.values["jnl_cost"] = cost
        _progress(f"{tag} the journal's cost: on / off = {cost:.3f}")
    if figures.journals:
        res.values["jnl_size_kb"] = max(j.size for j in figures.journals) / 1024


# The errors (or n/a) entry that explains the GUI rows' missing figures.
GUI_ERROR = "gui"


def bench_gui(
    kind: KernelKind, workdir: Path, ctx: zmq.Context, cfg: Config, res: KernelResult
) -> None:
    """GUI event loops' costs (``bench_gui.py``), on a fresh kernel; failures are recorded."""
    tag = f"[{kind.name}]"
    # A hung round trip fails after 15 s, not the harness's minute.
    gui_cfg = replace(cfg, timeout=min(cfg.timeout, 15.0))
    run = GuiRun(
        lambda: start_kernel(kind, workdir, ctx, cfg),
        lambda kp, count, warmup: measure_roundtrip(kp.client, gui_cfg, "pass", count, warmup)[0],
        n=cfg.roundtrip_n,
        warmup=cfg.roundtrip_warmup,
        interrupt_reps=cfg.interrupt_reps,
        timeout=gui_cfg.timeout,
        progress=lambda text: _progress(f"{tag} {text}"),
    )
    # ipykernel's Qt loop can stop answering (see bench_gui.py): only the
    # reference may lack a GUI feature.
    failures = res.unsupported if kind.name == REFERENCE else res.errors
    try:
        with display(run.progress):
            run.measure()
    except (BenchError, GuiError) as e:
        message = f"{e} ({run.step})"
        failures[GUI_ERROR] = message
        _progress(f"{tag} gui FAILED: {message}")
    res.samples.update(run.figures.samples)
    res.values.update(run.figures.values)
    res.notes += run.figures.notes
    failures.update(run.figures.missing)


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def _p90(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


# -- reporting ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    key: str
    title: str
    unit: str
    fmt: str
    goal: str
    ratio: bool = True
    optional: bool = False  # left out of the table when no kernel has a figure for it
    section: str = "core"  # shown when this part of the benchmark ran (``SECTIONS``)
    error_key: str | None = None  # the errors entry that explains a missing figure


def debugger_rows() -> list[Row]:
    """The debugger section's rows: each cell's round trips off, on and off again; the start."""
    out: list[Row] = []

    def row(key: str, title: str, unit: str, fmt: str, goal: str = "", ratio: bool = True) -> Row:
        return Row(key, title, unit, fmt, goal, ratio, section="debugger", error_key=DEBUGGER_ERROR)

    for cell, title in CELL_TITLES.items():
        out += [
            row(f"dbg_{cell}_off_ms", f"execute {title}, debugger off", "ms", "{:.3f}"),
            row(f"dbg_{cell}_off_ms_p90", "  p90", "ms", "{:.3f}"),
            row(f"dbg_{cell}_on_ms", "  debugger started, no breakpoint", "ms", "{:.3f}"),
            row(f"dbg_{cell}_on_ms_p90", "  p90", "ms", "{:.3f}"),
            row(
                f"dbg_{cell}_cost", "  cost of tracing (started / off)", "x", "{:.2f}", ratio=False
            ),
            row(f"dbg_{cell}_after_ms", "  debugger switched off again", "ms", "{:.3f}"),
        ]
    out.append(row("dbg_start_s", "start the debugger (initialize to attach)", "s", "{:.3f}"))
    return out


def subshell_rows() -> list[Row]:
    """The subshell section's rows: round trips on the parent and in a subshell; create, delete."""

    def row(key: str, title: str, unit: str, fmt: str, goal: str = "", ratio: bool = True) -> Row:
        return Row(
            key, title, unit, fmt, goal, ratio, section="subshells", error_key=SUBSHELLS_ERROR
        )

    out = []
    for key, title in (
        ("sub_parent_before_ms", "execute 'pass', parent shell, no subshell"),
        ("sub_parent_after_ms", "  parent shell, one subshell created"),
        ("sub_idle_ms", "  in a subshell, parent shell idle"),
        ("sub_busy_ms", "  in a subshell, parent shell in time.sleep"),
    ):
        out += [row(key, title, "ms", "{:.3f}"), row(f"{key}_p90", "    p90", "ms", "{:.3f}")]
    out += [
        row("sub_routing_cost", "  parent shell: one subshell / none", "x", "{:.2f}", ratio=False),
        row("sub_create_first_ms", "create the first subshell", "ms", "{:.2f}"),
        row("sub_create_ms", "create a subshell", "ms", "{:.2f}"),
        row("sub_create_ms_p90", "  p90", "ms", "{:.2f}"),
        row("sub_delete_ms", "delete a subshell", "ms", "{:.2f}"),
        row("sub_delete_ms_p90", "  p90", "ms", "{:.2f}"),
    ]
    return out


def journal_rows(cfg: Config) -> list[Row]:
    """The journal section's rows: round trips with the journal on and off, the cost, the file."""

    def row(key: str, title: str, unit: str, fmt: str, goal: str = "", ratio: bool = True) -> Row:
        return Row(key, title, unit, fmt, goal, ratio, section="journal", error_key=JOURNAL_ERROR)

    cells = cells_per_kernel(
        cfg.journal_n, cfg.journal_warmup, cfg.journal_rounds, cfg.journal_pairs
    )
    return [
        row("jnl_on_ms", "execute 'pass', crash journal on (default)", "ms", "{:.3f}"),
        row("jnl_on_ms_p90", "  p90", "ms", "{:.3f}"),
        row("jnl_off_ms", "  crash journal off", "ms", "{:.3f}"),
        row("jnl_off_ms_p90", "  p90", "ms", "{:.3f}"),
        row("jnl_cost", "  journal's cost (on / off)", "x", "{:.3f}", "<= 1.02", ratio=False),
        row("jnl_size_kb", f"  journal file after {cells} cells", "KB", "{:.1f}", ratio=False),
    ]


def gui_rows() -> list[Row]:
    """The GUI section's rows (bench_gui.py): round trips with and without Qt; interrupts."""
    return [
        Row(
            key, title, unit, fmt, goal, key not in GUI_NO_RATIO, section="gui", error_key=GUI_ERROR
        )
        for key, title, unit, fmt, goal in GUI_ROWS
    ]


def rows(cfg: Config) -> tuple[Row, ...]:
    """The table's rows, in order (some titles depend on the configuration)."""
    print_title = "print 200k lines, to idle"
    if cfg.print_lines != 200_000:
        print_title = f"print {cfg.print_lines} lines, to idle"
    live_rows: list[Row] = []
    for v in LIVE_VARIANTS:
        live_rows += [
            Row(f"{v.key}_ms", f"{v.title}: median delay", "ms", "{:.1f}", "<= 100"),
            Row(f"{v.key}_max_ms", "  max delay", "ms", "{:.1f}", "<= 100"),
            Row(
                f"{v.key}_msgs", f"  stream messages ({cfg.live_lines} lines)", "msgs", "{:.0f}", ""
            ),
        ]
    mib = cfg.big_output_mib
    big_rows = (
        ("big_s", f"print {mib} MiB in 1 KiB lines, to idle", "s", "{:.2f}", "", True),
        ("big_mb_per_s", "  throughput", "MB/s", "{:.1f}", "", True),
        ("big_bytes", "  bytes received", "B", "{:,.0f}", "", False),
        ("big_complete", "  all bytes arrived in order", "", "yesno", "yes", False),
        ("big_msgs", "  stream messages", "msgs", "{:,.0f}", "", True),
        ("big_kernel_cpu_s", "  kernel CPU time (all threads)", "s", "{:.2f}", "", True),
        ("big_client_cpu_s", "  client CPU time (all threads)", "s", "{:.2f}", "", True),
        ("big_rss_before_mb", "  kernel RSS before the cell", "MB", "{:.1f}", "", True),
        ("big_peak_rss_mb", "  kernel peak RSS during the cell", "MB", "{:.1f}", "", True),
        (
            "big_rss_growth_mb",
            "  kernel RSS growth (peak - before)",
            "MB",
            "{:.1f}",
            "<= 100",
            True,
        ),
    )
    every = (
        Row("roundtrip_ms", "execute 'pass' round trip", "ms", "{:.3f}", "<= 0.4"),
        Row(
            "roundtrip_client_cpu_us",
            "  client CPU per round trip",
            "us",
            "{:.0f}",
            "",
            ratio=False,
        ),
        Row("pipelined_rps", "pipelined execute", "req/s", "{:,.0f}", ">= 5000"),
        Row("control_ms", "control kernel_info during sleep", "ms", "{:.2f}", "<= 2"),
        Row("shell_await_ms", "shell kernel_info while a cell awaits", "ms", "{:.2f}", "<= 2"),
        Row("comm_echo_ms", "comm echo while a cell awaits", "ms", "{:.2f}", "<= 2"),
        Row("interrupt_message_ms", "interrupt (interrupt_request)", "ms", "{:.1f}", "<= 10"),
        Row("interrupt_signal_ms", "interrupt (SIGINT)", "ms", "{:.1f}", "<= 10"),
        Row("startup_s", "start to first kernel_info_reply", "s", "{:.3f}", "<= 0.2"),
        Row("print_s", print_title, "s", "{:.3f}", "<= 0.5"),
        Row("print_lines_per_s", "  lines/s", "lines/s", "{:,.0f}", ""),
        Row("print_mb_per_s", "  MB/s", "MB/s", "{:.2f}", ""),
        Row("print_msgs", "  stream messages for them", "msgs", "{:,.0f}", ""),
        Row("print_complete", "  all lines arrived in order", "", "yesno", "yes", ratio=False),
        *live_rows,
        Row("rss_mb", "RSS after the above", "MB", "{:.1f}", "<= 60"),
        *(
            Row(key, title, unit, fmt, goal, ratio=ratio, optional=True)
            for key, title, unit, fmt, goal, ratio in big_rows
        ),
        *debugger_rows(),
        *subshell_rows(),
        *journal_rows(cfg),
        *gui_rows(),
    )
    return tuple(row for row in every if row.section in cfg.sections)


def _short(message: str, limit: int = 50) -> str:
    """The first line of an error message, cut to fit a table cell."""
    first = message.splitlines()[0] if message else ""
    return first if len(first) <= limit else first[: limit - 3] + "..."


def _meets(value: float, goal: str) -> bool:
    op, _, number = goal.partition(" ")
    return value <= float(number) if op == "<=" else value >= float(number)


def render_table(results: list[KernelResult], cfg: Config) -> str:
    """The side-by-side table, with ratios to ipykernel and the goals."""
    ref = next((r for r in results if r.kind.name == REFERENCE), None)
    others = [r for r in results if r is not ref]
    headers = ["measure", "unit", *(r.kind.label for r in results)]
    headers += [f"{r.kind.name}/{REFERENCE}" for r in others] if ref else []
    headers.append("akernel goal")
    body: list[list[str]] = []
    explained: set[tuple[str, str]] = set()  # (kernel, errors entry) already shown in a row
    for row in rows(cfg):
        if row.optional and not any(
            row.key in r.values or row.key in r.errors or "big_s" in r.errors for r in results
        ):
            continue
        line = [row.title, row.unit]
        for r in results:
            value = r.values.get(row.key)
            if row.fmt == "yesno":
                line.append("-" if value is None else ("yes" if value else "NO"))
            elif value is None and row.error_key is not None and row.error_key in r.errors:
                # The first row it leaves empty says why; the next ones refer to it.
                seen = (r.kind.name, row.error_key)
                reason = _short(r.errors[row.error_key])
                line.append("failed" if seen in explained else f"failed: {reason}")
                explained.add(seen)
            elif value is None:
                # A whole section the kernel cannot do is one entry, under its error key.
                unsupported = row.key in r.unsupported or (
                    row.error_key is not None and row.error_key in r.unsupported
                )
                line.append("FAIL" if row.key in r.errors else "n/a" if unsupported else "-")
            else:
                mark = ""
                if row.goal and r.kind.name != REFERENCE:
                    mark = "" if _meets(value, row.goal) else " *"
                line.append(row.fmt.format(value) + mark)
        if ref:
            for r in others:
                a, b = r.values.get(row.key), ref.values.get(row.key)
                line.append(f"{a / b:.2f}x" if a is not None and b and row.ratio else "-")
        line.append(row.goal)
        body.append(line)
    widths = [max(len(x[i]) for x in [headers, *body]) for i in range(len(headers))]

    def fmt_line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 or i == 1 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [fmt_line(headers), "  ".join("-" * w for w in widths)]
    out += [fmt_line(line) for line in body]
    out.append("")
    out.append(
        "medians; ratio = kernel / ipykernel (lower is better, except for rates: req/s, "
        "lines/s, MB/s); * = akernel goal not met; n/a = the kernel cannot do it"
    )
    if "core" in cfg.sections:
        out.append(
            f"live print: {cfg.live_lines} lines 'i time.time()' {cfg.live_gap:g} s apart "
            "(time.sleep between, or a busy loop), delay = arrival at the client - the time "
            "in the line"
        )
    if "debugger" in cfg.sections:
        out.append(
            "debugger: on a fresh kernel, started as JupyterLab does (debugInfo, initialize, "
            "attach, debugInfo, configurationDone), no breakpoints, then switched off again "
            "(disconnect); its start is timed from "
            f"initialize sent to attach answered, the first in each of {cfg.debugger_start_runs} "
            "kernel processes"
        )
    if "subshells" in cfg.sections:
        out.append(
            f"subshells: on a fresh kernel, {cfg.subshell_n} round trips per measure; two "
            "clients connected throughout (the second sends the subshell's requests, so the "
            "'no subshell' figure can differ from the round trip above); the parent's sleep: "
            f"time.sleep({PARENT_SLEEP:g}) per round, checked to outlast each round "
            f"(chunks of {CHUNK}); {cfg.subshell_cycles} create-and-delete cycles"
        )
    if "journal" in cfg.sections:
        out.append(
            f"journal: {cfg.journal_pairs} pair(s) of fresh kernels, journal on and off "
            f"({JOURNAL_OFF_FLAG}), both running; {cfg.journal_n} round trips per state in "
            f"{cfg.journal_rounds} interleaved rounds per pair, ABBA order; ipykernel keeps no "
            "journal (its plain round trip is in the 'off' rows)"
        )
    if "gui" in cfg.sections:
        out.append(
            f"gui: on a fresh kernel with a display, {cfg.roundtrip_n} round trips per state in "
            "10 interleaved rounds (ABBA), Qt switched with %gui qt (a QLabel shown) and %gui; "
            "interrupts 0.2 s into the cell"
        )
    for r in results:
        for key, message in r.errors.items():
            first = message.splitlines()[0] if message else ""
            out.append(f"PROBLEM {r.kind.label}: {key}: {first}")
        for key, message in r.unsupported.items():
            out.append(f"n/a {r.kind.label}: {key}: {message}")
        for note in r.notes:
            out.append(f"note {r.kind.label}: {note}")
    return "\n".join(out)


def client_decode_cost_us() -> float:
    """Microseconds the client spends decoding one small message (its own overhead)."""
    codec = Codec(os.urandom(16).hex())
    frames = [b"kernel.x.status", *codec.session.serialize("status", {"execution_state": "idle"})]
    costs = []
    for _ in range(5):  # the best of five batches: the machine may be busy
        t0 = time.perf_counter()
        for _ in range(2000):
            codec.decode(frames)
        costs.append((time.perf_counter() - t0) / 2000 * 1e6)
    return min(costs)


def environment() -> dict[str, Any]:
    """Versions and machine facts that go with the figures."""
    import importlib.metadata as md

    def version(dist: str) -> str | None:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()),
        "akernel": version("akernel"),
        "ipykernel": version("ipykernel"),
        "ipython": version("ipython"),
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "anyio": version("anyio"),
        "trio": version("trio"),
        "client_decode_us_per_msg": round(client_decode_cost_us(), 2),
    }


def summary(results: list[KernelResult], cfg: Config, env: dict[str, Any]) -> dict[str, Any]:
    """The machine-readable summary."""
    ref = next((r for r in results if r.kind.name == REFERENCE), None)
    kernels: dict[str, Any] = {}
    for r in results:
        stats = {}
        for key, samples in r.samples.items():
            ordered = sorted(samples)
            stats[key] = {
                "median": statistics.median(ordered),
                "min": ordered[0],
                "max": ordered[-1],
                "p90": _p90(ordered),
                "n": len(ordered),
            }
        ratios = {}
        if ref is not None and r is not ref:
            no_ratio = {row.key for row in rows(cfg) if not row.ratio}
            for key, value in r.values.items():
                base = ref.values.get(key)
                if value is not None and base and key not in no_ratio:
                    ratios[key] = value / base
        kernels[r.kind.name] = {
            "label": r.kind.label,
            "values": r.values,
            "ratios_to_ipykernel": ratios,
            "stats": stats,
            "errors": r.errors,
            "unsupported": r.unsupported,
            "unexpected_aborts": r.aborts,
            "notes": r.notes,
        }
    return {
        "config": cfg.__dict__,
        "environment": env,
        "goals": {row.key: row.goal for row in rows(cfg) if row.goal},
        "kernels": kernels,
    }


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument(
        "--kernels",
        default=",".join(KERNELS),
        help=f"comma-separated, from {', '.join(KERNELS)} (default: all)",
    )
    parser.add_argument("--json", metavar="PATH", help="write the JSON summary to PATH")
    parser.add_argument(
        "--only",
        choices=SECTIONS,
        default=None,
        help="run only this part: the debugger's measures, the subshells', the crash journal's, "
        "the GUI event loops', or all the others (default: all)",
    )
    parser.add_argument(
        "--print-lines", type=int, default=None, help="lines for the print measure (200000)"
    )
    parser.add_argument(
        "--big-output",
        action="store_true",
        help="also print 1 GiB in 1 KiB lines per kernel (time, completeness, kernel memory)",
    )
    parser.add_argument(
        "--big-output-mib",
        type=int,
        default=None,
        metavar="MIB",
        help="size of the big output in MiB (1024; implies --big-output)",
    )
    args = parser.parse_args(argv)
    if args.big_output_mib is not None and args.big_output_mib <= 0:
        parser.error("--big-output-mib must be positive")
    names = [n.strip() for n in args.kernels.split(",") if n.strip()]
    unknown = [n for n in names if n not in KERNELS]
    if unknown or not names:
        parser.error(f"unknown kernel {unknown}; choose from {', '.join(KERNELS)}")
    args.kernel_names = list(dict.fromkeys(names))
    return args


def main(argv: list[str] | None = None) -> int:
    """Benchmark the selected kernels one after the other, then report."""
    args = parse_args(argv)
    cfg = Config.quick() if args.quick else Config()
    if args.print_lines is not None:
        cfg = Config(**{**cfg.__dict__, "print_lines": args.print_lines})
    if args.big_output or args.big_output_mib is not None:
        cfg = Config(**{**cfg.__dict__, "big_output_mib": args.big_output_mib or 1024})
    if args.only is not None:
        cfg = Config(**{**cfg.__dict__, "sections": (args.only,)})
    env = environment()
    _progress(
        f"benchmarking {', '.join(args.kernel_names)} on {env['cpus']} CPUs "
        f"(load {env['loadavg_at_start'][0]:.2f}){' [quick]' if args.quick else ''}"
    )
    results: list[KernelResult] = []
    ctx = zmq.Context()
    t_start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="akernel-bench-") as tmp:
            for name in args.kernel_names:
                results.append(bench_kernel(KERNELS[name], Path(tmp), ctx, cfg))
    finally:
        ctx.destroy(linger=0)
    env["duration_s"] = round(time.perf_counter() - t_start, 1)
    env["loadavg_at_end"] = list(os.getloadavg())

    print(render_table(results, cfg))
    print(
        f"\n(total {env['duration_s']} s; load average {env['loadavg_at_start'][0]:.2f} at start, "
        f"{env['loadavg_at_end'][0]:.2f} at end; client decode cost "
        f"{env['client_decode_us_per_msg']} us/message)"
    )
    data = summary(results, cfg, env)
    text = json.dumps(data, indent=1, default=str)
    if args.json:
        Path(args.json).write_text(text + "\n")
        print(f"JSON summary written to {args.json}")
    else:
        print("\nJSON summary:")
        print(text)
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
