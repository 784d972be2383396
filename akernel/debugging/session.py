"""The debugger session: every ``debug_request`` a frontend sends, answered.

One :class:`DebugSession` per kernel, on the control thread's loop (control keeps
being served while the main thread is stopped at a breakpoint). Each DAP command
the kernel answers or adjusts has a method named after it (``debugInfo`` →
:meth:`DebugSession.debugInfo`, listed in ``_commands``); the others go to pydevd
as they are. A method returns the response, or an awaitable of it when pydevd
must answer; whatever it sends pydevd is queued before it returns, so pydevd
sees requests in the frontend's order.

The main thread is only asked for what must run there: starting pydevd (it
traces the thread that starts it), and a variable's rich display when the
kernel is idle.
"""

from __future__ import annotations

import ast
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from .cells import CellFiles
from .connection import Event, PydevdConnection, answered
from .dap import error_response, response
from .server import DebugServer, kernel_module_paths
from .variables import VariableTable, is_user_variable, namespace_variables, variables_body

log = logging.getLogger("akernel.debugging")

Reply = dict[str, Any] | Awaitable[dict[str, Any]]

# What the frontend may ask before the debugger is started.
_ANYTIME = frozenset(
    {"debugInfo", "initialize", "inspectVariables", "richInspectVariables", "modules", "dumpCell"}
)
# Ending the kernel process is not the debugger's to do: the kernel's life is
# managed by its own client (shutdown_request, restart).
_REFUSED = {
    "launch": "the kernel is already running: attach instead",
    "terminate": "ending the kernel is done with a shutdown request, not by the debugger",
    "restart": "restarting the kernel is done with a shutdown request, not by the debugger",
}

_INTERRUPT_NOTE = "KeyboardInterrupt'> raised from within the callback set in sys.settrace"

_server: DebugServer | None = None  # pydevd can be started once per process


