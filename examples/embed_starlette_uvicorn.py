"""A Starlette app served by uvicorn on uvloop, with a Jupyter kernel in its lifespan.

The kernel lives in the app's lifespan (``async with akernel.embedded_kernel(...)``),
next to the app's own background work (a ticker in an anyio task group): it starts
before the first request is served, and stops when uvicorn shuts the app down.
Stopping the kernel (``GET /stop-kernel``, or a client's shutdown) leaves the app and
its ticker running.

* ``GET /`` counts the hit and returns ``{"hits": N, "items": M}`` as JSON;
* ``GET /items`` returns the list of items the app holds;
* ``GET /state`` returns ``{"kernel": "running"|"stopped", "ticks": N,
  "loop_exceptions": [...], "stdout": {...}}``;
* ``GET /stop-kernel`` stops the kernel (the app goes on);
* ``GET /replace-stdout`` wraps ``sys.stdout`` in a stream of the app's own, as
  logging libraries do;
* ``GET /host-task?name=N[&fail=1]`` starts a task of the app's own (not a cell's)
  that prints a line and, with ``fail=1``, raises.

The app installs its own exception handler on the loop before the kernel starts (as
error trackers like Sentry do): it records what it is given, then hands it to
asyncio's default handler; ``loop_exceptions`` lists what it recorded.

The live app state is in the kernel's namespace as ``app`` (and the Starlette
application as ``asgi_app``)::

    In [1]: app.hits
    In [2]: app.hits = 1000          # the next GET / says 1001
    In [3]: await app.add_item("x")  # GET /items now lists "x"

Run it (``pip install starlette uvicorn uvloop``), then connect with the command it
prints::

    python examples/embed_starlette_uvicorn.py --port 8080 --connection-file /tmp/app.json
    jupyter console --existing /tmp/app.json
    curl http://127.0.0.1:8080/

``--port 0`` (the default) picks a free port. ``--kernel-option NAME=VALUE``
(repeatable) passes a kernel option, e.g. ``capture_sigint=True``. Once both the
server and the kernel are ready, one line goes to stdout::

    ready http://127.0.0.1:PORT connection_file=PATH

Each request is logged to the process's stdout, not to the kernel's client.
SIGTERM or Ctrl-C stop uvicorn, which ends the lifespan, and the kernel with it.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import akernel


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


class AppState:
    """The application's state: what its endpoints read and change."""

    def __init__(self) -> None:
        self.hits = 0
        self.items: list[str] = ["apple", "banana"]
        self.ticks = 0
        self.loop_exceptions: list[dict[str, Any]] = []
        self.kernel: akernel.EmbeddedKernel | None = None
        self.loop_id = 0  # id() of the app's loop, once it runs

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
            await anyio.sleep(0.02)
            self.ticks += 1

    async def host_job(self, name: str, fail: bool) -> None:
        await asyncio.sleep(0.01)
        print(f"app: host task {name}", flush=True)
        if fail:
            raise RuntimeError(f"host task {name} failed")


class RequestLog:
    """ASGI middleware: one line on the process's stdout per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def logged_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, logged_send)
        finally:
            query = scope["query_string"].decode("latin-1")
            target = scope["path"] + (f"?{query}" if query else "")
            print(f"app: {scope['method']} {target} {status}", flush=True)


def build_app(
    state: AppState, connection_file: str | None, kernel_options: dict[str, Any]
) -> Starlette:
    async def hit(request: Request) -> JSONResponse:
        state.hits += 1
        return JSONResponse({"hits": state.hits, "items": len(state.items)})

    async def items(request: Request) -> JSONResponse:
        return JSONResponse(list(state.items))

    async def host_state(request: Request) -> JSONResponse:
        stopped = state.kernel is None or state.kernel.stopped
        return JSONResponse(
            {
                "kernel": "stopped" if stopped else "running",
                "ticks": state.ticks,
                "loop_exceptions": list(state.loop_exceptions),
                "stdout": stdout_identity(),
            }
        )

    async def stop_kernel(request: Request) -> JSONResponse:
        if state.kernel is not None:
            state.kernel.stop()
        return JSONResponse({"stopping": True})

    async def replace_stdout(request: Request) -> JSONResponse:
        sys.stdout = HostStdout(sys.stdout)
        return JSONResponse(stdout_identity())

    async def host_task(request: Request) -> JSONResponse:
        name = request.query_params.get("name", "host")
        fail = request.query_params.get("fail") == "1"
        # Not kept anywhere: if it fails, only the loop's exception handler hears.
        asyncio.get_running_loop().create_task(state.host_job(name, fail))
        return JSONResponse({"started": name})

    @asynccontextmanager
    async def lifespan(asgi_app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        state.loop_id = id(loop)
        loop.set_exception_handler(state.report_loop_exception)
        namespace = {"app": state, "asgi_app": asgi_app}
        async with (
            akernel.embedded_kernel(
                connection_file=connection_file, user_ns=namespace, **kernel_options
            ) as kernel,
            anyio.create_task_group() as tg,
        ):
            state.kernel = kernel
            tg.start_soon(log_kernel_stop, kernel)
            tg.start_soon(state.tick)
            yield
            tg.cancel_scope.cancel()

    return Starlette(
        routes=[
            Route("/", hit),
            Route("/items", items),
            Route("/state", host_state),
            Route("/stop-kernel", stop_kernel),
            Route("/replace-stdout", replace_stdout),
            Route("/host-task", host_task),
        ],
        middleware=[Middleware(RequestLog)],
        lifespan=lifespan,
    )


async def log_kernel_stop(kernel: akernel.EmbeddedKernel) -> None:
    await kernel.wait_stopped()
    print("app: kernel stopped, still serving", flush=True)


class AnnouncingServer(uvicorn.Server):
    """uvicorn's server, printing the ready line once it listens (and the lifespan,
    hence the kernel, has started)."""

    def __init__(self, config: uvicorn.Config, state: AppState) -> None:
        super().__init__(config)
        self.state = state

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if not self.started or self.state.kernel is None:
            return
        port = self.servers[0].sockets[0].getsockname()[1]
        path = self.state.kernel.connection_file
        print(f"ready http://127.0.0.1:{port} connection_file={path}")
        print(f"app: connect with: jupyter console --existing {path}", flush=True)


async def main(port: int, connection_file: str | None, kernel_options: dict[str, Any]) -> None:
    state = AppState()
    asgi_app = build_app(state, connection_file, kernel_options)
    config = uvicorn.Config(
        asgi_app, host="127.0.0.1", port=port, lifespan="on", log_level="warning"
    )
    # uvicorn takes SIGINT and SIGTERM while it serves; once it has shut down it
    # raises the signal again for the handler it found. The app has stopped cleanly
    # by then: that handler has nothing left to do.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, frame: None)
    await AnnouncingServer(config, state).serve()
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
    uvloop.run(main(args.port, args.connection_file, dict(args.kernel_option)))
