"""Benchmark akernel (asyncio and trio) against ipykernel, side by side, in one run.

Run it with ``nox -s bench`` or directly::

    python benchmarks/bench_kernel.py [--quick] [--kernels akernel,akernel-trio,ipykernel]
                                      [--json PATH]

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
4. interrupt latency of ``while True: pass``, by ``interrupt_request`` on the
   control channel (message mode) and by SIGINT (signal mode), until the
   execute_reply (``KeyboardInterrupt``) arrives;
5. process start to the first ``kernel_info_reply``;
6. printing 200k lines: time to idle, completeness, number of stream messages;
7. the kernel's resident set size (VmRSS) after all of the above.

Besides timing, the harness checks what it receives: every reply and idle
status must arrive, replies in order, printed lines complete and in order, an
interrupted cell must end in ``KeyboardInterrupt``, and no request may be
answered ``aborted`` when it was sent after the previous cell's reply and idle
(such requests are counted and sent again).

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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import zmq

from akernel.wire import DELIMITER, Session

# -- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelKind:
    """A kernel to benchmark: a short name, a label and its launch command."""

    name: str
    label: str
    argv: tuple[str, ...]


KERNELS: dict[str, KernelKind] = {
    "akernel": KernelKind(
        "akernel",
        "akernel (asyncio)",
        ("-m", "akernel", "launch", "-f", "{connection_file}", "--backend", "asyncio"),
    ),
    "akernel-trio": KernelKind(
        "akernel-trio",
        "akernel (trio)",
        ("-m", "akernel", "launch", "-f", "{connection_file}", "--backend", "trio"),
    ),
    "ipykernel": KernelKind(
        "ipykernel", "ipykernel", ("-m", "ipykernel_launcher", "-f", "{connection_file}")
    ),
}
REFERENCE = "ipykernel"


@dataclass(frozen=True)
class Config:
    """How many iterations each measure does."""

    roundtrip_n: int = 1000
    roundtrip_warmup: int = 100
    pipeline_n: int = 2000
    pipeline_reps: int = 3
    control_rounds: int = 3
    control_samples: int = 15
    interrupt_reps: int = 5
    startup_runs: int = 5
    print_lines: int = 200_000
    print_reps: int = 3
    timeout: float = 60.0

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
            interrupt_reps=2,
            startup_runs=2,
            print_reps=1,
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

    def build(self, msg_type: str, content: dict[str, Any]) -> tuple[str, list[bytes]]:
        """A new request's msg_id and frames, ready to send from a DEALER."""
        frames = self.session.serialize(msg_type, content)
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
    ) -> None:
        self.codec = Codec(info["key"], info["signature_scheme"])
        self.build = self.codec.build
        self.decode = self.codec.decode
        self._timeouts: dict[zmq.Socket, int] = {}
        self.recent: list[str] = []  # the last iopub messages seen, for error reports
        self.unexpected_aborts = 0  # requests aborted although sent after an idle
        url = f"{info['transport']}://{info['ip']}:"

        def make(kind: int, port: int) -> zmq.Socket:
            sock = ctx.socket(kind)
            sock.linger = 0
            sock.sndhwm = 0
            sock.rcvhwm = 0
            if reconnect_ivl_ms is not None:
                sock.setsockopt(zmq.RECONNECT_IVL, reconnect_ivl_ms)
            sock.connect(url + str(port))
            return sock

        self.shell = make(zmq.DEALER, info["shell_port"])
        self.control = make(zmq.DEALER, info["control_port"])
        self.iopub: zmq.Socket | None = None
        if subscribe:
            self.iopub = make(zmq.SUB, info["iopub_port"])
            self.iopub.setsockopt(zmq.SUBSCRIBE, b"")

    def close(self) -> None:
        """Close the sockets without lingering."""
        for sock in (self.shell, self.control, self.iopub):
            if sock is not None:
                sock.close(linger=0)

    # -- sending and receiving --

    def send(self, sock: zmq.Socket, msg_type: str, content: dict[str, Any]) -> str:
        """Build and send a request; return its msg_id."""
        msg_id, frames = self.build(msg_type, content)
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


