"""Where user output goes: stream writers, display publisher, display hook.

All output is published on IOPub with the request that caused it as parent:
the request being handled in the current context, or else the last execute
request (for output from threads a cell started).
"""

from __future__ import annotations

import io
import sys
import time
from typing import Any

from IPython.core.displayhook import DisplayHook
from IPython.core.displaypub import DisplayPublisher

from ..channels import FdCapture, IOPubPublisher, current_request
from ..transport.frames import run_deferred
from ..wire import Message


class OutputRouter:
    """Finds the parent of a piece of output and publishes it."""

    def __init__(self, iopub: IOPubPublisher) -> None:
        self.iopub = iopub
        self.last_execute: Message | None = None
        # Whether output from outside any request goes to the last executed
        # cell (a kernel of its own) or stays with the process (embedded).
        self.orphans_to_last_execute = True
        # Requests executed with ``silent``: their output is not broadcast.
        self.silenced: set[str] = set()
        # Captured file descriptors (OS-level output), drained on demand.
        self.captures: list[FdCapture] = []
        self._last_drain = 0.0

    def parent(self) -> Message | None:
        request = current_request.get()
        if request is None and self.orphans_to_last_execute:
            return self.last_execute
        return request

    def publish(self, msg_type: str, content: dict[str, Any], **kwargs: Any) -> None:
        parent = self.parent()
        if not self._silenced(parent):
            self.iopub.publish(msg_type, content, parent, **kwargs)
        run_deferred()  # an interrupt that landed during this call

    def write_stream(self, name: str, text: str) -> None:
        """Publish Python-level stream output (``sys.stdout``/``sys.stderr``)."""
        if self.captures:
            # What reached fds 1/2 before this write should be published before
            # it; draining costs a system call, so at most once a millisecond.
            now = time.monotonic()
            if now - self._last_drain > 0.001:
                self._last_drain = now
                self.drain_captured()
        self.publish_stream(name, text)

    def publish_stream(self, name: str, text: str) -> None:
        """Publish stream text as is (what an fd capture read goes here directly)."""
        parent = self.parent()
        if not self._silenced(parent):
            self.iopub.write_stream(name, text, parent)

    def drain_captured(self) -> None:
        """Publish what C code and subprocesses wrote to fds 1 and 2 so far."""
        for capture in self.captures:
            capture.drain()

    def _silenced(self, parent: Message | None) -> bool:
        return bool(self.silenced) and parent is not None and parent.msg_id in self.silenced


class OutStream(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` replacement that writes ``stream`` messages.

    Writes are coalesced by the IOPub publisher, which bounds both the number
    of messages and the delay before output shows up.
    """

    def __init__(self, name: str, router: OutputRouter, original: Any = None) -> None:
        super().__init__()
        self.name = name
        self._router = router
        self._original = original

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        if self._original is not None:
            return self._original.fileno()
        raise io.UnsupportedOperation("fileno")

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        router = self._router
        if (
            not router.orphans_to_last_execute
            and self._original is not None
            and router.parent() is None
        ):
            # The host application's own output, not a cell's.
            return self._original.write(text)
        router.write_stream(self.name, text)
        run_deferred()  # an interrupt that landed during this write
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not self._router.orphans_to_last_execute and self._original is not None:
            self._original.flush()
        # Shown at once to the eye (5 ms), without a message per line for
        # code that flushes after every print.
        self._router.iopub.flush(within=0.005)
        run_deferred()  # an interrupt that landed during this flush


class KernelDisplayPublisher(DisplayPublisher):
    """Sends ``display_data``, ``update_display_data`` and ``clear_output``."""

    @property
    def router(self) -> OutputRouter:
        return self.shell.router

    def publish(  # type: ignore[override]
        self,
        data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        source: Any = None,
        *,
        transient: dict[str, Any] | None = None,
        update: bool = False,
        **kwargs: Any,
    ) -> None:
        content = {"data": data, "metadata": metadata or {}, "transient": transient or {}}
        self.router.publish("update_display_data" if update else "display_data", content)

    def clear_output(self, wait: bool = False) -> None:
        self.router.publish("clear_output", {"wait": bool(wait)})


class KernelDisplayHook(DisplayHook):
    """Sends the value of a cell's last expression as ``execute_result``."""

    @property
    def router(self) -> OutputRouter:
        return self.shell.router

    def start_displayhook(self) -> None:
        self._content: dict[str, Any] = {
            "execution_count": self.prompt_count,
            "data": {},
            "metadata": {},
        }

    def write_output_prompt(self) -> None:
        pass

    def write_format_data(self, format_dict: dict[str, Any], md_dict: dict | None = None) -> None:
        self._content["data"] = format_dict
        self._content["metadata"] = md_dict or {}

    def finish_displayhook(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        if self._content["data"]:
            self.router.publish("execute_result", self._content)
        self._content = {}
