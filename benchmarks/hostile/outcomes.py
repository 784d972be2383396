"""What a scenario reports (one cell of the table), and the small measures scenarios share."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Outcome:
    """One cell of the table: what happened, whether it is what a kernel should do
    (None: a measure, no verdict), and the raw figures."""

    text: str
    ok: bool | None = None
    data: dict[str, Any] = field(default_factory=dict)


Results = dict[str, Outcome]


def format_duration(seconds: float) -> str:
    """``12.3 ms`` under a second, ``1.23 s`` from there."""
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def marker_code(path: Path, mode: str = "w") -> str:
    """Code that writes a line to ``path``: :func:`marker_runs` counts how often it ran."""
    return f"open({str(path)!r}, {mode!r}).write('ran\\n')"


def marker_runs(path: Path) -> int:
    """How many times :func:`marker_code` for ``path`` ran (0 before the first)."""
    with contextlib.suppress(OSError):
        return path.read_text().count("ran")
    return 0
