"""Unit tests of the crash journal and crash reports (no kernels; real crashes in subprocesses)."""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from akernel.recovery.journal import (
    Journal,
    JournalContents,
    encode_record,
    journal_paths,
    read_journal,
)
from akernel.recovery.report import (
    KILLED_WITHOUT_TRACE,
    analyse,
    format_report,
    memory_limit,
    parse_fault_text,
    rss_bytes,
)

SUBPROCESS_TIMEOUT = 60


@pytest.fixture
def paths(tmp_path: Path):
    return journal_paths(tmp_path / "kernel-abc.json")


def test_paths_are_beside_and_named_after_the_connection_file(tmp_path: Path) -> None:
    p = journal_paths(tmp_path / "kernel-abc.json")
    assert p.journal == str(tmp_path / "kernel-abc.akernel-journal")
    assert p.fault == str(tmp_path / "kernel-abc.akernel-fault")


def test_round_trip_and_clean_stop(paths) -> None:
    journal, predecessor = Journal.open(paths, pid=1234, backend="trio")
    assert not predecessor.contents.exists and predecessor.fault_text == ""
    journal.cell_started(1, "x = 1\nprint('é')")
    journal.cell_finished(1, "ok")
    journal.memory_sample(100, 1000, "machine")
    journal.cell_started(2, "1/0")
    journal.cell_finished(2, "error")
    contents = read_journal(paths.journal)
    kinds = [r["kind"] for r in contents.records]
    assert kinds == [
        *("start", "cell_started", "cell_finished", "memory"),
        *("cell_started", "cell_finished"),
    ]
    assert contents.records[0]["pid"] == 1234 and contents.records[0]["backend"] == "trio"
    assert contents.records[1]["code"] == "x = 1\nprint('é')"
    assert contents.records[3] | {"time": 0} == {
        "kind": "memory",
        "rss": 100,
        "limit": 1000,
        "source": "machine",
        "time": 0,
    }
    assert not contents.clean and not contents.torn
    journal.close_cleanly()
    assert journal.closed
    again, predecessor = Journal.open(paths, pid=5678, backend="asyncio")
    try:
        assert predecessor.contents.clean
        assert analyse(predecessor.contents, predecessor.fault_text, now=time.time()) is None
        # The fresh journal holds only the new start record.
        fresh = read_journal(paths.journal)
        assert [r["kind"] for r in fresh.records] == ["start"]
        assert fresh.records[0]["pid"] == 5678
    finally:
        again.close()


def test_bad_status_is_refused(paths) -> None:
    journal, _ = Journal.open(paths, pid=1, backend="asyncio")
    try:
        with pytest.raises(ValueError, match="status"):
            journal.cell_finished(1, "finished")
    finally:
        journal.close()
    assert [r["kind"] for r in read_journal(paths.journal).records] == ["start"]


def test_torn_last_record_at_every_offset(paths, tmp_path: Path) -> None:
    journal, _ = Journal.open(paths, pid=1, backend="asyncio")
    journal.cell_started(1, "a = 1")
    journal.cell_finished(1, "ok")
    journal.close()
    data = Path(paths.journal).read_bytes()
    last = encode_record({"kind": "cell_started", "count": 2, "code": "b = 'ünïcode'"})
    whole = data + last
    cut_path = tmp_path / "cut"
    for cut in range(len(data), len(whole)):
        cut_path.write_bytes(whole[:cut])
        contents = read_journal(cut_path)
        assert [r["kind"] for r in contents.records] == ["start", "cell_started", "cell_finished"]
        assert contents.torn == (cut > len(data))
    cut_path.write_bytes(whole)
    assert read_journal(cut_path).records[-1]["count"] == 2


def test_garbage_never_raises(tmp_path: Path) -> None:
    good = encode_record({"kind": "start", "pid": 1})
    body_flipped = bytearray(good + encode_record({"kind": "stop", "note": "abc"}))
    # Corrupt the second body so that it is still valid JSON: only the CRC can tell.
    body_flipped[body_flipped.index(b"abc")] ^= 0x02
    rng = random.Random(7)
    cases = {
        "missing": None,
        "empty": b"",
        "random": bytes(rng.randrange(256) for _ in range(4096)),
        "text": b"hello world\n" * 10,
        "crc": bytes(body_flipped),
        "not-json": b"%08x %08x %s\n" % (3, __import__("zlib").crc32(b"{{{"), b"{{{"),
        "not-object": good + encode_record([1, 2]),  # type: ignore[arg-type]
        "no-newline": good[:-1] + b"X",
        "directory": "dir",
    }
    for name, data in cases.items():
        path = tmp_path / name
        if data == "dir":
            path.mkdir()
        elif data is not None:
            path.write_bytes(data)
        contents = read_journal(path)
        assert not contents.clean, name
        expected = 1 if name in ("crc", "not-object") else 0
        assert len(contents.records) == expected, name
        assert contents.exists == (name != "missing"), name
        # A start record and nothing else is a predecessor that died: it gets a report.
        assert (analyse(contents, "", now=0.0) is not None) == bool(expected), name


