"""A small trio TCP service with a Jupyter kernel embedded in its event loop.

The service speaks a line protocol over TCP (``trio.serve_tcp``). For each line
a client sends, it counts the request and answers with one line:

* ``items`` -> the service's items, as JSON;
* anything else -> ``N TEXT``: the request count, and the line upper-cased.

The kernel is one more task in the service's nursery
(``await nursery.start(akernel.serve_kernel, ...)``), with the live service
in its namespace as ``service``: a notebook or console can look at it and
change it while it serves, and cells can ``await`` its own coroutines::

    In [1]: service.count
    In [2]: service.count = 1000           # the next answer starts with 1001
    In [3]: await service.add_item("x")    # "items" now lists "x"

Run it, then connect with the command it prints::

    python examples/embed_trio_service.py --port 9000 --connection-file /tmp/service.json
    jupyter console --existing /tmp/service.json
    nc 127.0.0.1 9000

``--port 0`` (the default) picks a free port. Once both the service and the
kernel are ready, one line goes to stdout::

    ready tcp://127.0.0.1:PORT connection_file=PATH

Each request is logged to the process's stdout, not to the kernel's client.
Shutting the kernel down from the client (``exit`` in ``jupyter console``)
stops the kernel only: the service keeps serving. SIGTERM or Ctrl-C stop it.
"""

from __future__ import annotations

import argparse
import functools
import json
import signal

import trio

import akernel

MAX_LINE = 64 * 1024


class Service:
    """The service's state, and its connection handler."""

    def __init__(self) -> None:
        self.count = 0
        self.items: list[str] = ["apple", "banana"]
        self.connections = 0
        # The service's root task, to compare with what cells see.
        self.root_task = trio.lowlevel.current_root_task()

    async def add_item(self, name: str) -> int:
        """Add an item, the way a real service would: after some I/O. Returns the count."""
        await trio.sleep(0.01)  # e.g. a database write
        self.items.append(name)
        return len(self.items)

    def answer(self, line: str) -> str:
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


async def serve_kernel_until_shutdown(
    service: Service, connection_file: str | None, *, task_status: trio.TaskStatus[str]
) -> None:
    """The kernel, as a task of the service's nursery: the service outlives it."""
    serve = functools.partial(
        akernel.serve_kernel, connection_file=connection_file, user_ns={"service": service}
    )
    async with trio.open_nursery() as nursery:
        path = await nursery.start(serve)
        task_status.started(path)
    print("service: kernel stopped, still serving", flush=True)


async def stop_on_signals(cancel_scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            cancel_scope.cancel()
            return


async def main(port: int, connection_file: str | None) -> None:
    service = Service()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_on_signals, nursery.cancel_scope)
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, service.handle, port, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        path = await nursery.start(serve_kernel_until_shutdown, service, connection_file)
        print(f"ready tcp://127.0.0.1:{port} connection_file={path}")
        print(f"service: connect with: jupyter console --existing {path}", flush=True)
    print("service: stopped", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: a free one)")
    parser.add_argument(
        "--connection-file",
        default=None,
        help="where to write the kernel's connection file (default: Jupyter's runtime dir)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    try:
        trio.run(main, args.port, args.connection_file)
    except KeyboardInterrupt:  # Ctrl-C before the signal handler was in place
        pass
