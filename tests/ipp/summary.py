"""Summarize a JUnit XML report of ipyparallel's suite: counts and the tests that failed.

``python tests/ipp/summary.py REPORT.xml [BASELINE.xml]``: with a baseline
report (the same suite with ipykernel engines), also list every test whose
outcome differs. Exits 1 when a test failed (or fails only in REPORT, given a
baseline), else 0.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import Counter


def outcomes(path: str) -> tuple[dict[str, tuple[str, str]], float]:
    """Test id -> (outcome, first line of the message); and the run's duration."""
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    results: dict[str, tuple[str, str]] = {}
    for case in root.iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}".lstrip(":")
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                # A failure in the call outranks an error in teardown, then a skip.
                if outcome == "passed" or child.tag == "failure":
                    outcome = {"failure": "failed"}.get(child.tag, child.tag)
                    lines = (child.get("message") or "").strip().splitlines()
                    message = lines[0] if lines else ""
        results[test_id] = (outcome, message)
    return results, float(suite.get("time", 0) if suite is not None else 0)


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__)
        return 2
    results, duration = outcomes(argv[0])
    counts = Counter(outcome for outcome, _ in results.values())
    print(
        f"ipyparallel suite: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['error']} errors, {counts['skipped']} skipped in {duration:.0f}s"
        " (JUnit counts xpassed as passed, xfailed as skipped)"
    )
    bad = {t: r for t, r in results.items() if r[0] in ("failed", "error")}
    for test_id, (outcome, message) in sorted(bad.items()):
        print(f"  {outcome.upper()} {test_id}: {message[:150]}")
    if len(argv) == 1:
        return 1 if bad else 0
    baseline, _ = outcomes(argv[1])
    absent = ("absent", "")
    differ = sorted(
        t
        for t in set(results) | set(baseline)
        if results.get(t, absent)[0] != baseline.get(t, absent)[0]
    )
    print(f"differing from the baseline: {len(differ)}")
    for test_id in differ:
        print(
            f"  {test_id}: baseline {baseline.get(test_id, absent)[0]}, "
            f"now {results.get(test_id, absent)[0]}"
        )
    failed_before = {t for t, r in baseline.items() if r[0] in ("failed", "error")}
    return 1 if set(bad) - failed_before else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
