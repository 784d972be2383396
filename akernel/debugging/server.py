"""pydevd, debugpy's debugger, started inside the kernel process and listening on localhost.

The kernel speaks the Debug Adapter Protocol to pydevd directly (debugpy's
"in-process adapter" mode): no adapter process is spawned. pydevd listens on a
random localhost port; a secret access token, sent first by the kernel's own
connection, keeps other local users from driving it (code evaluation included).

Everything here that traces (``start``, ``settle_this_thread``) must run on the
thread to trace: the kernel calls it on the main thread, where cells run.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import threading
from dataclasses import dataclass
from types import ModuleType

log = logging.getLogger("akernel.debugging")

__all__ = [
    "DebugServer",
    "debugpy_available",
    "hide_kernel_threads",
    "kernel_module_paths",
]

# Packages whose code runs the kernel: stepping never enters them, stack traces
# never show them (attach ``rules``). The user's own imports of them are rare;
# a user who wants to step into, say, anyio sets justMyCode false and still
# skips these, as ipykernel does for its own modules.
KERNEL_PACKAGES = (
    "akernel",
    "anyio",
    "sniffio",
    "trio",
    "outcome",
    "IPython",
    "traitlets",
    "zmq",
    "jupyter_client",
    "jupyter_core",
    "comm",
    "debugpy",
    "orjson",
    "matplotlib_inline",
)


def debugpy_available() -> bool:
    """Whether debugpy can be imported (it is an optional dependency)."""
    try:
        import debugpy  # noqa: F401
    except ImportError:
        return False
    return True


def kernel_module_paths() -> list[str]:
    """Directories of the kernel's own packages that are imported now."""
    paths = []
    for name in KERNEL_PACKAGES:
        module = sys.modules.get(name)
        path = _package_dir(module) if module is not None else None
        if path is not None:
            paths.append(path)
    return paths


def _package_dir(module: ModuleType) -> str | None:
    locations = getattr(module, "__path__", None)
    if locations:
        return os.path.abspath(next(iter(locations)))
    filename = getattr(module, "__file__", None)
    return os.path.abspath(filename) if filename else None


# The kernel's threads, and IPython's history writer.
_KERNEL_THREAD_PREFIXES = ("akernel-", "IPythonHistorySavingThread")


def hide_kernel_threads() -> None:
    """Keep pydevd out of the kernel's own threads: not traced, not listed.

    A breakpoint can then never stop the control, IOPub or heartbeat thread,
    and the frontend's thread list shows only threads the user's code runs in.
    """
    for thread in threading.enumerate():
        if thread.name.startswith(_KERNEL_THREAD_PREFIXES) or type(thread).__module__.startswith(
            "akernel."
        ):
            _hide(thread)


def _hide(thread: threading.Thread) -> None:
    thread.pydev_do_not_trace = True  # type: ignore[attr-defined]
    thread.is_pydev_daemon_thread = True  # type: ignore[attr-defined]


@dataclass(frozen=True)
class DebugServer:
    """Where pydevd listens, and the token a connection must authorize with first."""

    host: str
    port: int
    access_token: str

    @classmethod
    def start(cls) -> DebugServer:
        """Start pydevd on a random localhost port and trace this thread and new threads.

        Call once per process, on the main thread (pydevd cannot be started twice).
        """
        # Python 3.11+ runs frozen stdlib modules: pydevd warns about their
        # paths on stderr, which would land in the user's notebook.
        os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
        import debugpy
        import debugpy.server  # puts debugpy's pydevd on sys.path
        import pydevd
        from _pydevd_bundle.pydevd_constants import get_global_debugger

        hide_kernel_threads()
        token = secrets.token_hex(32)
        debugpy_dir = os.path.dirname(os.path.abspath(debugpy.__file__))
        pydevd.settrace(
            host="127.0.0.1",
            port=0,
            suspend=False,
            trace_only_current_thread=False,
            # Forked and spawned children are not debugged: no child would be
            # connected to the frontend, and a breakpoint there would hang.
            patch_multiprocessing=False,
            wait_for_ready_to_run=False,
            block_until_connected=False,
            access_token=token,
            notify_stdin=False,
            dont_trace_start_patterns=(debugpy_dir,),
            dont_trace_end_patterns=("debugpy_launcher.py",),
        )
        debugger = get_global_debugger()
        debugger.wait_for_server_socket_ready()
        host, port = debugger._server_socket_name
        _hide_pydevd_from_forked_children()
        log.info("debugger listening on %s:%s", host, port)
        return cls(host, int(port), token)

    @staticmethod
    def settle_this_thread() -> None:
        """After a cell (on the main thread): no step left pending, tracing on.

        A step past a cell's last line has nowhere to stop (the kernel's frames
        are hidden): left pending, it would stop the next cell at its first
        line, breakpoint or not. It is dropped.

        CPython switches a thread's tracing off when an exception escapes the
        trace function: an interrupt that lands while pydevd runs does that,
        at a breakpoint (the thread waits in pydevd) or while pydevd traces.
        pydevd then still holds the thread as suspended, which would keep it
        from ever stopping again: it is set running, and traced again.
        """
        from _pydevd_bundle.pydevd_constants import STATE_RUN, get_global_debugger

        debugger = get_global_debugger()
        if debugger is None:
            return
        traced = sys.gettrace() is not None
        info = getattr(threading.current_thread(), "additional_info", None)
        if info is not None and (not traced or info.pydev_step_cmd != -1):
            info.pydev_state = STATE_RUN
            info.pydev_step_cmd = -1
            info.pydev_original_step_cmd = -1
            info.pydev_step_stop = None
            info.update_stepping_info()
        if not traced:
            debugger.enable_tracing()

    @staticmethod
    def untrace_this_thread() -> None:
        """Stop tracing this thread (no frontend is debugging: full speed)."""
        from _pydevd_bundle.pydevd_constants import get_global_debugger

        debugger = get_global_debugger()
        if debugger is not None:
            debugger.disable_tracing()


def _hide_pydevd_from_forked_children() -> None:
    """A forked child has no connection to the frontend, and pydevd's threads are
    gone there: a breakpoint would wait forever. Children run untraced."""

    def untrace() -> None:
        threading.settrace(None)  # type: ignore[arg-type]
        sys.settrace(None)

    os.register_at_fork(after_in_child=untrace)
