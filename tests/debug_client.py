"""A frontend's side of JupyterLab's debugger, for tests: DAP over debug_request.

:class:`DebugClient` sends DAP requests as ``debug_request`` on the control
channel, as JupyterLab does, and collects everything IOPub publishes (debug
events, stream output, statuses, results) so that a test can wait for an event
while a cell is stopped at a breakpoint and read the cell's output later.
"""

from __future__ import annotations

import queue
import time
from typing import Any

from jupyter_client.blocking import BlockingKernelClient

TIMEOUT = 30


class DebugClient:
    """DAP requests over the control channel, and IOPub collected as it arrives."""

    def __init__(self, kc: BlockingKernelClient) -> None:
        self.kc = kc
        self.seq = 0
        self.iopub: list[dict[str, Any]] = []
        self._replies: dict[str, dict[str, Any]] = {}
        self._seen_events = 0

    # -- requests ---------------------------------------------------------------

    def send(self, command: str, **arguments: Any) -> str:
        """Send a DAP request; return the debug_request's msg_id."""
        self.seq += 1
        content = {"type": "request", "seq": self.seq, "command": command}
        if arguments:
            content["arguments"] = arguments
        return self.send_content(content)

    def send_content(self, content: Any) -> str:
        msg = self.kc.session.msg("debug_request", content)
        self.kc.control_channel.send(msg)
        return msg["header"]["msg_id"]

    def reply(self, msg_id: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The DAP response of the debug_request ``msg_id`` (replies may come out of order)."""
        msg = self._control_reply(msg_id, timeout)
        assert msg["msg_type"] == "debug_reply", msg
        return msg["content"]

    def control_reply(self, msg_id: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The content of the control reply to ``msg_id``."""
        return self._control_reply(msg_id, timeout)["content"]

    def _control_reply(self, msg_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while msg_id not in self._replies:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no debug_reply to {msg_id} in {timeout} s")
            try:
                msg = self.kc.control_channel.get_msg(timeout=min(remaining, 1))
            except queue.Empty:
                continue
            self._replies[msg["parent_header"].get("msg_id")] = msg
        return self._replies.pop(msg_id)

    def request(self, command: str, timeout: float = TIMEOUT, **arguments: Any) -> dict[str, Any]:
        """Send a DAP request and return its response."""
        response = self.reply(self.send(command, **arguments), timeout)
        assert response.get("command") == command, response
        assert response.get("request_seq") == self.seq, response
        return response

    def ok(self, command: str, **arguments: Any) -> dict[str, Any]:
        """A successful response's body (fails the test on an error response)."""
        response = self.request(command, **arguments)
        assert response["success"], response
        return response.get("body") or {}

    # -- the sequence a frontend sends ---------------------------------------------

    def start(self) -> dict[str, Any]:
        """initialize and attach, as JupyterLab's debugger does; return debugInfo's body."""
        self.ok(
            "initialize",
            clientID="JupyterLab",
            clientName="JupyterLab",
            adapterID="python",
            pathFormat="path",
            linesStartAt1=True,
            columnsStartAt1=True,
            supportsVariableType=True,
            supportsVariablePaging=True,
            supportsRunInTerminalRequest=True,
            locale="en",
        )
        self.ok("attach")
        return self.ok("debugInfo")

    def finish_configuration(self) -> None:
        self.ok("configurationDone")

    def break_in_cell(self, code: str, lines: list[int]) -> str:
        """dumpCell and setBreakpoints for a cell; return its file."""
        path = self.ok("dumpCell", code=code)["sourcePath"]
        body = self.ok(
            "setBreakpoints",
            source={"path": path},
            breakpoints=[{"line": line} for line in lines],
            sourceModified=False,
        )
        assert [point["line"] for point in body["breakpoints"]] == lines, body
        return path

    # -- IOPub -------------------------------------------------------------------------

    def _pull(self, timeout: float) -> bool:
        try:
            msg = self.kc.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return False
        self.iopub.append(msg)
        return True

    def wait_event(self, name: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next debug event called ``name`` not returned before."""
        deadline = time.monotonic() + timeout
        while True:
            for index in range(self._seen_events, len(self.iopub)):
                msg = self.iopub[index]
                if msg["msg_type"] == "debug_event" and msg["content"].get("event") == name:
                    self._seen_events = index + 1
                    return msg["content"]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {name!r} debug event in {timeout} s")
            self._pull(min(remaining, 1))

    def wait_idle(self, msg_id: str, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """Every IOPub message of request ``msg_id``, once it is idle."""
        deadline = time.monotonic() + timeout
        while True:
            mine = [m for m in self.iopub if m["parent_header"].get("msg_id") == msg_id]
            if any(
                m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                for m in mine
            ):
                return mine
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"request {msg_id} not idle in {timeout} s")
            self._pull(min(remaining, 1))

    def stopped_frames(self, thread_id: int) -> list[dict[str, Any]]:
        return self.ok("stackTrace", threadId=thread_id)["stackFrames"]

    def frame_locals(self, frame_id: int) -> dict[str, str]:
        """Name → value of the first scope (Locals) of a frame."""
        scopes = self.ok("scopes", frameId=frame_id)["scopes"]
        reference = scopes[0]["variablesReference"]
        variables = self.ok("variables", variablesReference=reference)["variables"]
        return {v["name"]: v["value"] for v in variables}
