"""Host applications with an embedded kernel, run as real processes, and how to drive them.

The hosts are the examples in ``examples/``:

* ``embed_asyncio_http.py``: an asyncio HTTP server (standard library), the kernel
  started with ``asyncio.create_task(kernel.serve())`` and ``await kernel.ready()``;
* ``embed_starlette_uvicorn.py``: a Starlette app under uvicorn on uvloop, the
  kernel in its lifespan (``akernel.embedded_kernel``);
* ``embed_trio_service.py``: a trio line-based TCP service running inside
  ``async with akernel.embedded_kernel()``.

Each takes ``--port``, ``--connection-file`` and ``--kernel-option NAME=VALUE``
(repeatable), prints ``ready ADDRESS connection_file=PATH`` once both it and its
kernel serve, logs each request to its stdout (``app: `` / ``service: ``), has its
state in the kernel's namespace (``app`` / ``service``, with a request counter and
items), and answers, through its own protocol (HTTP GET, or a TCP line):

* ``state``: ``{"kernel": "running"|"stopped", "ticks": N, "stdout": {...}}``, plus
  ``"loop_exceptions"`` for the asyncio hosts (what the host's own loop exception
  handler, installed before the kernel, was given). ``ticks`` counts the host's
  own background job; ``stdout`` is ``sys.stdout``'s identity (``id``, ``type``,
  ``is_original``: it is ``sys.__stdout__``, ``is_host_replacement``: it is the
  host's own wrapper);
* ``stop-kernel``: the host calls ``kernel.stop()``;
* ``replace-stdout``: the host wraps the current ``sys.stdout`` in its own stream;
* ``host-task NAME`` (``fail``: asyncio hosts only): the host starts a task of its
  own that prints ``<prefix>host task NAME`` (and raises, with ``fail``).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jupyter_client.blocking import BlockingKernelClient

from .utils import TIMEOUT

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
START_TIMEOUT = 30  # process start until its ready line (imports IPython, binds sockets)
STOP_TIMEOUT = 20  # SIGTERM until the process is gone
REQUEST_TIMEOUT = 10  # one HTTP request or TCP line
READY = re.compile(r"^ready (?P<address>\S+) connection_file=(?P<path>.+)$")
EXISTING = re.compile(r"jupyter console --existing (?P<path>\S+)")


# --- Subprocesses ---------------------------------------------------------------------


class LineReader:
    """Collects the lines of a text pipe in a daemon thread, to wait on them."""

    def __init__(self, pipe) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._changed = threading.Condition()
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe) -> None:
        try:
            for line in pipe:
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        finally:
            pipe.close()
            with self._changed:
                self.closed = True
                self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, found: Callable[[str], object], timeout: float = TIMEOUT) -> object:
        """The first truthy ``found(line)`` over all lines, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            checked = 0
            while True:
                for line in self.lines[checked:]:
                    result = found(line)
                    if result:
                        return result
                checked = len(self.lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed:
                    lines = "\n".join(self.lines)
                    raise AssertionError(f"not found in output (closed={self.closed}):\n{lines}")
                self._changed.wait(remaining)

    def wait_closed(self, timeout: float = TIMEOUT) -> None:
        """Wait until the pipe is read to its end (the process exited and all is read)."""
        with self._changed:
            assert self._changed.wait_for(lambda: self.closed, timeout), "pipe still open"


def spawn(args: list[str], cwd: Path) -> tuple[subprocess.Popen, LineReader, LineReader]:
    """Start ``python ARGS`` with stdout and stderr read line by line.

    Without ``PYTHONUNBUFFERED``: the scripts must flush what they print themselves.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    return process, LineReader(process.stdout), LineReader(process.stderr)


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM) -> int | None:
    """Ask ``process`` to stop with ``sig``, kill it if it does not; its exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
    return process.returncode


def connect(connection_file: str | Path) -> BlockingKernelClient:
    """A client on the kernel of ``connection_file``, its channels started and ready."""
    kc = BlockingKernelClient()
    kc.load_connection_file(str(connection_file))
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=TIMEOUT)
    except Exception:
        kc.stop_channels()
        raise
    return kc


def wait_until(condition: Callable[[], object], timeout: float = TIMEOUT, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.05)


class free_ports:
    """``n`` ports free on 127.0.0.1: held (listening) inside the ``with``, so that
    nothing else takes them, or free once ``release()``d."""

    def __init__(self, n: int) -> None:
        self.sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(n)]
        self.ports = [s.getsockname()[1] for s in self.sockets]

    def release(self) -> list[int]:
        for s in self.sockets:
            s.close()
        return self.ports

    def __enter__(self) -> list[int]:
        return self.ports

    def __exit__(self, *exc: object) -> None:
        self.release()


# --- The hosts' own protocols -----------------------------------------------------------


def http_get(port: int, path: str) -> object:
    """GET ``path`` from an HTTP host; the decoded JSON body (no proxies involved)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status in (200, 404), (response.status, body)
    return json.loads(body)


def tcp_line(port: int, line: str) -> str:
    """Send one line to the trio service; its one-line answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as sock:
        sock.sendall(line.encode() + b"\n")
        with sock.makefile("r", encoding="utf-8") as answers:
            answer = answers.readline()
    assert answer.endswith("\n"), f"no answer to {line!r}: {answer!r}"
    return answer.rstrip("\n")


