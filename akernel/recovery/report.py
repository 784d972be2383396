"""What happened to the previous kernel: crash analysis from its journal and fault file.

:func:`analyse` turns a predecessor's journal (:mod:`akernel.recovery.journal`)
and the text Python's ``faulthandler`` wrote at the crash into a
:class:`CrashReport`; :func:`format_report` makes the few lines a user sees.
:func:`memory_limit` and :func:`rss_bytes` give the numbers the kernel records
in ``memory`` samples, so a SIGKILL near the limit can be told apart from
other deaths.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from akernel.recovery.journal import JournalContents

__all__ = [
    "OOM_FRACTION",
    "CrashReport",
    "ReplayCell",
    "ThreadStack",
    "analyse",
    "format_report",
    "memory_limit",
    "parse_fault_text",
    "rss_bytes",
]

OOM_FRACTION = 0.9
"""A SIGKILL with the last memory sample at this fraction of its limit is called out of memory."""

KILLED_WITHOUT_TRACE = "killed without a trace (SIGKILL or power loss)"

# faulthandler's names for the fatal signals it catches (Modules/faulthandler.c).
_FATAL_SIGNALS = {
    "Segmentation fault": "SIGSEGV",
    "Aborted": "SIGABRT",
    "Bus error": "SIGBUS",
    "Floating point exception": "SIGFPE",
    "Floating-point exception": "SIGFPE",
    "Illegal instruction": "SIGILL",
}
_FATAL_LINE = re.compile(r"^Fatal Python error: (.*)$", re.MULTILINE)
_THREAD_HEADER = re.compile(
    r"^(Current thread|Thread) (0x[0-9a-fA-F]+) \(most recent call first\):"
)
_FRAME_FILE = re.compile(r'^\s*File "(.*)", line')
_SHOWN_CODE_LINES = 3
_SHOWN_FRAMES = 12


@dataclass
class ThreadStack:
    """One thread's stack as faulthandler printed it (most recent call first)."""

    thread_id: int
    current: bool
    """Whether this is the thread that received the fatal signal."""
    frames: list[str] = field(default_factory=list)


@dataclass
class ReplayCell:
    """A cell of the previous kernel: its execution count and input."""

    count: int
    code: str


@dataclass
class CrashReport:
    """How the previous kernel ended, and what ``%recover`` could replay."""

    pid: int | None
    backend: str | None
    age_seconds: float | None
    """Seconds between the predecessor's start and ``now`` given to :func:`analyse`."""
    running_cell: ReplayCell | None
    signal: str | None
    """``"SIGSEGV"`` etc. from faulthandler's text; None when nothing was caught."""
    cause: str
    out_of_memory: str | None
    last_memory: str | None
    """For a death without a trace: the memory at the last sample, and its limit."""
    stack: list[str]
    """Frames to show: the main thread's (or the crashing one's), ending at the user's line."""
    threads: list[ThreadStack]
    completed: list[ReplayCell]
    """Cells that finished ok, in order: what ``%recover`` re-runs."""
    failed: list[int]
    """Execution counts of cells that ended in an error or were aborted."""
    dropped_cells: int = 0
    """Older completed cells the journal dropped to stay within its bound."""
    journal_torn: bool = False


def parse_fault_text(text: str) -> tuple[str | None, str | None, list[ThreadStack]]:
    """The signal name, faulthandler's description and the thread stacks in ``text``."""
    signal = description = None
    match = _FATAL_LINE.search(text)
    if match:
        description = match.group(1).strip()
        signal = _FATAL_SIGNALS.get(description)
    threads: list[ThreadStack] = []
    block: ThreadStack | None = None
    for line in text.splitlines():
        header = _THREAD_HEADER.match(line)
        if header:
            block = ThreadStack(int(header.group(2), 16), header.group(1) == "Current thread")
            threads.append(block)
        elif block is not None and line.startswith("  ") and line.strip():
            block.frames.append(line.strip())
        else:
            block = None
    return signal, description, threads