def write_connection_file(path: Path) -> dict[str, Any]:
    """Write a fresh connection file (mode 0600) and return its contents."""
    shell, iopub, stdin, control, hb = free_ports(5)
    info = {
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

    def connect(self, *, reconnect_ivl_ms: int | None = None, subscribe: bool = True) -> Client:
        """Connect a client; the kernel may bind later (ZeroMQ keeps reconnecting)."""
        self.client = Client(
            self.ctx, self.info, reconnect_ivl_ms=reconnect_ivl_ms, subscribe=subscribe
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


def measure_roundtrip(client: Client, cfg: Config) -> tuple[list[float], float]:
    """Execute round trips of ``pass`` (reply and idle), in seconds.

    Also returns the client's own CPU time per round trip (its main thread, in
    microseconds), to show how much of the figure the harness itself costs.
    """
    assert client.iopub is not None
    shell, iopub, decode = client.shell, client.iopub, client.decode
    samples: list[float] = []
    cpu = 0.0
    not_ok: list[Msg] = []
    for count, keep in ((cfg.roundtrip_warmup, False), (cfg.roundtrip_n, True)):
        requests = [
            client.build("execute_request", {"code": "pass", **EXECUTE_CONTENT})
            for _ in range(count)
        ]
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
                        f"execute of 'pass': no reply or idle within {cfg.timeout:g} s"
                    ) from None
                if keep:
                    samples.append(time.perf_counter() - t0)
                if reply.content["status"] != "ok":
                    not_ok.append(reply)
            cpu = (time.thread_time() - cpu0) / count * 1e6
    if not_ok:
        raise BenchError(
            f"execute of 'pass': {len(not_ok)} replies not ok, first: {_summary(not_ok[0].content)}"
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
    aborts: dict[str, int] = field(default_factory=dict)  # unexpected aborts, by measure


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def start_kernel(kind: KernelKind, workdir: Path, ctx: zmq.Context, cfg: Config) -> KernelProcess:
    """Start a kernel for the in-process measures and wait until it answers and iopub is live."""
    kp = KernelProcess(kind, workdir, ctx)
    try:
        client = kp.connect()
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
    """Run every measure against one kernel kind; failures are recorded, not raised."""
    res = KernelResult(kind)
    tag = f"[{kind.name}]"

    # 5. start to first kernel_info reply (the first launch is a warm-up).
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
        res.samples["print_msgs"] = counts
        res.values["print_complete"] = 0.0 if problems else 1.0
        _progress(
            f"{tag} print {cfg.print_lines}: "
            + ", ".join(f"{t:.3f} s/{c:.0f} msgs" for t, c in zip(times, counts, strict=True))
        )
        if problems:
            raise BenchError(f"print: {problems[0]} ({len(problems)}/{cfg.print_reps} runs)")

    try:
        run("roundtrip_ms", roundtrip)
        run("pipelined_rps", pipelined)
        run("control_ms", control)
        run("interrupt_message_ms", interrupt("message"))
        run("interrupt_signal_ms", interrupt("signal"))
        run("print_s", printing)
        # 7. RSS of the kernel after all of the above.
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


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


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


ROWS = (
    Row("roundtrip_ms", "execute 'pass' round trip", "ms", "{:.3f}", "<= 0.4"),
    Row("roundtrip_client_cpu_us", "  client CPU per round trip", "us", "{:.0f}", "", ratio=False),
    Row("pipelined_rps", "pipelined execute", "req/s", "{:,.0f}", ">= 5000"),
    Row("control_ms", "control kernel_info during sleep", "ms", "{:.2f}", "<= 2"),
    Row("interrupt_message_ms", "interrupt (interrupt_request)", "ms", "{:.1f}", "<= 10"),
    Row("interrupt_signal_ms", "interrupt (SIGINT)", "ms", "{:.1f}", "<= 10"),
    Row("startup_s", "start to first kernel_info_reply", "s", "{:.3f}", "<= 0.2"),
    Row("print_s", "print 200k lines, to idle", "s", "{:.3f}", "<= 0.5"),
    Row("print_msgs", "  stream messages for them", "msgs", "{:,.0f}", ""),
    Row("print_complete", "  all lines arrived in order", "", "{}", "yes", ratio=False),
    Row("rss_mb", "RSS after the above", "MB", "{:.1f}", "<= 60"),
)


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
    for row in ROWS:
        title = row.title
        if row.key == "print_s" and cfg.print_lines != 200_000:
            title = f"print {cfg.print_lines} lines, to idle"
        line = [title, row.unit]
        for r in results:
            value = r.values.get(row.key)
            if row.key == "print_complete":
                line.append("-" if value is None else ("yes" if value else "NO"))
            elif value is None:
                line.append("FAIL" if row.key in r.errors else "-")
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
        "medians; ratio = kernel / ipykernel (lower is better, except pipelined req/s); "
        "* = akernel goal not met"
    )
    for r in results:
        for key, message in r.errors.items():
            first = message.splitlines()[0] if message else ""
            out.append(f"PROBLEM {r.kind.label}: {key}: {first}")
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
                "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
                "n": len(ordered),
            }
        ratios = {}
        if ref is not None and r is not ref:
            no_ratio = {row.key for row in ROWS if not row.ratio}
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
            "unexpected_aborts": r.aborts,
            "notes": r.notes,
        }
    return {
        "config": cfg.__dict__,
        "environment": env,
        "goals": {row.key: row.goal for row in ROWS if row.goal},
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
        "--print-lines", type=int, default=None, help="lines for the print measure (200000)"
    )
    args = parser.parse_args(argv)
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
