"""Where user output goes: stream writers, display publisher, display hook.

All output is published on IOPub with the request that caused it as parent:
the request being handled in the current context, or else the last execute
request (for output from threads a cell started).

In a forked child (``os.fork``, ``multiprocessing``), stream output goes to the
parent through a pipe (see ``akernel.channels.forked``) and is published there
with the request that was running where the fork happened as parent; other
output (displays, results) cannot be shown from a child and is dropped, with
a warning on the child's stderr stream.
"""

from __future__ import annotations

import io
import sys
import threading
import time
from collections import OrderedDict
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
        # Set when the process is being killed mid-request: only what was
        # printed still goes out (see process_end).
        self.ending = False
        # Set in a forked child: the pipe its output goes to the parent by.
        self.forked_child = False
        self._warned_child_display = False
        # The requests running where recent forks happened, by msg_id: the
        # parents of what the children print.
        self._fork_parents: OrderedDict[str, Message] = OrderedDict()
        self._fork_parents_lock = threading.Lock()
        iopub.children.on_output = self._publish_child_output
        iopub.before_fork.append(self._remember_fork_parent)
        iopub.in_forked_child.append(self._become_child)

    def parent(self) -> Message | None:
        request = current_request.get()
        if request is None and self.orphans_to_last_execute:
            return self.last_execute
        return request

    def publish(self, msg_type: str, content: dict[str, Any], **kwargs: Any) -> None:
        parent = self.parent()
        if self.forked_child:
            self._drop_in_child(msg_type)
        elif not self.ending and not self._silenced(parent):
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
        if self.forked_child:
            self._write_in_child(name, text, parent)
        elif not self._silenced(parent):
            self.iopub.write_stream(name, text, parent)

    def drain_captured(self) -> None:
        """Publish what C code, subprocesses and forked children wrote so far."""
        for capture in self.captures:
            capture.drain()
        if not self.forked_child:
            self.iopub.children.drain()

    # -- forked children ----------------------------------------------------

    _MAX_FORK_PARENTS = 256

    def _remember_fork_parent(self) -> None:
        """Before a fork, in the forking thread: remember its request."""
        parent = self.parent()
        if parent is None or self.forked_child:
            return
        with self._fork_parents_lock:
            self._fork_parents[parent.msg_id] = parent
            self._fork_parents.move_to_end(parent.msg_id)
            while len(self._fork_parents) > self._MAX_FORK_PARENTS:
                self._fork_parents.popitem(last=False)

    def _become_child(self) -> None:
        """In a forked child: the fd captures' pipes are the parent's to read."""
        self.forked_child = True
        self.captures = []
        self._fork_parents_lock = threading.Lock()
        self._child_lines: dict[str, str] = {}
        self._child_tag = ""

    def _write_in_child(self, name: str, text: str, parent: Message | None) -> None:
        """Line-buffered, as a terminal would be: lines of concurrent children
        stay whole (print writes its pieces one by one)."""
        tag = parent.msg_id if parent is not None else ""
        pending = self._child_lines.get(name, "")
        if tag != self._child_tag and pending:
            self.iopub.children.write(name, pending, self._child_tag)
            pending = ""
        self._child_tag = tag
        pending += text
        cut = pending.rfind("\n") + 1
        if len(pending) > 4096:
            cut = len(pending)
        if cut:
            self.iopub.children.write(name, pending[:cut], tag)
        self._child_lines[name] = pending[cut:]

    def flush_in_child(self) -> None:
        """Send what a forked child printed without a newline yet."""
        for name, pending in self._child_lines.items():
            if pending:
                self._child_lines[name] = ""
                self.iopub.children.write(name, pending, self._child_tag)

    def _publish_child_output(self, name: str, text: str, tag: str) -> None:
        """In the kernel: publish what a child printed, with its fork's parent."""
        with self._fork_parents_lock:
            parent = self._fork_parents.get(tag)
        if parent is None:
            parent = self.parent()
        if not self._silenced(parent):
            self.iopub.write_stream(name, text, parent)

    def _drop_in_child(self, msg_type: str) -> None:
        if self._warned_child_display:
            return
        self._warned_child_display = True
        self.publish_stream(
            "stderr",
            f"akernel: {msg_type} from a forked process is not shown (only what it prints is)\n",
        )

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
        self._detached = False

    def detach_from_kernel(self) -> None:
        """The kernel stopped: from now on, write to the original stream.

        Whoever still holds this stream (a logging handler configured while
        the kernel ran, a host that wrapped it) keeps a working stream."""
        self._detached = True

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
        if self._detached:
            return self._original.write(text) if self._original is not None else len(text)
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
        if self._detached:
            if self._original is not None:
                self._original.flush()
            return
        if self._router.forked_child:
            self._router.flush_in_child()
            return
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

    def compute_format_data(self, result: Any) -> tuple[dict, dict]:
        # A formatter that raises (a broken ``__repr__``) has its traceback
        # shown by IPython, which then carries on as if the cell succeeded:
        # make it the cell's error, so that its reply says so.
        shell = self.shell
        before = shell._last_error_value
        format_data = super().compute_format_data(result)
        error = shell._last_error_value
        if error is not before and error is not None and self.exec_result is not None:
            if self.exec_result.error_in_exec is None:
                self.exec_result.error_in_exec = error
        return format_data

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
