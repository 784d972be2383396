"""A small asyncio web app with a Jupyter kernel embedded in its event loop.

The app is a minimal HTTP/1.1 server built on ``asyncio.start_server`` (standard
library only):

* ``GET /`` counts the hit and returns ``{"hits": N, "items": M}`` as JSON;
* ``GET /items`` returns the list of items the app holds.

(Query strings are ignored, and logged.)

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

``--port 0`` (the default) picks a free port. Once both the server and the kernel
are ready, one line goes to stdout::

    ready http://127.0.0.1:PORT connection_file=PATH

Each request is logged to the process's stdout, not to the kernel's client.
Shutting the kernel down from the client (``exit`` in ``jupyter console``)
stops the kernel only: the app keeps serving. SIGTERM or Ctrl-C stop the app.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any
from urllib.parse import urlsplit

import akernel

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


class App:
    """The application's state, and its request handler."""

    def __init__(self) -> None:
        self.hits = 0
        self.items: list[str] = ["apple", "banana"]
        self.requests = 0
        # id() of the loop the app runs in, to compare with what cells see.
        self.loop_id = id(asyncio.get_running_loop())

    async def add_item(self, name: str) -> int:
        """Add an item, the way a real app would: after some I/O. Returns the count."""
        await asyncio.sleep(0.01)  # e.g. a database write
        self.items.append(name)
        return len(self.items)

    def route(self, method: str, path: str) -> tuple[int, Any]:
        if method != "GET":
            return 405, {"error": "method not allowed"}
        path = urlsplit(path).path  # the query string is ignored
        if path == "/":
            self.hits += 1
            return 200, {"hits": self.hits, "items": len(self.items)}
        if path == "/items":
            return 200, list(self.items)
        return 404, {"error": "not found"}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One HTTP/1.1 request per connection (``Connection: close``)."""
        try:
            request_line = await asyncio.wait_for(reader.readline(), 10)
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass  # headers: not needed here
            try:
                method, path, _version = request_line.decode("latin-1").split()
            except ValueError:
                status, body = 400, {"error": "bad request"}
                method, path = "?", "?"
            else:
                status, body = self.route(method, path)
            self.requests += 1
            print(f"app: {method} {path} {status}", flush=True)
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


async def main(port: int, connection_file: str | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except NotImplementedError:  # Windows: Ctrl-C raises KeyboardInterrupt
            pass

    app = App()
    server = await asyncio.start_server(app.handle, "127.0.0.1", port)
    port = server.sockets[0].getsockname()[1]
    async with server:
        async with akernel.embedded_kernel(
            connection_file=connection_file, user_ns={"app": app}
        ) as kernel:

            async def log_kernel_stop() -> None:
                await kernel.wait_stopped()
                print("app: kernel stopped, still serving", flush=True)

            watcher = asyncio.create_task(log_kernel_stop())
            print(f"ready http://127.0.0.1:{port} connection_file={kernel.connection_file}")
            print(f"app: connect with: jupyter console --existing {kernel.connection_file}")
            sys.stdout.flush()
            await stop.wait()
            watcher.cancel()
    print("app: stopped", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0, help="HTTP port (0: a free one)")
    parser.add_argument(
        "--connection-file",
        default=None,
        help="where to write the kernel's connection file (default: Jupyter's runtime dir)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    try:
        asyncio.run(main(args.port, args.connection_file))
    except KeyboardInterrupt:
        pass