class MainThread:
    """What the session needs from the kernel's main thread (see kernel wiring)."""

    def __init__(
        self,
        post: Callable[[Callable[[], object]], None],
        post_back: Callable[[Callable[[], object]], None],
        is_executing: Callable[[], bool],
    ) -> None:
        self.post = post
        self.post_back = post_back
        self.is_executing = is_executing

    async def run(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` in the main thread's loop, when it is free; return its result."""
        done = anyio.Event()
        outcome: list[Any] = []

        def call() -> None:
            try:
                outcome.append((True, function()))
            except BaseException as error:  # handed back to the waiting task
                outcome.append((False, error))
            finally:
                self.post_back(done.set)

        self.post(call)
        await done.wait()
        ok, value = outcome[0]
        if not ok:
            raise value
        return value


class DebugSession:
    """JupyterLab's debugger for one kernel (see the module docstring)."""

    def __init__(
        self,
        shell: Any,
        files: CellFiles,
        main: MainThread,
        publish_event: Callable[[Event], None],
    ) -> None:
        self.shell = shell
        self.files = files
        self.main = main
        self.publish_event = publish_event
        self.breakpoints: dict[str, list[dict[str, Any]]] = {}
        self.stopped_threads: set[int] = set()
        self.variable_table = VariableTable()
        self._connection: PydevdConnection | None = None
        self._want: anyio.Event | None = None
        self._removed_transforms: list[tuple[int, Any]] = []
        # The commands answered or adjusted here; pydevd answers the others.
        self._commands: dict[str, Callable[[dict[str, Any]], Reply]] = {
            "debugInfo": self.debugInfo,
            "initialize": self.initialize,
            "attach": self.attach,
            "disconnect": self.disconnect,
            "setBreakpoints": self.setBreakpoints,
            "dumpCell": self.dumpCell,
            "source": self.source,
            "modules": self.modules,
            "inspectVariables": self.inspectVariables,
            "variables": self.variables,
            "richInspectVariables": self.richInspectVariables,
            "copyToGlobals": self.copyToGlobals,
        }

    @property
    def started(self) -> bool:
        """Between a frontend's ``initialize`` and its ``disconnect``."""
        return self._connection is not None and not self._connection.closed

    # -- serving (a duty of the control loop) ------------------------------------

    async def serve(self) -> None:
        """Connect to pydevd whenever a frontend starts the debugger; until cancelled."""
        served: PydevdConnection | None = None
        while True:
            connection = self._connection
            if connection is None or connection.closed or connection is served:
                self._want = anyio.Event()
                await self._want.wait()
                continue
            served = connection
            try:
                global _server
                if _server is None:
                    _server = await self.main.run(DebugServer.start)
                await self.main.run(self._prepare_main_thread)
            except Exception as error:
                log.exception("cannot start the debugger")
                connection.fail(f"cannot start the debugger: {error}")
            else:
                await connection.run(_server)
            self._ended(connection)

    def _ended(self, connection: PydevdConnection) -> None:
        """Forget a session's state, once, unless a new session has begun."""
        if connection.ended:
            return
        connection.ended = True
        if self._connection is not connection:
            return  # a new session began: the state is already its own
        self._connection = None
        self.stopped_threads.clear()
        self.breakpoints.clear()
        self.variable_table.clear()
        if _server is not None:
            self.main.post(self._release_main_thread)

    def _prepare_main_thread(self) -> None:
        """While debugging, keep a cell's leading blank lines: the frontend counts them."""
        cleanup = self.shell.input_transformer_manager.cleanup_transforms
        for index, transform in reversed(list(enumerate(cleanup))):
            if getattr(transform, "__name__", "") == "leading_empty_lines":
                self._removed_transforms.append((index, cleanup.pop(index)))
        DebugServer.settle_this_thread()
        self.shell.events.register("post_execute", DebugServer.settle_this_thread)

    def untrace_main_thread(self) -> None:
        """The kernel is ending (called on the main thread): stop tracing it."""
        if _server is not None:
            self._release_main_thread()

    def _release_main_thread(self) -> None:
        cleanup = self.shell.input_transformer_manager.cleanup_transforms
        while self._removed_transforms:
            index, transform = self._removed_transforms.pop()
            cleanup.insert(index, transform)
        try:
            self.shell.events.unregister("post_execute", DebugServer.settle_this_thread)
        except ValueError:
            pass
        # No frontend: cells run at full speed again, untraced.
        DebugServer.untrace_this_thread()

    # -- requests -------------------------------------------------------------------

    def handle(self, request: Any) -> Reply:
        """The response to a DAP request (or an awaitable of it)."""
        if (
            not isinstance(request, dict)
            or request.get("type") != "request"
            or not isinstance(request.get("command"), str)
            or type(request.get("seq")) is not int
        ):
            bad = request if isinstance(request, dict) else {}
            return error_response(bad, "a DAP request needs type 'request', a command and a seq")
        command = request["command"]
        if not isinstance(request.get("arguments", {}), dict):
            return error_response(request, "a DAP request's arguments must be an object")
        if command in _REFUSED:
            return error_response(request, _REFUSED[command])
        if command not in _ANYTIME and not self.started:
            return error_response(request, "the debugger is not started (send initialize)")
        method = self._commands.get(command)
        if method is None:
            return self._forward(request)
        return method(request)

    def _forward(self, request: dict[str, Any]) -> Awaitable[dict[str, Any]]:
        connection = self._connection
        if connection is None:
            return answered(
                error_response(request, "the debugger is not started (send initialize)")
            )
        return connection.forward(request)

    def debugInfo(self, request: dict[str, Any]) -> Reply:
        return response(
            request,
            {
                "isStarted": self.started,
                **self.files.debug_info_fields(),
                "breakpoints": [
                    {"source": path, "breakpoints": lines}
                    for path, lines in self.breakpoints.items()
                ],
                "stoppedThreads": sorted(self.stopped_threads),
                "richRendering": True,
                "exceptionPaths": ["Python Exceptions"],
                "copyToGlobals": True,
            },
        )

    def initialize(self, request: dict[str, Any]) -> Reply:
        if not self.started:
            self._connection = PydevdConnection(self._on_event)
            self.stopped_threads.clear()
            self.breakpoints.clear()
            if self._want is not None:
                self._want.set()
        return self._forward(request)

    def attach(self, request: dict[str, Any]) -> Reply:
        arguments = dict(request.get("arguments") or {})
        arguments.setdefault("justMyCode", True)
        hidden = [{"path": path, "include": False} for path in kernel_module_paths()]
        arguments["rules"] = list(arguments.get("rules") or []) + hidden
        # The kernel publishes output itself; pydevd's copies would be duplicates.
        arguments["redirectOutput"] = False
        arguments["subProcess"] = False
        return self._forward({**request, "arguments": arguments})

    def disconnect(self, request: dict[str, Any]) -> Reply:
        arguments = dict(request.get("arguments") or {})
        # Closing the debugger panel must leave the kernel running.
        arguments["terminateDebuggee"] = False
        connection = self._connection
        pending = self._forward({**request, "arguments": arguments})

        async def finish() -> dict[str, Any]:
            reply = await pending
            if connection is not None:
                connection.close()
                self._ended(connection)
            return reply

        return finish()

    def setBreakpoints(self, request: dict[str, Any]) -> Reply:
        source = (request.get("arguments") or {}).get("source") or {}
        pending = self._forward(request)

        async def finish() -> dict[str, Any]:
            reply = await pending
            path = source.get("path")
            if reply.get("success") and isinstance(path, str):
                placed = (reply.get("body") or {}).get("breakpoints") or []
                lines = [{"line": point["line"]} for point in placed if "line" in point]
                if lines:
                    self.breakpoints[path] = lines
                else:
                    self.breakpoints.pop(path, None)
            return reply

        return finish()

    def dumpCell(self, request: dict[str, Any]) -> Reply:
        code = (request.get("arguments") or {}).get("code")
        if not isinstance(code, str):
            return error_response(request, "dumpCell needs the cell's code as a string")
        try:
            path = self.files.dump(code)
        except OSError as error:
            return error_response(request, f"cannot write the cell's file: {error}")
        return response(request, {"sourcePath": path})

    def source(self, request: dict[str, Any]) -> Reply:
        path = ((request.get("arguments") or {}).get("source") or {}).get("path")
        if not isinstance(path, str):
            return self._forward(request)  # a sourceReference: pydevd's
        try:
            with open(path, encoding="utf-8") as stream:
                return response(request, {"content": stream.read()})
        except (OSError, UnicodeDecodeError):
            pass
        import linecache

        lines = linecache.getlines(path)  # a cell compiled but never dumped
        if lines:
            return response(request, {"content": "".join(lines)})
        return error_response(request, f"source unavailable: {path}")

    def modules(self, request: dict[str, Any]) -> Reply:
        arguments = request.get("arguments") or {}
        modules = list(sys.modules.values())
        start = _non_negative(arguments.get("startModule"), 0)
        count = _non_negative(arguments.get("moduleCount"), 0) or len(modules)
        listed = []
        for index, module in enumerate(modules[start : start + count], start):
            path = getattr(getattr(module, "__spec__", None), "origin", None)
            if isinstance(path, str) and path.endswith(".py"):
                listed.append({"id": index, "name": module.__name__, "path": path})
        return response(request, {"modules": listed, "totalModules": len(modules)})

    def inspectVariables(self, request: dict[str, Any]) -> Reply:
        self.variable_table.clear()
        user_ns = dict(self.shell.user_ns)  # a snapshot: the main thread may be running
        # What IPython put there itself (In, Out, open...) is hidden unless rebound.
        shown = namespace_variables(user_ns, self.variable_table, self.shell.user_ns_hidden)
        return response(request, {"variables": shown})

    def variables(self, request: dict[str, Any]) -> Reply:
        if self.stopped_threads:
            pending = self._forward(request)

            async def finish() -> dict[str, Any]:
                reply = await pending
                body = reply.get("body")
                if reply.get("success") and isinstance(body, dict):
                    shown = [v for v in body.get("variables", []) if is_user_variable(v["name"])]
                    reply = {**reply, "body": {**body, "variables": shown}}
                return reply

            return finish()
        arguments = request.get("arguments") or {}
        try:
            body = variables_body(
                arguments.get("variablesReference"),
                self.variable_table,
                start=_non_negative(arguments.get("start"), 0),
                count=_non_negative(arguments.get("count"), 0) or None,
            )
        except ValueError as error:
            return error_response(request, str(error))
        if body is None:
            return error_response(request, "unknown variablesReference")
        return response(request, body)

    def richInspectVariables(self, request: dict[str, Any]) -> Reply:
        arguments = request.get("arguments") or {}
        name = arguments.get("variableName")
        if not isinstance(name, str) or not name.isidentifier():
            # pydevd's groups ("special variables") have no rich form.
            return response(request, {"data": {}, "metadata": {}})
        frame_id = arguments.get("frameId")
        if self.stopped_threads and frame_id is not None:
            return self._rich_in_frame(request, name, frame_id)
        return self._rich_in_namespace(request, name)

    def _rich_in_frame(self, request: dict[str, Any], name: str, frame_id: Any) -> Reply:
        expression = f"__import__('IPython').get_ipython().display_formatter.format({name})"
        assert self._connection is not None
        pending = self._connection.call(
            "evaluate", {"expression": expression, "frameId": frame_id, "context": "clipboard"}
        )

        async def finish() -> dict[str, Any]:
            reply = await pending
            if not reply.get("success"):
                return error_response(request, reply.get("message") or f"cannot evaluate {name}")
            try:
                data, metadata = ast.literal_eval(reply["body"]["result"])
            except (ValueError, SyntaxError, TypeError, KeyError, MemoryError, RecursionError):
                return error_response(request, f"no rich representation of {name}")
            return response(request, _bundle(data, metadata))

        return finish()

    def _rich_in_namespace(self, request: dict[str, Any], name: str) -> Reply:
        shell = self.shell

        def render() -> dict[str, Any]:
            if name not in shell.user_ns:
                raise NameError(f"name {name!r} is not defined")
            return _bundle(*shell.display_formatter.format(shell.user_ns[name]))

        async def finish() -> dict[str, Any]:
            try:
                if self.main.is_executing():
                    bundle = render()  # the main thread is busy: as ipykernel, from here
                else:
                    bundle = await self.main.run(render)
            except Exception as error:
                return error_response(request, f"{type(error).__name__}: {error}")
            return response(request, bundle)

        return finish()

    def copyToGlobals(self, request: dict[str, Any]) -> Reply:
        arguments = request.get("arguments") or {}
        source, target = arguments.get("srcVariableName"), arguments.get("dstVariableName")
        if not all(isinstance(n, str) and n.isidentifier() for n in (source, target)):
            return error_response(request, "srcVariableName and dstVariableName must be names")
        if not self.stopped_threads:
            return error_response(request, "copyToGlobals needs the kernel stopped in a frame")
        assert self._connection is not None
        pending = self._connection.call(
            "setExpression",
            {
                # The user's namespace, also from a frame of an imported module.
                "expression": f"__import__('IPython').get_ipython().user_ns[{target!r}]",
                "value": source,
                "frameId": arguments.get("srcFrameId"),
            },
        )

        async def finish() -> dict[str, Any]:
            reply = await pending
            if not reply.get("success"):
                return error_response(request, reply.get("message") or "copyToGlobals failed")
            return response(request, reply.get("body"))

        return finish()

    # -- events ------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        name, body = event.get("event"), event.get("body") or {}
        if name == "output" and _INTERRUPT_NOTE in str(body.get("output", "")):
            # An interrupt at a breakpoint: pydevd says it stops debugging the
            # main thread; the kernel traces it again once the cell has ended.
            return
        if name == "stopped" and isinstance(body.get("threadId"), int):
            self.stopped_threads.add(body["threadId"])
        elif name == "continued":
            if body.get("allThreadsContinued", True):
                self.stopped_threads.clear()
            else:
                self.stopped_threads.discard(body.get("threadId"))  # type: ignore[arg-type]
        self.publish_event(event)


def _bundle(data: Any, metadata: Any) -> dict[str, Any]:
    data = data if isinstance(data, dict) else {}
    metadata = metadata if isinstance(metadata, dict) else {}
    return {"data": data, "metadata": {k: v for k, v in metadata.items() if k in data}}


def _non_negative(value: Any, default: int) -> int:
    return value if type(value) is int and value >= 0 else default


def debugging_enabled() -> bool:
    """Whether the kernel can offer the debugger: debugpy is installed."""
    from .server import debugpy_available

    return debugpy_available()
