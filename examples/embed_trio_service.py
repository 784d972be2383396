"""A small trio TCP service with a Jupyter kernel embedded in its event loop.

The service speaks a line protocol over TCP (``trio.serve_tcp``). For each line
a client sends, it answers with one line:

* ``items`` -> the service's items, as JSON (counted as a request);
* ``state`` -> what the service sees of its process, as JSON:
  ``{"kernel": "running"|"stopped", "ticks": N, "stdout": {...}}`` (the service's
  background ticker counts ``ticks``);
* ``stop-kernel`` -> stops the kernel (the service goes on), answers ``stopping``;
* ``replace-stdout`` -> wraps ``sys.stdout`` in a stream of the service's own (as
  logging libraries do); answers the new ``stdout`` identity, as JSON;
* ``host-task NAME`` -> starts a task of the service's own (not a cell's) that
  prints a line; answers ``started NAME``;
* anything else -> ``N TEXT``: the request count, and the line upper-cased.

The service runs inside ``async with akernel.embedded_kernel(...)``: its nursery
is the block's body, so stopping the kernel must leave it running. The live
service is in the kernel's namespace as ``service``: a notebook or console can
look at it and change it while it serves, and cells can ``await`` its own
coroutines::

    In [1]: service.count
    In [2]: service.count = 1000           # the next answer starts with 1001
    In [3]: await service.add_item("x")    # "items" now lists "x"

Run it, then connect with the command it prints::

    python examples/embed_trio_service.py --port 9000 --connection-file /tmp/service.json
    jupyter console --existing /tmp/service.json
    nc 127.0.0.1 9000

``--port 0`` (the default) picks a free port. ``--kernel-option NAME=VALUE``
(repeatable) passes a kernel option, e.g. ``capture_sigint=True``. Once both the
service and the kernel are ready, one line goes to stdout::

    ready tcp://127.0.0.1:PORT connection_file=PATH

Each request is logged to the process's stdout, not to the kernel's client.
Shutting the kernel down from the client (``exit`` in ``jupyter console``)
stops the kernel only: the service keeps serving. SIGTERM or Ctrl-C stop it.
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import signal
import sys
from typing import Any

import trio

import akernel

MAX_LINE = 64 * 1024


class HostStdout:
    """The service's own wrapper of ``sys.stdout`` (what a logging library installs)."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped

    def write(self, text: str) -> int:
        return self.wrapped.write(text)

    def flush(self) -> None:
        self.wrapped.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def stdout_identity() -> dict[str, Any]:
    """What ``sys.stdout`` is, as JSON."""
    stream = sys.stdout
    return {
        "id": id(stream),
        "type": f"{type(stream).__module__}.{type(stream).__qualname__}",
        "is_original": stream is sys.__stdout__,
        "is_host_replacement": isinstance(stream, HostStdout),
    }


class Service:
    """The service's state, and its connection handler."""

    def __init__(self) -> None:
        self.count = 0
        self.items: list[str] = ["apple", "banana"]
        self.connections = 0
        self.ticks = 0
        self.kernel: akernel.EmbeddedKernel | None = None
        self.nursery: trio.Nursery | None = None
        # The service's root task, to compare with what cells see.
        self.root_task = trio.lowlevel.current_root_task()

    async def add_item(self, name: str) -> int:
        """Add an item, the way a real service would: after some I/O. Returns the count."""
        await trio.sleep(0.01)  # e.g. a database write
        self.items.append(name)
        return len(self.items)

    async def tick(self) -> None:
        """The service's own background work (a metrics flush, say)."""
        while True:
            await trio.sleep(0.02)
            self.ticks += 1

    async def host_job(self, name: str) -> None:
        await trio.sleep(0.01)
        print(f"service: host task {name}", flush=True)

    def answer(self, line: str) -> str:
        command, _, argument = line.partition(" ")
        if command == "state":
            stopped = self.kernel is None or self.kernel.stopped
            return json.dumps(
                {
                    "kernel": "stopped" if stopped else "running",
                    "ticks": self.ticks,
                    "stdout": stdout_identity(),
                }
            )
        if command == "stop-kernel":
            if self.kernel is not None:
                self.kernel.stop()
            return "stopping"
        if command == "replace-stdout":
            sys.stdout = HostStdout(sys.stdout)
            return json.dumps(stdout_identity())
        if command == "host-task":
            assert self.nursery is not None
            self.nursery.start_soon(self.host_job, argument or "host")
            return f"started {argument or 'host'}"
        self.count += 1
        if line == "items":
            return json.dumps(self.items)
        return f"{self.count} {line.upper()}"

    async def handle(self, stream: trio.SocketStream) -> None:
        """Answer each line of one connection until the client closes it."""
        self.connections += 1
        buffer = b""
        try:
            async with stream:
                while True:
                    while b"\n" not in buffer:
                        data = await stream.receive_some()
                        if not data or len(buffer) > MAX_LINE:
                            return
                        buffer += data
                    raw, buffer = buffer.split(b"\n", 1)
                    line = raw.decode("utf-8", "replace").strip()
                    reply = self.answer(line)
                    print(f"service: {line!r} -> {reply!r}", flush=True)
                    await stream.send_all(reply.encode() + b"\n")
        except trio.BrokenResourceError:
            pass


async def log_kernel_stop(kernel: akernel.EmbeddedKernel) -> None:
    await kernel.wait_stopped()
    print("service: kernel stopped, still serving", flush=True)


async def stop_on_signals(signals: Any, cancel_scope: trio.CancelScope) -> None:
    async for _ in signals:
        cancel_scope.cancel()
        return


async def main(port: int, connection_file: str | None, kernel_options: dict[str, Any]) -> None:
    service = Service()
    # The service's signal handling is in place before the kernel starts: a kernel
    # asked to take SIGINT (capture_sigint=True) hands the idle Ctrl-C on to it.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with akernel.embedded_kernel(
            connection_file=connection_file, user_ns={"service": service}, **kernel_options
        ) as kernel:
            service.kernel = kernel
            async with trio.open_nursery() as nursery:
                service.nursery = nursery
                nursery.start_soon(stop_on_signals, signals, nursery.cancel_scope)
                nursery.start_soon(service.tick)
                nursery.start_soon(log_kernel_stop, kernel)
                listeners = await nursery.start(
                    functools.partial(trio.serve_tcp, service.handle, port, host="127.0.0.1")
                )
                port = listeners[0].socket.getsockname()[1]
                path = kernel.connection_file
                print(f"ready tcp://127.0.0.1:{port} connection_file={path}")
                print(f"service: connect with: jupyter console --existing {path}", flush=True)
    print("service: stopped", flush=True)


def kernel_option(text: str) -> tuple[str, Any]:
    """``NAME=VALUE``: a Python literal (``True``, ``0.5``), or else a string."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: a free one)")
    parser.add_argument(
        "--connection-file",
        default=None,
        help="the kernel's connection file (default: a new one in Jupyter's runtime dir)",
    )
    parser.add_argument(
        "--kernel-option",
        type=kernel_option,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a kernel option (akernel.kernel.Kernel trait), e.g. capture_sigint=True",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    try:
        trio.run(main, args.port, args.connection_file, dict(args.kernel_option))
    except KeyboardInterrupt:  # Ctrl-C before the signal handler was in place
        pass