def _is_user_frame(frame: str) -> bool:
    match = _FRAME_FILE.match(frame)
    if not match:
        return False
    name = match.group(1)
    # Cell file names: the kernel's cell directory (see akernel.debugging.cells),
    # and IPython's own names when cells are compiled without it.
    return "/ipykernel_" in name or name.startswith(("<ipython-input-", "<cell"))


def _stack_to_show(threads: Sequence[ThreadStack], main_thread: int | None) -> list[str]:
    chosen = next((t for t in threads if t.thread_id == main_thread), None)
    if chosen is None:
        chosen = next((t for t in threads if t.current), threads[0] if threads else None)
    if chosen is None:
        return []
    frames = chosen.frames
    # Frames after the outermost cell frame are the kernel's own machinery.
    user = [i for i, frame in enumerate(frames) if _is_user_frame(frame)]
    if not user:
        return list(frames)
    shown = frames[: user[0] + 1]
    # Between two cell frames (a cell magic such as %%capture running its
    # body as a cell), IPython's and the kernel's frames are collapsed.
    for inner, outer in itertools.pairwise(user):
        between = frames[inner + 1 : outer]
        if between and all(_is_machinery_frame(frame) for frame in between):
            shown.append(f"... ({len(between)} frames of IPython and the kernel)")
        else:
            shown.extend(between)
        shown.append(frames[outer])
    return shown


def _is_machinery_frame(frame: str) -> bool:
    match = _FRAME_FILE.match(frame)
    return bool(match) and any(
        part in match.group(1) for part in ("/IPython/", "/akernel/", "/anyio/", "/trio/")
    )


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def analyse(contents: JournalContents, fault_text: str, *, now: float) -> CrashReport | None:
    """The crash report for a predecessor, or None if it stopped cleanly or there was none."""
    records = contents.records
    if contents.clean or not records:
        return None
    start: dict[str, Any] = next((r for r in records if r["kind"] == "start"), {})
    memory: dict[str, Any] | None = None
    started: dict[Any, dict[str, Any]] = {}
    completed: list[ReplayCell] = []
    failed: list[int] = []
    dropped = 0
    for record in records:
        kind = record["kind"]
        if kind == "memory":
            memory = record
        elif kind == "dropped":
            dropped += int(record.get("cells", 0))
        elif kind == "cell_started":
            started[record.get("count")] = record
        elif kind == "cell_finished":
            begun = started.pop(record.get("count"), None)
            if begun is None:
                continue
            replayable = not begun.get("truncated") and begun.get("replay", True)
            if record.get("status") == "ok" and replayable:
                completed.append(ReplayCell(int(begun["count"]), str(begun.get("code", ""))))
            elif record.get("status") != "ok":
                failed.append(int(begun["count"]))
    running = None
    if started:
        last = list(started.values())[-1]
        running = ReplayCell(int(last.get("count", 0)), str(last.get("code", "")))

    signal, description, threads = parse_fault_text(fault_text)
    out_of_memory = last_memory = None
    if signal is not None:
        cause = f"{signal} ({description})"
    elif description is not None:
        cause = f"fatal Python error: {description}"
    else:
        cause = KILLED_WITHOUT_TRACE
        if memory is not None:
            rss, limit = int(memory.get("rss", 0)), int(memory.get("limit", 0))
            where = "cgroup limit" if memory.get("source") == "cgroup" else "machine memory"
            if limit > 0 and rss >= OOM_FRACTION * limit:
                out_of_memory = f"probably out of memory: {_gb(rss)} of {_gb(limit)} ({where})"
            elif limit > 0:
                last_memory = f"{_gb(rss)} of {_gb(limit)} ({where})"
    started_at = start.get("time")
    return CrashReport(
        pid=start.get("pid"),
        backend=start.get("backend"),
        age_seconds=now - started_at if isinstance(started_at, int | float) else None,
        running_cell=running,
        signal=signal,
        cause=cause,
        out_of_memory=out_of_memory,
        last_memory=last_memory,
        stack=_stack_to_show(threads, start.get("main_thread")),
        threads=threads,
        completed=completed,
        failed=failed,
        dropped_cells=dropped,
        journal_torn=contents.torn,
    )


