"""The ``usage_reply`` content: what the kernel and its host use (jupyter-resource-usage asks)."""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

log = logging.getLogger("akernel.usage")

_NOT_IMPORTED: Any = object()


class UsageMonitor:
    """Measures the kernel process with its children, and the host.

    psutil is optional: without it a reply has only ``hostname``, ``pid`` and
    ``cpu_count``. It is imported on the first request, not at start-up.

    CPU percentages are measured between two calls, by the same
    ``psutil.Process`` objects, so the monitor keeps one per process from one
    request to the next. The first request therefore reports a
    ``kernel_cpu`` of 0 and no ``host_cpu_percent`` (psutil's first host
    reading in a thread means nothing).

    Every psutil call here returns at once (``interval=None``): the requests
    are answered on the control thread, which must stay responsive.
    """

    def __init__(self) -> None:
        self._psutil: Any = _NOT_IMPORTED
        # pid -> the Process object that measured it last time.
        self._processes: dict[int, Any] = {}
        # psutil keeps the host's previous CPU times per thread.
        self._host_cpu_threads: set[int] = set()
        self._use_pss: bool | None = None

    def usage(self) -> dict[str, Any]:
        """The content of a ``usage_reply``."""
        reply: dict[str, Any] = {
            "status": "ok",
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
        }
        psutil = self._import_psutil()
        if psutil is None:
            reply["cpu_count"] = os.cpu_count()
            return reply
        processes = self._current_processes(psutil)
        reply["kernel_cpu"] = sum(_metric(psutil, p.cpu_percent) for p in processes)
        reply["kernel_memory"] = sum(self._memory_of(psutil, p) for p in processes)
        thread = threading.get_ident()
        host_cpu = _metric(psutil, psutil.cpu_percent)
        if thread in self._host_cpu_threads:
            reply["host_cpu_percent"] = host_cpu
        else:
            self._host_cpu_threads.add(thread)
        reply["cpu_count"] = psutil.cpu_count(logical=True) or os.cpu_count()
        try:
            reply["host_virtual_memory"] = dict(psutil.virtual_memory()._asdict())
        except (psutil.Error, OSError) as e:
            log.debug("usage: no virtual memory figures: %s", e)
        return reply

    def _import_psutil(self) -> Any:
        if self._psutil is _NOT_IMPORTED:
            try:
                import psutil
            except Exception as e:  # an ImportError, or a broken installation
                log.info("usage_request: psutil unavailable (%s); reporting less", e)
                psutil = None
            self._psutil = psutil
        return self._psutil

    def _current_processes(self, psutil: Any) -> list[Any]:
        """The kernel and its descendants now, reusing the Process objects
        that measured them before (a new one measures no CPU yet)."""
        kernel = self._processes.get(os.getpid()) or psutil.Process()
        try:
            found = [kernel, *kernel.children(recursive=True)]
        except (psutil.Error, OSError):
            found = [kernel]
        previous = self._processes
        current: dict[int, Any] = {}
        for process in found:
            kept = previous.get(process.pid)
            # Equal means same pid and same creation time: not a reused pid.
            current[process.pid] = kept if kept is not None and kept == process else process
        self._processes = current
        return list(current.values())

    def _memory_of(self, psutil: Any, process: Any) -> int:
        """Proportional set size where the platform has it (shared pages are
        split between the processes sharing them, so forked children are not
        counted twice), else resident set size."""
        if self._use_pss is None:
            try:
                self._use_pss = hasattr(psutil.Process().memory_full_info(), "pss")
            except (psutil.Error, OSError, AttributeError):
                self._use_pss = False
        if self._use_pss:
            return int(_metric(psutil, lambda: process.memory_full_info().pss))
        return int(_metric(psutil, lambda: process.memory_info().rss))


def _metric(psutil: Any, measure: Any) -> float:
    """``measure()``, or 0 for a process that ended or may not be inspected."""
    try:
        return measure()
    except (psutil.Error, OSError):
        return 0
