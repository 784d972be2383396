"""A small asyncio web app with a Jupyter kernel embedded in its event loop.

The app is a minimal HTTP/1.1 server built on ``asyncio.start_server`` (standard
library only). The kernel is one more asyncio task of the app, started the plain
asyncio way: ``asyncio.create_task(kernel.serve())``, then ``await kernel.ready()``.

* ``GET /`` counts the hit and returns ``{"hits": N, "items": M}`` as JSON;
* ``GET /items`` returns the list of items the app holds;
* ``GET /state`` returns what the app sees of its process (below);
* ``GET /stop-kernel`` stops the kernel (the app goes on);
* ``GET /replace-stdout`` wraps ``sys.stdout`` in a stream of the app's own, as
  logging libraries do;
* ``GET /host-task?name=N[&fail=1]`` starts a task of the app's own (not a cell's)
  that prints a line and, with ``fail=1``, raises.

(Other query strings are ignored, and logged.)

The app installs its own exception handler on the loop before the kernel starts
(as error trackers like Sentry do): it records what it is given, then hands it to
asyncio's default handler. ``/state`` returns ``{"kernel": "running"|"stopped",
"ticks": N, "loop_exceptions": [...], "stdout": {...}}``: the app's background
ticker counts ``ticks``.

The kernel runs in the same event loop, with the live app in its namespace as
``app``: a notebook or console can look at it and change it while it serves,
and cells can ``await`` the app's own coroutines::

    In [1]: app.hits
    In [2]: app.hits = 1000          # the next GET / says 1001
    In [3]: await app.add_item("x")  # GET /items now lists "x"

Run it, then connect with the command it prints::

    python examples/embed_asyncio_http.py --port 8080 --connection-file /tmp/app.json
    jupyter console --existing /tmp/app.json
    curl http://127.0.0.1:8080/

``--port 0`` (the default) picks a free port. ``--kernel-option NAME=VALUE``
(repeatable) passes a kernel option, e.g. ``capture_sigint=True``. Once both the
server and the kernel are ready, one line goes to stdout::

    ready http://127.0.0.1:PORT connection_file=PATH

Each request is logged to the process's stdout, not to the kernel's client.
Shutting the kernel down from the client (``exit`` in ``jupyter console``)
stops the kernel only: the app keeps serving. SIGTERM or Ctrl-C stop the app.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import signal
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

import akernel

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


class HostStdout:
    """The app's own wrapper of ``sys.stdout`` (what a logging library installs)."""

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


class App:
    """The application's state, and its request handler."""

    def __init__(self) -> None:
        self.hits = 0
        self.items: list[str] = ["apple", "banana"]
        self.requests = 0
        self.ticks = 0
        self.loop_exceptions: list[dict[str, Any]] = []
        self.kernel: akernel.EmbeddedKernel | None = None
        self.loop = asyncio.get_running_loop()
        # id() of the loop the app runs in, to compare with what cells see.
        self.loop_id = id(self.loop)

    def report_loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        """The app's loop exception handler: record, then asyncio's default report."""
        error = context.get("exception")
        self.loop_exceptions.append(
            {"message": context.get("message"), "exception": repr(error) if error else None}
        )
        loop.default_exception_handler(context)

    async def add_item(self, name: str) -> int:
        """Add an item, the way a real app would: after some I/O. Returns the count."""
        await asyncio.sleep(0.01)  # e.g. a database write
        self.items.append(name)
        return len(self.items)

    async def tick(self) -> None:
        """The app's own background work (a metrics flush, say)."""
        while True:
            await asyncio.sleep(0.02)
            self.ticks += 1

    async def host_job(self, name: str, fail: bool) -> None:
        await asyncio.sleep(0.01)
        print(f"app: host task {name}", flush=True)
        if fail:
            raise RuntimeError(f"host task {name} failed")

    def state(self) -> dict[str, Any]:
        stopped = self.kernel is None or self.kernel.stopped
        return {
            "kernel": "stopped" if stopped else "running",
            "ticks": self.ticks,
            "loop_exceptions": list(self.loop_exceptions),
            "stdout": stdout_identity(),
        }

    def route(self, method: str, target: str) -> tuple[int, Any]:
        if method != "GET":
            return 405, {"error": "method not allowed"}
        url = urlsplit(target)
        query = {name: values[-1] for name, values in parse_qs(url.query).items()}
        if url.path == "/":
            self.hits += 1
            return 200, {"hits": self.hits, "items": len(self.items)}
        if url.path == "/items":
            return 200, list(self.items)
        if url.path == "/state":
            return 200, self.state()
        if url.path == "/stop-kernel":
            if self.kernel is not None:
                self.kernel.stop()
            return 200, {"stopping": True}
        if url.path == "/replace-stdout":
            sys.stdout = HostStdout(sys.stdout)
            return 200, stdout_identity()
        if url.path == "/host-task":
            name = query.get("name", "host")
            # Not kept anywhere: if it fails, only the loop's exception handler hears.
            self.loop.create_task(self.host_job(name, query.get("fail") == "1"))
            return 200, {"started": name}
        return 404, {"error": "not found"}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One HTTP/1.1 request per connection (``Connection: close``)."""
        try:
            request_line = await asyncio.wait_for(reader.readline(), 10)
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass  # headers: not needed here
            try:
                method, target, _version = request_line.decode("latin-1").split()
            except ValueError:
                status, body = 400, {"error": "bad request"}
                method, target = "?", "?"
            else:
                status, body = self.route(method, target)
            self.requests += 1
            print(f"app: {method} {target} {status}", flush=True)
            payload = json.dumps(body).encode()
            head = (
                f"HTTP/1.1 {status} {REASONS[status]}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + payload)
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass


async def main(port: int, connection_file: str | None, kernel_options: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except NotImplementedError:  # Windows: Ctrl-C raises KeyboardInterrupt
            pass

    app = App()
    loop.set_exception_handler(app.report_loop_exception)
    server = await asyncio.start_server(app.handle, "127.0.0.1", port)
    port = server.sockets[0].getsockname()[1]
    ticker = asyncio.create_task(app.tick())
    async with server:
        kernel = app.kernel = akernel.EmbeddedKernel(
            connection_file=connection_file, user_ns={"app": app}, **kernel_options
        )
        serving = asyncio.create_task(kernel.serve())
        path = await kernel.ready()  # raises akernel.KernelStartError if it cannot start

        async def log_kernel_stop() -> None:
            await kernel.wait_stopped()
            print("app: kernel stopped, still serving", flush=True)

        watcher = asyncio.create_task(log_kernel_stop())
        print(f"ready http://127.0.0.1:{port} connection_file={path}")
        print(f"app: connect with: jupyter console --existing {path}")
        sys.stdout.flush()
        await stop.wait()
        kernel.stop()
        await serving  # the kernel's clean stop (and any error of its own)
        watcher.cancel()
    ticker.cancel()
    print("app: stopped", flush=True)


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
    parser.add_argument("--port", type=int, default=0, help="HTTP port (0: a free one)")
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
        asyncio.run(main(args.port, args.connection_file, dict(args.kernel_option)))
    except KeyboardInterrupt:
        pass