def format_report(report: CrashReport) -> str:
    """The short plain-text report shown before the next cell's output."""
    who = f"pid {report.pid}" if report.pid is not None else "unknown pid"
    if report.backend:
        who += f", {report.backend}"
    lines = [f"The previous kernel ({who}) died: {report.cause}."]
    if report.out_of_memory:
        lines.append(f"It was {report.out_of_memory}.")
    elif report.last_memory:
        lines.append(f"Its memory at the last sample (every second): {report.last_memory}.")
    if report.running_cell is not None:
        code_lines = report.running_cell.code.splitlines() or [""]
        lines.append(f"It was running cell [{report.running_cell.count}]:")
        lines.extend("    " + line for line in code_lines[:_SHOWN_CODE_LINES])
        if len(code_lines) > _SHOWN_CODE_LINES:
            lines.append(f"    ... ({len(code_lines) - _SHOWN_CODE_LINES} more lines)")
    if report.stack:
        lines.append("Python stack at the crash (most recent call first):")
        frames = report.stack
        if len(frames) > _SHOWN_FRAMES:
            # The crash site and the user's line are at the two ends: keep both.
            head, tail = frames[:4], frames[-(_SHOWN_FRAMES - 4) :]
            frames = [*head, f"... ({len(report.stack) - _SHOWN_FRAMES} frames)", *tail]
        lines.extend("    " + frame for frame in frames)
    n = len(report.completed)
    recover = (
        f"%recover re-runs the {n} cell{'s' if n != 1 else ''} that completed without error"
        " (replaying re-executes their side effects)"
    )
    if report.dropped_cells:
        recover += f"; {report.dropped_cells} older cells were not kept"
    lines.append(recover + ". %crashinfo shows this report again.")
    return "\n".join(lines)


def _machine_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _read_limit(path: str) -> int | None:
    try:
        with open(path) as f:
            value = f.read().strip()
    except OSError:
        return None
    return int(value) if value.isdigit() else None  # "max" means no limit


def _cgroup_limit(proc_cgroup: str, cgroup_root: str) -> int | None:
    """The smallest memory limit on this process's cgroup and its ancestors (v2, then v1)."""
    try:
        with open(proc_cgroup) as f:
            entries = [line.strip().split(":", 2) for line in f if line.count(":") >= 2]
    except OSError:
        return None
    candidates: list[tuple[str, str]] = []
    for _, controllers, path in entries:
        if controllers == "":
            candidates.append((cgroup_root, path))
    for _, controllers, path in entries:
        if "memory" in controllers.split(","):
            candidates.append((os.path.join(cgroup_root, "memory"), path))
    for base, path in candidates:
        name = "memory.max" if base == cgroup_root else "memory.limit_in_bytes"
        limits = []
        parts = [p for p in path.split("/") if p and p != ".."]
        for depth in range(len(parts), -1, -1):
            limit = _read_limit(os.path.join(base, *parts[:depth], name))
            if limit is not None:
                limits.append(limit)
        if limits:
            return min(limits)
    return None


def memory_limit(
    *, proc_cgroup: str = "/proc/self/cgroup", cgroup_root: str = "/sys/fs/cgroup"
) -> tuple[int, str]:
    """The memory this process may use, and where the bound comes from.

    The cgroup's limit (v2 ``memory.max``, else v1 ``memory.limit_in_bytes``) when
    one is set below the machine's memory, else the machine's total memory.
    """
    machine = _machine_memory()
    limit = _cgroup_limit(proc_cgroup, cgroup_root)
    if limit is not None and (machine <= 0 or limit < machine):
        return limit, "cgroup"
    return machine, "machine"


def rss_bytes(statm: str = "/proc/self/statm") -> int | None:
    """This process's resident set size in bytes (Linux), or None where unknown."""
    try:
        with open(statm) as f:
            fields = f.read().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return None
