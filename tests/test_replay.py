"""A message captured before a restart is refused by the restarted kernel (same key)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from akernel.transport.replay import PREFIX, PersistentSignatureHistory, guard_file
from akernel.wire import ReplayedMessage

from .conftest import start_kernel, stop_kernel
from .rawclient import build_frames, replies_until, send_raw
from .test_security import execute_content
from .utils import run_ok


def counting_code(path: Path) -> str:
    """Code that appends a line to ``path`` each time it runs."""
    return f"open({str(path)!r}, 'a').write('ran\\n')"


def guard_of(km) -> Path:
    return guard_file(os.environ["JUPYTER_RUNTIME_DIR"], km.session.key)


@pytest.fixture
def restartable(backend):
    km, kc = start_kernel(backend)
    try:
        yield km, kc
    finally:
        stop_kernel(km, kc)


def restart(km, kc, *, now: bool) -> None:
    km.restart_kernel(now=now)
    kc.wait_for_ready(timeout=30)


@pytest.mark.parametrize("now", [False, True], ids=["shutdown_request", "killed"])
def test_replay_after_restart_is_refused(restartable, tmp_path, now):
    km, kc = restartable
    runs = tmp_path / "runs"
    msg_id, frames = build_frames(kc, "execute_request", execute_content(counting_code(runs)))
    send_raw(kc, "shell", list(frames))
    assert replies_until(kc, "shell", msg_id)[-1]["content"]["status"] == "ok"
    assert guard_of(km).exists()

    restart(km, kc, now=now)
    send_raw(kc, "shell", list(frames))
    run_ok(kc, "pass")  # answered after anything the replay could have done
    assert runs.read_text() == "ran\n"
    assert km.is_alive()


def test_message_first_sent_after_restart_runs(restartable, tmp_path):
    """A request made before a restart but sent after it (a frontend that
    queued it meanwhile) is not a replay."""
    km, kc = restartable
    runs = tmp_path / "runs"
    msg_id, frames = build_frames(kc, "execute_request", execute_content(counting_code(runs)))
    restart(km, kc, now=False)
    send_raw(kc, "shell", frames)
    assert replies_until(kc, "shell", msg_id)[-1]["content"]["status"] == "ok"
    assert runs.read_text() == "ran\n"


def test_final_shutdown_forgets(backend):
    km, kc = start_kernel(backend)
    try:
        run_ok(kc, "pass")
        guard = guard_of(km)
        assert guard.exists()
    finally:
        stop_kernel(km, kc)
    assert not guard.exists()


# -- the file itself ---------------------------------------------------------------------


def signature(n: int) -> bytes:
    return f"{n:064x}".encode()


def test_history_survives_a_new_instance(tmp_path):
    path = tmp_path / "guard.bin"
    first = PersistentSignatureHistory(path, 32, size=100)
    for n in range(10):
        first.check_and_add(signature(n))
    first.close(forget=False)
    second = PersistentSignatureHistory(path, 32, size=100)
    for n in range(10):
        with pytest.raises(ReplayedMessage):
            second.check_and_add(signature(n))
    second.check_and_add(signature(10))
    second.close(forget=True)
    assert not path.exists()


def test_history_file_is_compacted_and_bounded(tmp_path):
    path = tmp_path / "guard.bin"
    history = PersistentSignatureHistory(path, 32, size=100)
    for n in range(1_000):
        history.check_and_add(signature(n))
    assert path.stat().st_size <= 2 * 100 * 32 + 32
    history.close(forget=False)
    reloaded = PersistentSignatureHistory(path, 32, size=100)
    with pytest.raises(ReplayedMessage):
        reloaded.check_and_add(signature(999))
    reloaded.check_and_add(signature(0))  # long forgotten, as in memory
    reloaded.close(forget=False)
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_truncated_file_is_read_up_to_the_last_whole_record(tmp_path):
    path = tmp_path / "guard.bin"
    path.write_bytes(bytes.fromhex(signature(7).decode()) + b"\x01\x02")
    history = PersistentSignatureHistory(path, 32, size=100)
    with pytest.raises(ReplayedMessage):
        history.check_and_add(signature(7))
    history.close(forget=True)


def test_stale_guard_files_are_removed(tmp_path):
    stale = tmp_path / f"{PREFIX}old.bin"
    stale.write_bytes(b"")
    week_ago = time.time() - 8 * 24 * 3600
    os.utime(stale, (week_ago, week_ago))
    recent = tmp_path / f"{PREFIX}recent.bin"
    recent.write_bytes(b"")
    PersistentSignatureHistory(tmp_path / "mine.bin", 32).close(forget=True)
    assert not stale.exists()
    assert recent.exists()
