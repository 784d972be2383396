"""The scenarios: their numbers, what runs them, and the rows of the table they fill."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench_kernel import KernelKind

from .connection_files import scenario_connection_files, scenario_shake
from .fuzzing import scenario_fuzz
from .kernels import Lab
from .managed_kernels import scenario_curve, scenario_replay
from .odd_requests import scenario_deep, scenario_failing_handlers, scenario_json
from .outcomes import Results
from .output import scenario_output, scenario_stall


@dataclass(frozen=True)
class Scenario:
    """One numbered scenario: the function that runs it on one kernel, and its rows."""

    number: str
    run: Callable[[Lab, KernelKind], Results]
    rows: tuple[tuple[str, str], ...]  # (key, what the row shows)


SCENARIOS = [
    Scenario(
        "1",
        scenario_output,
        (
            ("1a", "`print('ok\\udcff')`; then `1+1`"),
            ("1b", "the same from a thread; then `1+1`"),
            ("1c", "`display({'text/plain': 'ok\\udcff'}, raw=True)`; then `1+1`"),
            ("1d", "`raise ValueError('ok\\udcff')`; then `1+1`"),
            ("1e", "`os.write(1, b'ok\\xff')`; then `1+1`"),
            ("1f", "after 1a to 1e, `os.system('seq 100000')`"),
        ),
    ),
    Scenario(
        "2",
        scenario_deep,
        (
            ("2a", "signed execute_request nested 5,000 deep (22-digit number), shell"),
            ("2b", "the same nesting in a kernel_info_request on control"),
        ),
    ),
    Scenario(
        "3",
        scenario_stall,
        (
            ("3a", "stalled IOPub subscriber; 6,000 displays of 4 KB: healthy client"),
            ("3b", "control kernel_info latency during that cell"),
            ("3c", "then 200 `pass` round trips (reply + idle)"),
            ("3d", "print 300 MB (1 MiB chunks), stalled subscriber: kernel RSS"),
        ),
    ),
    Scenario(
        "4",
        scenario_connection_files,
        (
            ("4a", "connection file without `key`: unsigned execute"),
            ("4b", "connection file without ports"),
            ("4c", 'connection file with `"key": ""`'),
        ),
    ),
    Scenario(
        "5",
        scenario_failing_handlers,
        (
            ("5a", '`history_request` with `n: "ten"`'),
            ("5b", "`history_request` with `n: 2**63`"),
            ("5c", "`complete_request` with `cursor_pos: 99` (code `pri`)"),
        ),
    ),
    Scenario("6", scenario_json, (("6", "execute_request with `NaN`, `Infinity`, `1e400`"),)),
    Scenario("7", scenario_shake, (("7", "`signature_scheme: hmac-shake_128`"),)),
    Scenario(
        "8", scenario_replay, (("8", "signed execute replayed after a KernelManager restart"),)
    ),
    Scenario(
        "9",
        scenario_curve,
        (
            ("9a", 'CurveZMQ (`transport_encryption="required"`): execute'),
            ("9b", "CurveZMQ kernel, plaintext client with the HMAC key"),
        ),
    ),
    Scenario(
        "10",
        scenario_fuzz,
        (
            ("10a", "fuzz: requests a handler should answer"),
            ("10b", "fuzz: deaths; stuck (silent 10 + 30 s); slow (silent over 10 s)"),
            ("10c", "fuzz: `1+1` runs at the end"),
        ),
    ),
]
