"""The crash journal's cost, as the kernel benchmark measures it.

akernel keeps a crash journal when it is started on a connection file it was
given (``akernel/execution/crash_recovery.py``, ``akernel/recovery/journal.py``):
two appends per numbered cell (``cell_started``, ``cell_finished``) and one
memory sample a second on the control thread. ``--Kernel.crash_journal=False``
turns it off. The benchmark writes a connection file for every kernel it
starts, so its other akernel figures include the journal.

:class:`JournalRun` starts pairs of fresh kernels, one with the journal on (the
default) and one with it off, both alive at once, and times ``pass`` round trips
on them in interleaved rounds, in ABBA order (on, off, off, on, ...; the next
pair starts with the other one), so that a slow spell of a shared machine
weighs on both states alike rather than on whichever ran second. The journal's
cost is the ratio of the medians. Then it checks what it measured: the journal
of each kernel with it on holds a ``cell_started`` and an ``ok``
``cell_finished`` record for every cell sent to that kernel, and a kernel with
it off wrote no journal. For a kernel that keeps no journal (ipykernel) there
is one state only, its plain round trip on fresh kernels, for scale.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from akernel.recovery.journal import journal_paths, read_journal

# The command-line flag that turns akernel's crash journal off.
JOURNAL_OFF_FLAG = "--Kernel.crash_journal=False"

# Untimed round trips at the start of each round: the kernel switched to may have
# been idle (its pages and caches cold) during the other's round.
ROUND_WARMUP = 5

STATES = ("on", "off")  # the journal on (akernel's default), off or absent


class JournalError(Exception):
    """The journal file does not show what the kernel was sent, or exists when it should not."""


class JournalKernel(Protocol):
    """What the measure needs of a benchmark kernel (``bench_kernel.KernelProcess``)."""

    @property
    def connection_file(self) -> Path: ...

    def shutdown(self) -> str | None: ...


K = TypeVar("K", bound=JournalKernel)


@dataclass(frozen=True)
class JournalFile:
    """A kernel's journal file as found after its measured cells."""

    size: int  # bytes
    cells: int  # numbered cells sent to the kernel, each journaled twice
    memory_samples: int


@dataclass
class JournalFigures:
    """Round trips (seconds) by state, and the journal files of the kernels with it on."""

    samples: dict[str, list[float]]
    journals: list[JournalFile] = field(default_factory=list)