@dataclass(frozen=True)
class Flavor:
    """One example host, and how to talk to it."""

    name: str
    script: str
    ns: str  # the host's state object's name in the kernel
    counter: str  # attribute counted by each request
    log_prefix: str  # start of the host's own stdout lines
    in_app_loop: str  # expression, True in a cell running in the host's event loop
    http: bool  # speaks HTTP (else the trio service's line protocol)
    backend: str  # the host's event loop: "asyncio" or "trio"

    @property
    def count(self) -> str:
        """The expression for the counter, in a cell."""
        return f"{self.ns}.{self.counter}"


ASYNCIO_APP = Flavor(
    name="asyncio",
    script="embed_asyncio_http.py",
    ns="app",
    counter="hits",
    log_prefix="app: ",
    in_app_loop="id(__import__('asyncio').get_running_loop()) == app.loop_id",
    http=True,
    backend="asyncio",
)
STARLETTE_APP = Flavor(
    name="starlette",
    script="embed_starlette_uvicorn.py",
    ns="app",
    counter="hits",
    log_prefix="app: ",
    in_app_loop=(
        "id(__import__('asyncio').get_running_loop()) == app.loop_id"
        " and isinstance(__import__('asyncio').get_running_loop(), __import__('uvloop').Loop)"
    ),
    http=True,
    backend="asyncio",
)
TRIO_APP = Flavor(
    name="trio",
    script="embed_trio_service.py",
    ns="service",
    counter="count",
    log_prefix="service: ",
    in_app_loop="__import__('trio').lowlevel.current_root_task() is service.root_task",
    http=False,
    backend="trio",
)
FLAVORS = [ASYNCIO_APP, STARLETTE_APP, TRIO_APP]


class AppProcess:
    """A running example host: its process, its output, its port and connection file.

    ``kernel_options`` are ``NAME=VALUE`` strings for ``--kernel-option``;
    ``connection_file`` is the path given to the host (default: a new one in
    ``workdir``); a test may write it first, for the kernel to honour.
    """

    def __init__(
        self,
        flavor: Flavor,
        workdir: Path,
        kernel_options: Iterable[str] = (),
        connection_file: Path | None = None,
    ) -> None:
        self.flavor = flavor
        wanted = connection_file or workdir / f"{flavor.name}-kernel.json"
        args = [str(EXAMPLES / flavor.script), "--port", "0", "--connection-file", str(wanted)]
        for option in kernel_options:
            args += ["--kernel-option", option]
        self.process, self.stdout, self.stderr = spawn(args, workdir)
        try:
            ready = self.stdout.wait_for(READY.match, START_TIMEOUT)
        except AssertionError:
            self.stop()
            raise AssertionError(f"no ready line; stderr:\n{self.stderr.text}") from None
        assert isinstance(ready, re.Match)
        self.address = ready["address"]
        self.port = int(self.address.rsplit(":", 1)[1])
        self.connection_file = Path(ready["path"])
        assert self.connection_file == wanted
        assert self.connection_file.exists()

    def request(self, tag: str = "ping") -> int:
        """One counted request (GET /, or a line); the counter in the answer.

        ``tag`` ends up in the host's log line for the request.
        """
        if self.flavor.http:
            body = http_get(self.port, f"/?tag={tag}")
            assert isinstance(body, dict), body
            return body["hits"]
        count, echoed = tcp_line(self.port, tag).split(" ", 1)
        assert echoed == tag.upper()
        return int(count)

    def items(self) -> list[str]:
        """The items the host holds, asked through its own protocol."""
        if self.flavor.http:
            items = http_get(self.port, "/items")
        else:
            items = json.loads(tcp_line(self.port, "items"))
        assert isinstance(items, list), items
        return items

    def state(self) -> dict[str, Any]:
        """What the host sees of its process (see the module's docstring)."""
        if self.flavor.http:
            state = http_get(self.port, "/state")
        else:
            state = json.loads(tcp_line(self.port, "state"))
        assert isinstance(state, dict), state
        return state

    def stop_kernel(self) -> None:
        """The host stops its kernel (``kernel.stop()``), as its own code would."""
        if self.flavor.http:
            assert http_get(self.port, "/stop-kernel") == {"stopping": True}
        else:
            assert tcp_line(self.port, "stop-kernel") == "stopping"

    def replace_stdout(self) -> dict[str, Any]:
        """The host wraps ``sys.stdout`` in a stream of its own; the new identity."""
        if self.flavor.http:
            identity = http_get(self.port, "/replace-stdout")
        else:
            identity = json.loads(tcp_line(self.port, "replace-stdout"))
        assert isinstance(identity, dict) and identity["is_host_replacement"], identity
        return identity

    def host_task(self, name: str, fail: bool = False) -> None:
        """The host starts a task of its own, which prints (and, with ``fail``, raises)."""
        if self.flavor.http:
            query = urlencode({"name": name, **({"fail": "1"} if fail else {})})
            assert http_get(self.port, f"/host-task?{query}") == {"started": name}
        else:
            assert not fail, "the trio service's tasks do not fail (they would end it)"
            assert tcp_line(self.port, f"host-task {name}") == f"started {name}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop the process with ``sig``; its exit code, once all its output is read."""
        returncode = stop_process(self.process, sig)
        self.stdout.wait_closed()
        self.stderr.wait_closed()
        return returncode