def test_files_are_private(paths) -> None:
    journal, _ = Journal.open(paths, pid=1, backend="asyncio", max_bytes=4096)
    try:
        for path in (paths.journal, paths.fault):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        for count in range(100):  # enough to compact
            journal.cell_started(count, "x" * 100)
            journal.cell_finished(count, "ok")
        assert journal.compactions > 0
        assert stat.S_IMODE(os.stat(paths.journal).st_mode) == 0o600
    finally:
        journal.close()


def test_compaction_keeps_start_and_newest_ok_cells_under_the_bound(paths) -> None:
    max_bytes = 8192
    journal, _ = Journal.open(paths, pid=42, backend="trio", max_bytes=max_bytes)
    try:
        journal.memory_sample(10, 100, "cgroup")
        for count in range(1, 301):
            journal.cell_started(count, f"cell_{count} = {count}\n" + "#" * 150)
            journal.cell_finished(count, "error" if count % 10 == 0 else "ok")
            assert os.path.getsize(paths.journal) <= max_bytes
        journal.cell_started(301, "still_running()")
        assert journal.compactions > 1
        contents = read_journal(paths.journal)
    finally:
        journal.close()
    assert not contents.torn
    assert contents.records[0]["kind"] == "start" and contents.records[0]["pid"] == 42
    report = analyse(contents, "", now=time.time())
    assert report is not None
    counts = [cell.count for cell in report.completed]
    assert counts == sorted(counts) and counts[-1] == 299  # 300 failed; newest ok kept
    assert 1 not in counts and report.dropped_cells > 0
    assert len(counts) + report.dropped_cells >= 270  # every ok cell kept or counted
    assert report.completed[-1].code.startswith("cell_299 = 299")
    assert report.running_cell is not None and report.running_cell.count == 301
    assert any(r["kind"] == "memory" for r in contents.records)


def test_huge_cell_is_truncated_and_not_replayed(paths) -> None:
    journal, _ = Journal.open(paths, pid=1, backend="asyncio", max_bytes=8192)
    try:
        journal.cell_started(1, "big = 1\n" + "y" * 20000)
        journal.cell_finished(1, "ok")
        assert os.path.getsize(paths.journal) <= 8192
    finally:
        journal.close()
    contents = read_journal(paths.journal)
    assert contents.records[1]["truncated"] is True
    report = analyse(contents, "", now=0.0)
    assert report is not None and report.completed == []


def test_no_predecessor_gives_no_report(paths) -> None:
    assert analyse(read_journal(paths.journal), "", now=time.time()) is None
    assert analyse(JournalContents(), "Fatal Python error: Aborted", now=0.0) is None


CRASHER = textwrap.dedent(
    """
    import faulthandler, os, sys, threading, time
    from akernel.recovery.journal import Journal, journal_paths

    mode, connection_file, cell_dir = sys.argv[1:4]
    journal, _ = Journal.open(journal_paths(connection_file), pid=os.getpid(), backend="trio")
    faulthandler.enable(file=journal.fault_fd, all_threads=True)
    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
    journal.cell_started(1, "a = 1")
    journal.cell_finished(1, "ok")
    journal.cell_started(2, "b = 1/0")
    journal.cell_finished(2, "error")
    if mode == "kill-oom":
        journal.memory_sample(95, 100, "cgroup")
    elif mode == "kill":
        journal.memory_sample(10, 100, "machine")
    cells = {
        "segv": "import ctypes\\nctypes.string_at(0)\\n",
        "abort": "import os\\nos.abort()\\n",
    }
    code = cells.get(mode, "print('ready', flush=True)\\nimport time\\ntime.sleep(600)\\n")
    journal.cell_started(3, code)
    exec(compile(code, os.path.join(cell_dir, "ipykernel_1", "3.py"), "exec"), {})
    """
)


