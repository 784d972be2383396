"""Crash recovery: the journal of a kernel started on a connection file of its own.

jupyter_client restarts a dead kernel with the same connection file; the new
kernel finds its predecessor's journal beside it (akernel/recovery). Here the
kernel keeps its own journal (each cell's input when it starts, its status when
it ends, memory samples every second, faulthandler's stacks on a fatal signal),
shows the report of a predecessor that died before the first cell's output,
and offers ``%crashinfo`` (the report again) and ``%recover`` (re-run the cells
that completed in the dead kernel). A clean end of the kernel leaves no report.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ..recovery.journal import Journal, journal_paths
from ..recovery.report import (
    CrashReport,
    ReplayCell,
    analyse,
    format_report,
    memory_limit,
    rss_bytes,
)

log = logging.getLogger("akernel.recovery")

MEMORY_SAMPLE_INTERVAL = 1.0


class CrashRecovery:
    """One kernel's journal and its predecessor's report."""

    def __init__(self, shell: Any, connection_file: str, backend: str) -> None:
        self.shell = shell
        self.paths = journal_paths(connection_file)
        self.journal, predecessor = Journal.open(self.paths, pid=os.getpid(), backend=backend)
        self.report: CrashReport | None = analyse(
            predecessor.contents, predecessor.fault_text, now=time.time()
        )
        # Cells (main thread, subshells) and the memory sampler write: one at a time.
        self._lock = threading.Lock()
        self._shown = False
        self._replaying_in: int | None = None  # the thread running %recover's cells
        # The number the next numbered cell gets. IPython advances its count
        # before or after ``pre_run_cell`` depending on its version, so it is
        # followed from the results: the first cell gets the shell's count.
        self._next_count = int(shell.execution_count)
        # The cell running in each thread (the main shell's, subshells').
        self._running: dict[int, int] = {}

    def install(self, for_good: Callable[[], bool]) -> Callable[[], None]:
        """Start journaling; return what undoes it (a clean end: no report next time).
        When ``for_good()`` says no restart follows, the files go too."""
        faulthandler.enable(file=self.journal.fault_fd, all_threads=True)
        events = self.shell.events
        events.register("pre_run_cell", self._cell_started)
        events.register("post_run_cell", self._cell_finished)
        magic = self.shell.register_magic_function
        magic(self.crashinfo, magic_kind="line", magic_name="crashinfo")
        magic(self.recover, magic_kind="line", magic_name="recover")
        # A line "%recover ..." becomes "await ...replay(...)", so that replayed
        # cells may await (a magic is a plain call, run in the loop's thread).
        transformers = self.shell.input_transformers_cleanup
        transformers.append(_await_recover)
        self.shell.crash_recovery = self

        def undo() -> None:
            events.unregister("pre_run_cell", self._cell_started)
            events.unregister("post_run_cell", self._cell_finished)
            if _await_recover in transformers:
                transformers.remove(_await_recover)
            faulthandler.disable()
            with self._lock:
                self.journal.close_cleanly()
            if for_good():
                for path in (self.paths.journal, self.paths.fault):
                    try:
                        os.unlink(path)
                    except OSError:
                        pass

        return undo

    async def sample_memory(self) -> None:
        """Every second, the process's memory and its limit (a SIGKILL leaves no other trace)."""
        while True:
            # Read the limit each time: a container's limit can change, and a
            # process can be moved to another cgroup.
            limit, source = memory_limit()
            rss = rss_bytes()
            if rss is not None:
                with self._lock:
                    if not self.journal.closed:
                        self.journal.memory_sample(rss, limit, source)
            await anyio.sleep(MEMORY_SAMPLE_INTERVAL)

    def _cell_started(self, info: Any) -> None:
        if self.report is not None and not self._shown:
            self._shown = True
            # Before the cell's own output, in the cell that runs first.
            sys.stderr.write(format_report(self.report) + "\n")
            sys.stderr.flush()
        # Only numbered cells are the user's: silent ones (a frontend's
        # variable view, widgets' helpers) are neither reported nor replayed.
        if self._replaying_in == threading.get_ident():
            return
        if not info.store_history or info.silent:
            return
        code = info.raw_cell or ""
        with self._lock:
            count = self._next_count
            self._next_count += 1
            self._running[threading.get_ident()] = count
            # %recover itself is not replayed: the cells it replays are journaled.
            self.journal.cell_started(count, code, replayable=not _RECOVER_LINE.search(code))

    def _cell_finished(self, result: Any) -> None:
        if self._replaying_in == threading.get_ident():
            return
        with self._lock:
            if result.execution_count is not None:
                self._next_count = result.execution_count + 1
            count = self._running.pop(threading.get_ident(), None)
            if count is None:
                return
            self.journal.cell_finished(count, "ok" if result.success else "error")

    # -- magics ---------------------------------------------------------------

    def crashinfo(self, line: str = "") -> None:
        """Show how the previous kernel on this connection file ended."""
        if self.report is None:
            print("The previous kernel on this connection file ended cleanly (or there was none).")
            return
        print(format_report(self.report))

    @magic_arguments()
    @argument("--list", action="store_true", help="list the cells that would run; run none")
    @argument("--stop", type=int, default=None, help="stop before the cell with this number")
    def recover(self, line: str = "") -> None:
        """Re-run the cells that completed without error in the kernel that died, in order.

        Replaying re-executes their side effects (files written, requests sent).
        On a line of its own in a cell, cells with top-level ``await`` replay too.
        """
        cells = self._cells_to_replay(line)
        if cells is None:
            return
        self._replaying_in = threading.get_ident()
        try:
            for cell in cells:
                transformed = self.shell.transform_cell(cell.code)
                if self.shell.should_run_async(cell.code, transformed_cell=transformed):
                    print(
                        f"cell [{cell.count}] awaits: run %recover on a line of its own"
                        " in a cell to replay it; stopping here"
                    )
                    return
                print(f"re-running cell [{cell.count}]")
                if not self._replayed(cell, self.shell.run_cell(cell.code, store_history=False)):
                    return
        finally:
            self._replaying_in = None
        print(f"recovered {len(cells)} cell(s)")

    async def replay(self, line: str = "") -> None:
        """``%recover`` on a line of its own: replayed cells may use top-level ``await``."""
        cells = self._cells_to_replay(line)
        if cells is None:
            return
        shell = self.shell
        self._replaying_in = threading.get_ident()
        try:
            for cell in cells:
                print(f"re-running cell [{cell.count}]")
                result = await shell.run_cell_async(
                    cell.code, store_history=False, transformed_cell=shell.transform_cell(cell.code)
                )
                if not self._replayed(cell, result):
                    return
        finally:
            self._replaying_in = None
        print(f"recovered {len(cells)} cell(s)")

    def _cells_to_replay(self, line: str) -> list[ReplayCell] | None:
        """The cells ``line``'s options select; None when there is nothing to run
        (with ``--list``, they are printed)."""
        args = parse_argstring(self.recover, line)
        if self.report is None:
            print("Nothing to recover: the previous kernel ended cleanly (or there was none).")
            return None
        cells = [c for c in self.report.completed if args.stop is None or c.count < args.stop]
        if args.list:
            for cell in cells:
                first = cell.code.strip().splitlines()[0] if cell.code.strip() else ""
                print(f"[{cell.count}] {first}")
            return None
        return cells

    def _replayed(self, cell: ReplayCell, result: Any) -> bool:
        """Journal a replayed cell that succeeded (the next kernel replays it in
        turn); whether to go on."""
        if not result.success:
            print(f"cell [{cell.count}] failed: stopping here")
            return False
        with self._lock:
            self.journal.cell_started(cell.count, cell.code)
            self.journal.cell_finished(cell.count, "ok")
        return True


_RECOVER_LINE = re.compile(r"^%recover\b", re.MULTILINE)
_RECOVER_CALL = re.compile(r"^%recover(?=\s|$)(.*?)(\r?\n)?$")


def _await_recover(lines: list[str]) -> list[str]:
    """IPython cleanup transformer: a top-level ``%recover ARGS`` line becomes an
    awaited replay, so that the cell runs asynchronously."""
    out = []
    for line in lines:
        match = _RECOVER_CALL.match(line)
        if match:
            args = match.group(1).strip()
            line = f"await get_ipython().crash_recovery.replay({args!r}){match.group(2) or ''}"
        out.append(line)
    return out
