"""JupyterLab's debugger as the kernel benchmark drives it: DAP over ``debug_request``.

When a user switches JupyterLab's debugger on, JupyterLab sends Debug Adapter
Protocol requests as ``debug_request`` messages on the control channel, each
after the previous one's ``debug_reply``: ``debugInfo`` (as soon as it connects
to the kernel), then ``initialize`` with its client arguments, ``attach`` (the
kernel starts its debugger: from here on, cells run traced), ``debugInfo``
again to restore its state, and ``configurationDone``. ``disconnect`` switches
the debugger off. :func:`start_debugger` sends that sequence, with no
breakpoints, and times the start: from ``initialize`` sent to ``attach``
answered.

The cells timed with and without the debugger are defined here too: ``pass``,
and one that makes many Python-level calls, where tracing costs show.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import zmq

# What JupyterLab's debugger session sends with ``initialize``; ``adapterID`` is
# the kernelspec's name and ``locale`` the page's language.
JUPYTERLAB_INITIALIZE: dict[str, Any] = {
    "clientID": "jupyterlab",
    "clientName": "JupyterLab",
    "pathFormat": "path",
    "linesStartAt1": True,
    "columnsStartAt1": True,
    "supportsVariableType": True,
    "supportsVariablePaging": True,
    "supportsRunInTerminalRequest": True,
    "locale": "en",
}

# The cells whose round trips are timed with the debugger started and not started.
# The work cell assigns its result, so that no execute_result is formatted.
WORK_EXPRESSION = "sum(i * i for i in range(20000))"
DEBUGGER_CELLS: dict[str, str] = {
    "pass": "pass",
    "work": f"_bench_total = {WORK_EXPRESSION}",
}
CELL_TITLES: dict[str, str] = {"pass": "'pass'", "work": WORK_EXPRESSION}


# A kernel without a debugger may ignore debug_request: give up sooner than on
# other requests (starting pydevd takes well under a second on these machines).
REQUEST_TIMEOUT = 20.0


class DebuggerError(Exception):
    """The debugger refused a request or answered something unexpected."""


class Reply(Protocol):
    """What the benchmark's message type offers (``bench_kernel.Msg``)."""

    msg_type: str
    content: dict[str, Any]


class ControlClient(Protocol):
    """What DAP requests need of the benchmark's client (``bench_kernel.Client``)."""

    control: zmq.Socket

    def send(self, sock: zmq.Socket, msg_type: str, content: dict[str, Any]) -> str: ...

    def wait_reply(self, sock: zmq.Socket, msg_id: str, timeout: float, what: str) -> Reply: ...


class DapRequests:
    """DAP requests over a client's control socket, one at a time, as JupyterLab sends them."""

    def __init__(self, client: ControlClient, timeout: float) -> None:
        self.client = client
        self.timeout = timeout
        self.seq = 0

    def request(self, command: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request, wait for its debug_reply and return the response's body.

        DebuggerError if the response is not a successful one to this request;
        the client's own error (a timeout) propagates as it is.
        """
        self.seq += 1
        content: dict[str, Any] = {"type": "request", "seq": self.seq, "command": command}
        if arguments is not None:
            content["arguments"] = arguments
        msg_id = self.client.send(self.client.control, "debug_request", content)
        reply = self.client.wait_reply(
            self.client.control, msg_id, self.timeout, f"debug_reply to {command}"
        )
        response = reply.content
        if reply.msg_type != "debug_reply":
            raise DebuggerError(f"{command}: answered with {reply.msg_type}")
        if not response.get("success"):
            reason = response.get("message") or _brief(response)
            raise DebuggerError(f"{command} refused: {reason}")
        if response.get("command") != command or response.get("request_seq") != self.seq:
            raise DebuggerError(f"{command}: the response is not for it: {_brief(response)}")
        body = response.get("body")
        return body if isinstance(body, dict) else {}


def start_debugger(dap: DapRequests, adapter_id: str) -> float:
    """Start the debugger as JupyterLab does, with no breakpoints; seconds to start it.

    The time runs from ``initialize`` sent to ``attach`` answered. The kernel
    must then say it is started (``debugInfo``) and accept ``configurationDone``.
    """
    dap.request("debugInfo", {})
    t0 = time.perf_counter()
    dap.request("initialize", {**JUPYTERLAB_INITIALIZE, "adapterID": adapter_id})
    dap.request("attach", {})
    elapsed = time.perf_counter() - t0
    info = dap.request("debugInfo", {})
    if info.get("isStarted") is not True:
        raise DebuggerError(f"debugInfo after attach: isStarted is {info.get('isStarted')!r}")
    dap.request("configurationDone", {})
    return elapsed


def stop_debugger(dap: DapRequests) -> None:
    """Switch the debugger off as JupyterLab does."""
    dap.request("disconnect", {"restart": False, "terminateDebuggee": False})


def _brief(response: dict[str, Any], limit: int = 160) -> str:
    text = repr(response)
    return text if len(text) <= limit else text[: limit - 3] + "..."