def _crash(tmp_path: Path, mode: str) -> int:
    connection_file = tmp_path / "kernel-crash.json"
    args = [sys.executable, "-c", CRASHER, mode, str(connection_file), str(tmp_path)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        if mode.startswith("kill"):
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"ready\n"
            os.kill(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=SUBPROCESS_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def _successor_report(tmp_path: Path):
    paths = journal_paths(tmp_path / "kernel-crash.json")
    journal, predecessor = Journal.open(paths, pid=os.getpid(), backend="asyncio")
    journal.close_cleanly()
    # The successor starts fresh: its own journal and fault file hold no crash.
    assert Path(paths.fault).read_bytes() == b""
    return analyse(predecessor.contents, predecessor.fault_text, now=time.time())


@pytest.mark.parametrize(
    ("mode", "signum", "first_line", "user_line"),
    [
        ("segv", signal.SIGSEGV, "import ctypes", "line 2 in <module>"),
        ("abort", signal.SIGABRT, "import os", "line 2 in <module>"),
    ],
)
def test_fatal_signal_report(tmp_path: Path, mode, signum, first_line, user_line) -> None:
    assert _crash(tmp_path, mode) == -signum
    report = _successor_report(tmp_path)
    assert report is not None
    assert report.signal == signum.name
    assert report.running_cell is not None and report.running_cell.count == 3
    assert report.running_cell.code.startswith(first_line)
    assert [(c.count, c.code) for c in report.completed] == [(1, "a = 1")]
    assert report.failed == [2]
    assert len(report.threads) == 2  # the main thread and the sleeper
    # The main thread's stack, trimmed so the user's cell line is last.
    assert "ipykernel_1/3.py" in report.stack[-1] and user_line in report.stack[-1]
    assert report.out_of_memory is None
    text = format_report(report)
    assert signum.name in text
    assert f"    {first_line}" in text
    assert "ipykernel_1/3.py" in text and user_line in text
    assert "%recover re-runs the 1 cell " in text and "side effects" in text
    assert "%crashinfo" in text


@pytest.mark.parametrize(("mode", "oom"), [("kill-oom", True), ("kill", False)])
def test_sigkill_report(tmp_path: Path, mode: str, oom: bool) -> None:
    assert _crash(tmp_path, mode) == -signal.SIGKILL
    report = _successor_report(tmp_path)
    assert report is not None
    assert report.signal is None and report.cause == KILLED_WITHOUT_TRACE
    assert report.stack == []
    assert report.running_cell is not None and report.running_cell.count == 3
    text = format_report(report)
    assert "killed without a trace" in text
    assert "print('ready', flush=True)" in text
    if oom:
        assert report.out_of_memory is not None
        assert "probably out of memory: 0.0 GB of 0.0 GB" in text
    else:
        assert report.out_of_memory is None and "out of memory" not in text


def test_out_of_memory_wording_in_gigabytes() -> None:
    contents = read_journal_from(
        {"kind": "start", "pid": 9, "backend": "asyncio", "time": 0.0},
        {"kind": "memory", "rss": 7_800_000_000, "limit": 8_000_000_000, "source": "machine"},
    )
    report = analyse(contents, "", now=10.0)
    assert report is not None and report.age_seconds == 10.0
    assert report.out_of_memory is not None
    assert report.out_of_memory.startswith("probably out of memory: 7.8 GB of 8.0 GB")


def read_journal_from(*records: dict) -> JournalContents:
    data = b"".join(encode_record(r) for r in records)
    from akernel.recovery.journal import _parse_records

    parsed, torn = _parse_records(data)
    return JournalContents(records=parsed, torn=torn, exists=True)


def test_parse_fault_text_signal_names() -> None:
    for description, name in [
        ("Bus error", "SIGBUS"),
        ("Floating point exception", "SIGFPE"),
        ("Floating-point exception", "SIGFPE"),
        ("Illegal instruction", "SIGILL"),
    ]:
        text = (
            f"Fatal Python error: {description}\n\n"
            "Current thread 0x00007f0000000001 (most recent call first):\n"
            '  File "/x/ipykernel_5/1.py", line 4 in <module>\n'
            '  File "/akernel/execution/run.py", line 9 in run\n'
        )
        signal_name, _, threads = parse_fault_text(text)
        assert signal_name == name
        assert threads[0].current and len(threads[0].frames) == 2


def _fake_cgroup(tmp_path: Path, proc_line: str, files: dict[str, str]) -> dict[str, str]:
    tmp_path.mkdir()
    proc = tmp_path / "proc-cgroup"
    proc.write_text(proc_line)
    root = tmp_path / "cgroup"
    for rel, value in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(value + "\n")
    return {"proc_cgroup": str(proc), "cgroup_root": str(root)}


def test_memory_limit_from_cgroup_v2_and_v1(tmp_path: Path) -> None:
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    v2 = _fake_cgroup(
        tmp_path / "v2",
        "0::/user.slice/job\n",
        {"user.slice/job/memory.max": "max", "user.slice/memory.max": str(2**20)},
    )
    assert memory_limit(**v2) == (2**20, "cgroup")
    unlimited = _fake_cgroup(tmp_path / "none", "0::/job\n", {"job/memory.max": "max"})
    assert memory_limit(**unlimited) == (machine, "machine")
    v1 = _fake_cgroup(
        tmp_path / "v1",
        "5:cpu,cpuacct:/a\n4:memory:/job\n",
        {"memory/job/memory.limit_in_bytes": str(3 * 2**20)},
    )
    assert memory_limit(**v1) == (3 * 2**20, "cgroup")
    huge = _fake_cgroup(
        tmp_path / "huge", "4:memory:/\n", {"memory/memory.limit_in_bytes": str(2**63 - 4096)}
    )
    assert memory_limit(**huge) == (machine, "machine")
    missing = {"proc_cgroup": str(tmp_path / "nope"), "cgroup_root": str(tmp_path)}
    assert memory_limit(**missing) == (machine, "machine")
    limit, source = memory_limit()
    assert limit > 0 and source in ("cgroup", "machine")


def test_rss_bytes() -> None:
    if not os.path.exists("/proc/self/statm"):
        assert rss_bytes() is None
        return
    before = rss_bytes()
    assert before is not None and before > 0
    block = bytearray(64 * 2**20)  # touched: zero-filled pages are written
    for i in range(0, len(block), 4096):
        block[i] = 1
    after = rss_bytes()
    assert after is not None and after >= before + 32 * 2**20
    del block
