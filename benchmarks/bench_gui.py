"""GUI event loops' costs, as the kernel benchmark measures them (``--only gui``).

A kernel with ``%gui qt`` runs Qt's event loop whenever it would otherwise
wait (akernel: in its asyncio or trio loop's wait for I/O, akernel/gui;
ipykernel: Qt's loop runs as its main loop, ended by a notifier on the shell
socket). :class:`GuiRun` measures, in this order: ``pass`` round trips with no GUI and
with ``%gui qt`` and a Qt window open, in interleaved rounds (ABBA), Qt switched
on and off at run time between rounds (with it off, the hook is gone); with Qt
on, the interrupt latency of ``while True: pass`` and of a cell awaiting
``anyio.sleep`` (the kernel then waits in Qt's loop), by ``interrupt_request``
and by SIGINT; the latter once more with no GUI, for comparison.

A measure whose request gets no answer is left out (its reason shown; n/a for
ipykernel), and the next ones run on a fresh kernel: ipykernel 7.4's Qt loop
stops answering execute requests at some point (here, with PySide6 6.12, in
each of four runs, within its first 2000 round trips with Qt on), and it does
not end an awaiting cell on an interrupt, with or without Qt.

Qt needs a display: the benchmark uses ``$DISPLAY`` if set, else starts a
virtual X server (Xvfb) for the section, else says it cannot run.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

# What the kernels run: Qt on, with a window open (akernel and ipykernel alike).
QT_ON = (
    "%gui qt\n"
    "from IPython.external.qt_for_kernel import QtGui\n"
    "_bench_window = QtGui.QLabel('benchmark')\n"
    "_bench_window.show()"
)
QT_OFF = "%gui"
# The interrupted cells: one holds the main thread, one waits in the event loop.
INTERRUPTED = {
    "busy": "while True: pass",
    "await": "import anyio\nawait anyio.sleep(600)",
}
MODES = ("message", "signal")
# Per interrupt: time for the cell to get going before the interrupt is sent.
SETTLE = 0.2
# Seconds an interrupted cell has to end before the kernel is given up on.
INTERRUPT_TIMEOUT = 10.0
# Round trips: rounds per state, interleaved; untimed round trips at the start of
# each round after the first two (the kernel switched from the other state).
ROUNDS = 10
ROUND_WARMUP = 5
ROUNDTRIP_KEYS = ("gui_off_ms", "gui_qt_ms")


class GuiError(Exception):
    """A GUI measure could not be made (no display, Qt failed in the kernel...)."""


class GuiKernel(Protocol):
    """What the measure needs of a benchmark kernel (``bench_kernel.KernelProcess``)."""

    client: Any

    @property
    def pid(self) -> int: ...

    def shutdown(self) -> str | None: ...


@dataclass
class GuiFigures:
    """Milliseconds by row key (``ROWS``): round trips and interrupts; derived
    values (p90, Qt's cost); and why a row has no figure, by row key."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# The rows of the benchmark's table: key, title, unit, format, akernel goal.
ROWS = (
    ("gui_off_ms", "execute 'pass', no GUI", "ms", "{:.3f}", ""),
    ("gui_off_ms_p90", "  p90", "ms", "{:.3f}", ""),
    ("gui_qt_ms", "  %gui qt, a window open", "ms", "{:.3f}", ""),
    ("gui_qt_ms_p90", "    p90", "ms", "{:.3f}", ""),
    ("gui_cost", "  Qt's cost (qt / no GUI)", "x", "{:.2f}", ""),
    ("gui_int_qt_busy_message_ms", "interrupt while True, Qt on (request)", "ms", "{:.1f}",
     "<= 10"),
    ("gui_int_qt_busy_signal_ms", "  (SIGINT)", "ms", "{:.1f}", "<= 10"),
    ("gui_int_qt_await_message_ms", "interrupt await anyio.sleep, Qt on (request)", "ms",
     "{:.1f}", ""),
    ("gui_int_qt_await_signal_ms", "  (SIGINT)", "ms", "{:.1f}", ""),
    ("gui_int_off_await_message_ms", "  no GUI (request)", "ms", "{:.1f}", ""),
    ("gui_int_off_await_signal_ms", "  no GUI (SIGINT)", "ms", "{:.1f}", ""),
)  # fmt: skip
NO_RATIO = {"gui_cost"}


@contextmanager
def display(progress: Callable[[str], None]) -> Iterator[str]:
    """A display for the kernels: ``$DISPLAY``, or a virtual X server started here
    (Debian's xvfb) and stopped at the end. GuiError if there is neither."""
    given = os.environ.get("DISPLAY")
    if given:
        yield given
        return
    if shutil.which("Xvfb") is None:
        raise GuiError(
            "no display: DISPLAY is not set and Xvfb is not installed (apt install xvfb)"
        )
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        readable, _, _ = select.select([read_fd], [], [], 30)
        number = os.read(read_fd, 64).decode().strip() if readable else ""
        if not number:
            raise GuiError("Xvfb did not start (no display number within 30 s)")
        progress(f"started Xvfb on :{number} for the GUI measures")
        os.environ["DISPLAY"] = f":{number}"
        try:
            yield f":{number}"
        finally:
            os.environ.pop("DISPLAY", None)
    finally:
        os.close(read_fd)
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


class GuiRun:
    """The GUI measures (see the module's doc), each a phase run on the current
    kernel with Qt on or off as it needs. A phase that fails (a request that
    gets no answer) leaves its rows empty, with the reason, and the kernel is
    replaced by a fresh one for the next phases.

    ``start()`` starts a kernel ready for round trips; ``roundtrips(kernel,
    count, warmup)`` times ``count`` ``pass`` round trips after ``warmup``
    untimed ones. GuiError (Qt cannot be enabled, say) ends the run; ``step``
    then says what was being done, and ``figures`` holds what was measured.
    """

    def __init__(
        self,
        start: Callable[[], GuiKernel],
        roundtrips: Callable[[GuiKernel, int, int], list[float]],
        *,
        n: int,
        warmup: int,
        interrupt_reps: int,
        timeout: float,
        progress: Callable[[str], None],
    ) -> None:
        self.start = start
        self.roundtrips = roundtrips
        self.n = n
        self.warmup = warmup
        self.interrupt_reps = interrupt_reps
        self.timeout = timeout
        self.progress = progress
        self.step = "not started"
        self.figures = GuiFigures()
        self._kernel: GuiKernel | None = None
        self._qt = False  # whether Qt is on in the current kernel

    def measure(self) -> GuiFigures:
        """Every measure, in order; the last kernel is shut down at the end."""
        try:
            self._roundtrip_rounds()
            for state, cells in (("qt", ("busy", "await")), ("off", ("await",))):
                for cell in cells:
                    for mode in MODES:
                        self._phase(
                            interrupt_key(state, cell, mode), state, self._interrupter(cell, mode)
                        )
        finally:
            self._drop_kernel()
            for key in ROUNDTRIP_KEYS:
                if samples := self.figures.samples.get(key):
                    self.figures.values[f"{key}_p90"] = sorted(samples)[
                        int(0.9 * (len(samples) - 1))
                    ]
            qt = self.figures.samples.get("gui_qt_ms")
            off = self.figures.samples.get("gui_off_ms")
            if qt and off:
                self.figures.values["gui_cost"] = _median(qt) / _median(off)
        return self.figures

    def _roundtrip_rounds(self) -> None:
        """``pass`` round trips with no GUI and with Qt, in interleaved rounds in ABBA
        order, Qt switched on and off at run time between rounds: a slow spell of
        a shared machine weighs on both alike."""
        timed: dict[str, list[float]] = {key: [] for key in ROUNDTRIP_KEYS}
        key = ROUNDTRIP_KEYS[0]
        try:
            kernel = self._current_kernel()
            for i, count in enumerate(split(self.n, ROUNDS)):
                order = ROUNDTRIP_KEYS if i % 2 == 0 else ROUNDTRIP_KEYS[::-1]
                for key in order:
                    self._switch(kernel, key == "gui_qt_ms")
                    self.step = f"round trips, round {i + 1}, {key}"
                    warmup = self.warmup if i < 2 else ROUND_WARMUP
                    timed[key] += [s * 1e3 for s in self.roundtrips(kernel, count, warmup)]
        except GuiError:
            raise
        except Exception as error:  # no answer: this kernel cannot go on
            reason = _first_line(error)
            self.progress(f"round trips, {key}: {reason}; a fresh kernel for the next measures")
            self.figures.notes.append(f"round trips ended in a {key} round: {reason}")
            for name in ROUNDTRIP_KEYS:
                if not timed[name]:
                    self.figures.missing[name] = reason
            self._drop_kernel()
        for name, samples in timed.items():
            if samples:
                self.figures.samples[name] = samples
                self.progress(f"{name}: median {_median(samples):.3f} ms of {len(samples)}")

    def _current_kernel(self) -> GuiKernel:
        if self._kernel is None:
            self._kernel = self.start()
            self._qt = False
        return self._kernel

    def _phase(self, key: str, state: str, measure: Callable[[GuiKernel], list[float]]) -> None:
        self.step = f"{key}: starting a kernel"
        kernel = self._current_kernel()
        try:
            self._switch(kernel, state == "qt")
            self.step = f"{key}: measuring"
            samples = measure(kernel)
        except GuiError:
            raise
        except Exception as error:  # no answer: this kernel cannot go on
            reason = _first_line(error)
            self.figures.missing[key] = reason
            self.progress(f"{key}: {reason}; a fresh kernel for the next measures")
            self._drop_kernel()
            return
        self.figures.samples[key] = samples
        self.progress(f"{key}: median {_median(samples):.3f} ms of {len(samples)}")

    def _switch(self, kernel: GuiKernel, qt: bool) -> None:
        if qt == self._qt:
            return
        code = QT_ON if qt else QT_OFF
        self.step = "enabling Qt" if qt else "switching Qt off"
        reply = kernel.client.execute(code, self.timeout)
        if reply.content.get("status") != "ok":
            content = reply.content
            raise GuiError(f"{code!r}: {content.get('ename')}: {content.get('evalue')}")
        self._qt = qt

    def _drop_kernel(self) -> None:
        kernel, self._kernel = self._kernel, None
        if kernel is not None:
            problem = kernel.shutdown()
            if problem:
                self.figures.notes.append(f"shutdown of a GUI kernel: {problem}")

    def _interrupter(self, cell: str, mode: str) -> Callable[[GuiKernel], list[float]]:
        def measure(kernel: GuiKernel) -> list[float]:
            return self._interrupts(kernel, INTERRUPTED[cell], mode)

        return measure

    def _interrupts(self, kernel: GuiKernel, code: str, mode: str) -> list[float]:
        """Milliseconds from the interrupt to the reply of ``code``, a warm-up first."""
        client = kernel.client
        samples: list[float] = []
        for rep in range(self.interrupt_reps + 1):
            msg_id = client.start_cell(code, self.timeout)
            time.sleep(SETTLE)
            control_id = None
            t0 = time.perf_counter()
            if mode == "message":
                control_id = client.send(client.control, "interrupt_request", {})
            else:
                os.kill(kernel.pid, signal.SIGINT)
            reply = client.wait_reply(client.shell, msg_id, INTERRUPT_TIMEOUT, "execute_reply")
            elapsed = time.perf_counter() - t0
            client.wait_iopub(msg_id, "status", self.timeout)
            if control_id is not None:
                client.wait_reply(client.control, control_id, self.timeout, "interrupt_reply")
            if reply.content.get("ename") != "KeyboardInterrupt":
                raise RuntimeError(f"the interrupted cell replied {reply.content.get('status')}")
            if rep:
                samples.append(elapsed * 1e3)
        client.sync(self.timeout)
        return samples


def interrupt_key(state: str, cell: str, mode: str) -> str:
    """The row key of the interrupts of ``INTERRUPTED[cell]`` in ``mode``, GUI ``state``."""
    return f"gui_int_{state}_{cell}_{mode}_ms"


def split(total: int, parts: int) -> list[int]:
    """``total`` cut into ``parts`` counts as equal as can be (the first ones larger)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _first_line(error: BaseException) -> str:
    text = str(error)
    return text.splitlines()[0] if text else type(error).__name__


def _median(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2]