def split(total: int, parts: int) -> list[int]:
    """``total`` cut into ``parts`` counts as equal as can be (the first ones larger)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def cells_per_kernel(n: int, warmup: int, rounds: int, pairs: int) -> int:
    """Numbered cells sent to each kernel of the first pair (it gets the larger share)."""
    return warmup + rounds * ROUND_WARMUP + split(n, pairs)[0]


def inspect_journal(connection_file: Path, journal_on: bool, cells: int) -> JournalFile | None:
    """The journal beside ``connection_file``, checked against the ``cells`` sent.

    With the journal on: the file must hold, for each of ``cells`` numbered cells,
    its ``cell_started`` and an ``ok`` ``cell_finished`` record. With it off, there
    must be no file. JournalError otherwise.
    """
    path = Path(journal_paths(connection_file).journal)
    if not journal_on:
        if path.exists():
            raise JournalError(f"started with the journal off, it wrote {path.name} all the same")
        return None
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise JournalError(f"no journal beside the connection file ({path.name})") from None
    # The kernel is alive and may be appending a memory sample: a torn last
    # record is possible, and harmless.
    records = read_journal(path).records
    kinds = Counter(record["kind"] for record in records)
    statuses = Counter(r.get("status") for r in records if r["kind"] == "cell_finished")
    if kinds["cell_started"] != cells or kinds["cell_finished"] != cells:
        raise JournalError(
            f"{path.name} journals {kinds['cell_started']} cell starts and "
            f"{kinds['cell_finished']} cell ends for {cells} cells sent"
        )
    if statuses != Counter({"ok": cells}):
        raise JournalError(f"{path.name}: the cells' statuses are {dict(statuses)}, not all ok")
    return JournalFile(size=size, cells=cells, memory_samples=kinds["memory"])


class JournalRun(Generic[K]):
    """Interleaved ``pass`` round trips on pairs of fresh kernels, one per state.

    ``start(state)`` starts a kernel ready for round trips (journal ``"on"`` or
    ``"off"``); ``roundtrips(kernel, count, warmup)`` times ``count`` round trips
    after ``warmup`` untimed ones. ``states`` is ``STATES``, or ``("off",)`` for a
    kernel that keeps no journal. ``n`` round trips are timed per state, spread
    over ``pairs`` pairs of kernels and ``rounds`` rounds in each. After a
    failure, ``step`` says what was being done and ``detail`` what
    ``describe(kernel)`` said of the kernel concerned before it was shut down
    (whether it had died, say).
    """

    def __init__(
        self,
        start: Callable[[str], K],
        roundtrips: Callable[[K, int, int], list[float]],
        *,
        states: tuple[str, ...],
        n: int,
        warmup: int,
        rounds: int,
        pairs: int,
        labels: dict[str, str],
        progress: Callable[[str], None],
        describe: Callable[[K], str] = lambda kernel: "",
    ) -> None:
        self.start = start
        self.roundtrips = roundtrips
        self.states = states
        self.n = n
        self.warmup = warmup
        self.rounds = rounds
        self.pairs = pairs
        self.labels = labels
        self.progress = progress
        self.describe = describe
        self.step = "not started"
        self.detail = ""
        self._kernel: K | None = None  # the one the current step concerns
        self.notes: list[str] = []  # kernels that did not shut down cleanly

    def measure(self) -> JournalFigures:
        """Run every pair; JournalError or the harness's own error at the first failure."""
        figures = JournalFigures({state: [] for state in self.states})
        for pair, count in enumerate(split(self.n, self.pairs)):
            self._measure_pair(pair, count, figures)
        return figures

    def _order(self, index: int) -> tuple[str, ...]:
        """The states in the order of round (or pair) ``index``: ABBA."""
        return self.states if index % 2 == 0 else self.states[::-1]

    def _measure_pair(self, pair: int, count: int, figures: JournalFigures) -> None:
        kernels: dict[str, K] = {}
        try:
            for state in self._order(pair):
                self.step = f"starting a kernel, {self.labels[state]}"
                self._kernel = None
                kernels[state] = self._kernel = self.start(state)
            sent = dict.fromkeys(self.states, self.warmup)
            for state in self.states:
                self.step = f"warm-up, {self.labels[state]}"
                self._kernel = kernels[state]
                self.roundtrips(kernels[state], 0, self.warmup)
            timed: dict[str, list[float]] = {state: [] for state in self.states}
            # Rounds alternate their order, pairs their first round's order.
            for i, chunk in enumerate(split(count, self.rounds)):
                for state in self._order(pair + i):
                    self.step = f"round {i + 1}, {self.labels[state]}"
                    self._kernel = kernels[state]
                    timed[state] += self.roundtrips(kernels[state], chunk, ROUND_WARMUP)
                    sent[state] += chunk + ROUND_WARMUP
            for state in self.states:
                figures.samples[state] += timed[state]
                self.progress(
                    f"pair {pair + 1}/{self.pairs}, {self.labels[state]}: "
                    f"median {_median_ms(timed[state]):.3f} ms over {len(timed[state])}"
                )
            for state in self.states:
                self.step = f"checking the journal file, {self.labels[state]}"
                self._kernel = kernels[state]
                journal = inspect_journal(
                    kernels[state].connection_file, state == "on", sent[state]
                )
                if journal is not None:
                    figures.journals.append(journal)
                    self.progress(
                        f"pair {pair + 1}/{self.pairs}, journal file after {journal.cells} cells: "
                        f"{journal.size:,} bytes ({journal.size / journal.cells:.0f} B per cell, "
                        f"{journal.memory_samples} memory samples)"
                    )
        except BaseException:
            if self._kernel is not None:
                self.detail = self.describe(self._kernel)
            raise
        finally:
            for state, kernel in kernels.items():
                problem = kernel.shutdown()
                if problem:
                    self.notes.append(f"shutdown of a kernel, {self.labels[state]}: {problem}")


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3
