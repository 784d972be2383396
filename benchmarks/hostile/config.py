"""Sizes and timeouts of the hostile scenarios, and what every module shares."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
DELIM = b"<IDS|MSG>"
MiB = 1 << 20


@dataclass(frozen=True)
class Config:
    """Sizes and timeouts."""

    reply_timeout: float = 10.0
    startup_timeout: float = 60.0
    displays: int = 6_000
    display_chars: int = 4_000
    roundtrips: int = 200
    print_mib: int = 300
    fuzz_cases: int = 1_000
    fuzz_batch: int = 50
    fuzz_quiet: float = 3.0  # seconds without a message: the batch is over
    stuck_timeout: float = 30.0  # more seconds for a silent kernel before it is replaced
    fuzz_seed: int | None = None  # None: tests/fuzzing.py's default

    @classmethod
    def quick(cls) -> Config:
        """Fewer fuzz cases and a smaller print, same scenarios."""
        return cls(print_mib=100, fuzz_cases=300)


def progress(text: str) -> None:
    """A line of progress, on stderr (the table goes to stdout)."""
    print(text, file=sys.stderr, flush=True)
