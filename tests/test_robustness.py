"""What a user prints or a client sends never kills the kernel or leaves a request unanswered."""

from __future__ import annotations

import json
import time

import pytest

from .rawclient import replies_until, request, send_raw, signed_frames
from .utils import execute, iopub_until_idle, run_ok, stream_text

# Text that cannot be UTF-8: a byte decoded with surrogateescape (file names,
# sys.argv, os.environ, subprocess output decoded that way all carry them).
SURROGATE = "ok\udcff"
REPLACED = "ok\ufffd"


def assert_still_serving(km, kc) -> None:
    """The kernel answers on shell and control and runs code."""
    assert km.is_alive()
    outputs = run_ok(kc, "print('alive')")
    assert stream_text(outputs) == "alive\n"
    control_id = request(kc, "control", "kernel_info_request")
    assert replies_until(kc, "control", control_id)[-1]["content"]["status"] == "ok"


# -- output that cannot be UTF-8 ---------------------------------------------------------

OUTPUT_PATHS = {
    "print": (f"print({SURROGATE!r})", "stdout"),
    "stderr": (f"import sys; sys.stderr.write({SURROGATE!r})", "stderr"),
    "flush_each_write": (
        f"import sys\nfor _ in range(3): print({SURROGATE!r}, flush=True)",
        "stdout",
    ),
    "thread": (
        "import threading\n"
        f"t = threading.Thread(target=print, args=({SURROGATE!r},)); t.start(); t.join()",
        "stdout",
    ),
    # Bytes that are not UTF-8, written to the file descriptor itself.
    "fd": ("import os; os.write(1, b'ok\\xff'); os.write(2, b'ok\\xff')", "stdout"),
    "subprocess": ("import os; os.system(\"printf 'ok\\\\377'\")", "stdout"),
}


@pytest.mark.parametrize("path", OUTPUT_PATHS)
def test_stream_output_with_lone_surrogates(kernel, kc, path):
    km = kernel[0]
    code, stream = OUTPUT_PATHS[path]
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert REPLACED in stream_text(outputs, stream)
    assert_still_serving(km, kc)


def test_display_with_lone_surrogates(kernel, kc):
    km = kernel[0]
    code = (
        "from IPython.display import display\n"
        f"display({{'text/plain': {SURROGATE!r}, 'text/html': {SURROGATE!r}}}, raw=True,"
        f" metadata={{'note': {SURROGATE!r}}})"
    )
    outputs = run_ok(kc, code)
    [display] = [m for m in outputs if m["msg_type"] == "display_data"]
    assert display["content"]["data"] == {"text/plain": REPLACED, "text/html": REPLACED}
    assert display["content"]["metadata"] == {"note": REPLACED}
    assert_still_serving(km, kc)


def test_result_with_lone_surrogates(kernel, kc):
    km = kernel[0]
    code = f"class Odd:\n    def __repr__(self): return {SURROGATE!r}\nOdd()"
    outputs = run_ok(kc, code)
    [result] = [m for m in outputs if m["msg_type"] == "execute_result"]
    assert result["content"]["data"]["text/plain"] == REPLACED
    assert_still_serving(km, kc)


def test_error_with_lone_surrogates(kernel, kc):
    km = kernel[0]
    reply, outputs = execute(kc, f"raise ValueError({SURROGATE!r})")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["evalue"] == REPLACED
    [error] = [m for m in outputs if m["msg_type"] == "error"]
    assert error["content"]["evalue"] == REPLACED
    assert REPLACED in "".join(error["content"]["traceback"])
    assert_still_serving(km, kc)


def test_surrogates_then_fd_output_still_drained(kernel, kc):
    """The reported chain: after surrogate output, fd-level output still
    flows (the thread that drains fds 1 and 2 is alive)."""
    km = kernel[0]
    run_ok(kc, f"import threading; threading.Thread(target=print, args=({SURROGATE!r},)).start()")
    outputs = run_ok(kc, "import os; os.system('seq 100000')")
    assert stream_text(outputs).endswith("99999\n100000\n")
    assert_still_serving(km, kc)


# -- requests whose handler fails --------------------------------------------------------

FAILING_REQUESTS = [
    ("history_request", {"hist_access_type": "tail", "n": "ten"}, "TypeError"),
    ("history_request", {"hist_access_type": "tail", "n": 2**63}, "ValueError"),
    ("history_request", {"hist_access_type": "range", "session": 1.5}, "TypeError"),
    ("history_request", {"hist_access_type": "range", "start": -(2**70)}, "ValueError"),
    ("history_request", {"hist_access_type": "search", "n": [1]}, "TypeError"),
    ("complete_request", {"code": "pri", "cursor_pos": 99}, "ValueError"),
    ("complete_request", {"code": "pri", "cursor_pos": -1}, "ValueError"),
    ("complete_request", {"code": "pri", "cursor_pos": "end"}, "TypeError"),
    ("inspect_request", {"code": "print", "cursor_pos": 2**64}, "ValueError"),
    # IPython would take minutes on it, answering nothing else meanwhile.
    ("complete_request", {"code": "x" * 200_000}, "ValueError"),
]


@pytest.mark.parametrize(("msg_type", "content", "ename"), FAILING_REQUESTS)
def test_failing_request_gets_an_error_reply(kernel, kc, msg_type, content, ename):
    km = kernel[0]
    msg_id = request(kc, "shell", msg_type, content)
    [reply] = replies_until(kc, "shell", msg_id)
    assert reply["msg_type"] == msg_type.replace("_request", "_reply")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == ename
    assert reply["content"]["evalue"]
    assert isinstance(reply["content"]["traceback"], list)
    statuses = [
        m["content"]["execution_state"]
        for m in iopub_until_idle(kc, msg_id)
        if m["msg_type"] == "status" and m["parent_header"].get("msg_id") == msg_id
    ]
    assert statuses == ["busy", "idle"]
    assert_still_serving(km, kc)


def test_valid_history_and_completion_still_work(kc):
    run_ok(kc, "robust_name_1 = 1")
    msg_id = request(kc, "shell", "complete_request", {"code": "robust_na", "cursor_pos": 9})
    [reply] = replies_until(kc, "shell", msg_id)
    assert "robust_name_1" in reply["content"]["matches"]
    # A long line elsewhere in the cell does not stop completion on this one.
    code = "data = '" + "x" * 50_000 + "'\nrobust_na"
    msg_id = request(kc, "shell", "complete_request", {"code": code, "cursor_pos": len(code)})
    [reply] = replies_until(kc, "shell", msg_id)
    assert "robust_name_1" in reply["content"]["matches"]
    msg_id = request(kc, "shell", "history_request", {"hist_access_type": "tail", "n": 3})
    [reply] = replies_until(kc, "shell", msg_id)
    assert reply["content"]["status"] == "ok"
    assert any("robust_name_1" in entry[2] for entry in reply["content"]["history"])


# -- JSON that jupyter_client's decoder accepts ------------------------------------------


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_standard_json_numbers_are_accepted(kernel, kc, token):
    """jupyter_client reads NaN, Infinity and 1e400: so does the kernel."""
    header = kc.session.msg_header("execute_request")
    content = (
        '{"code": "x = 6 * 7", "silent": false, "store_history": false,'
        f' "user_expressions": {{}}, "allow_stdin": false, "extra": {token}}}'
    ).encode()
    send_raw(kc, "shell", signed_frames(kc, kc.session.pack(header), {}, {}, content))
    [reply] = replies_until(kc, "shell", header["msg_id"])
    assert reply["content"]["status"] == "ok"
    assert_still_serving(kernel[0], kc)


# -- a kernel thread that fails survives, or stops the kernel, saying why ------------------

# Faults are injected from a cell, into the running kernel's own objects.
FIND_KERNEL_PARTS = """
import gc, os, threading, time
from akernel.channels import IOPubPublisher, RequestDispatcher
publisher = next(o for o in gc.get_objects() if isinstance(o, IOPubPublisher))
control = next(
    o for o in gc.get_objects() if isinstance(o, RequestDispatcher) and o.name == "control"
)
"""


@pytest.fixture
def logged_kernel(backend, tmp_path):
    """A kernel of one's own whose log (stderr) goes to a file."""
    from .conftest import start_kernel, stop_kernel

    log = tmp_path / "kernel.log"
    with open(log, "w") as stderr:
        km, kc = start_kernel(backend, stderr=stderr)
    try:
        yield km, kc, log
    finally:
        stop_kernel(km, kc)


def wait_exit(km, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while km.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not km.is_alive()


def test_flusher_survives_an_error(logged_kernel):
    km, kc, log = logged_kernel
    run_ok(kc, FIND_KERNEL_PARTS)
    run_ok(
        kc,
        "fd_reader = publisher._readers\n"
        "stdout_fd = next(fd for fd, read in fd_reader.items() if read.__self__.fd == 1)\n"
        "drain = fd_reader[stdout_fd]\n"
        "calls = []\n"
        "def fails_once():\n"
        "    calls.append(1)\n"
        "    if len(calls) == 1:\n"
        "        raise RuntimeError('injected flusher fault')\n"
        "    drain()\n"
        "fd_reader[stdout_fd] = fails_once\n",
    )
    # Written by a thread after its cell ended: only the flusher drains it.
    kc.execute(
        "threading.Thread(target=lambda: (time.sleep(0.3), os.write(1, b'late\\n'))).start()"
    )
    seen = ""
    deadline = time.monotonic() + 20
    while "late" not in seen and time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=20)
        if msg["msg_type"] == "stream":
            seen += msg["content"]["text"]
    assert "late" in seen
    assert "injected flusher fault" in log.read_text()
    assert_still_serving(km, kc)


def test_flusher_that_cannot_go_on_stops_the_kernel(logged_kernel):
    km, kc, log = logged_kernel
    run_ok(kc, FIND_KERNEL_PARTS)
    kc.execute(
        "def always_fails():\n"
        "    raise RuntimeError('injected lasting fault')\n"
        "for fd in publisher._readers:\n"
        "    publisher._readers[fd] = always_fails\n"
        "os.write(1, b'never drained\\n')\n"
        "time.sleep(30)\n"
    )
    assert wait_exit(km), "the kernel went on without its IOPub flusher"
    text = log.read_text()
    assert "injected lasting fault" in text
    assert "IOPub flusher cannot go on: stopping the kernel" in text


# SIGINT lands in IPython's run_code after AkernelShell.run_code looked for an
# interrupt kept while the cell was prepared, before the code starts: the window
# the flusher's stop above can hit under load (its interrupt comes while the
# cell goes from ``os.write`` to ``time.sleep``). A profile function puts the
# signal right there.
SIGNAL_BEFORE_CODE_STARTS = """
import signal, sys, time
from IPython.core.interactiveshell import InteractiveShell
def signal_in_run_code(frame, event, arg):
    if event == "call" and frame.f_code is InteractiveShell.run_code.__code__:
        sys.setprofile(None)
        signal.raise_signal(signal.SIGINT)
sys.setprofile(signal_in_run_code)
time.sleep(8)
"""


def test_interrupt_between_the_last_look_and_the_code_start_is_not_lost(kernel, kc):
    reply, _ = execute(kc, SIGNAL_BEFORE_CODE_STARTS, timeout=30)
    content = reply["content"]
    assert content["status"] == "error", "the interrupt was lost: the sleep ran to its end"
    assert content["ename"] == "KeyboardInterrupt", content
    # The cell was stopped before its first line: no line to show.
    assert "line 0" not in "".join(content["traceback"]), content["traceback"]
    # Nothing of the interrupt is left behind: no profile function, no interrupt
    # kept for the next cell.
    reply, outputs = execute(kc, "import sys; print(sys.getprofile())")
    assert reply["content"]["status"] == "ok", reply["content"]
    assert stream_text(outputs) == "None\n"


def test_control_loop_failure_stops_the_kernel(logged_kernel):
    km, kc, log = logged_kernel
    run_ok(kc, FIND_KERNEL_PARTS)
    run_ok(
        kc,
        "def broken_end(msg):\n"
        "    raise RuntimeError('injected control fault')\n"
        "control._end = broken_end\n",
    )
    request(kc, "control", "kernel_info_request")
    assert wait_exit(km), "the kernel went on without its control channel"
    text = log.read_text()
    assert "injected control fault" in text
    assert "the control channel failed: stopping the kernel" in text


def test_code_with_lone_surrogates_is_refused(kernel, kc):
    """Only a broken client sends such code: it gets an error reply, nothing runs
    or is stored, and history keeps saving."""
    km = kernel[0]
    header = kc.session.msg_header("execute_request")
    msg_id = header["msg_id"]
    # JSON's \\udcff escape: the only way a lone surrogate survives the wire.
    content = json.dumps({"code": "x_surrogate = 'ok\udcff'", "silent": False}).encode()
    assert b"\\udcff" in content
    send_raw(kc, "shell", signed_frames(kc, kc.session.pack(header), {}, {}, content))
    [reply] = replies_until(kc, "shell", msg_id)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "ValueError"
    assert "lone surrogate" in reply["content"]["evalue"]
    assert user_value_or_none(kc, "x_surrogate") is None
    run_ok(kc, "history_marker_after_surrogate = 1")
    msg_id = request(kc, "shell", "history_request", {"hist_access_type": "tail", "n": 5})
    [reply] = replies_until(kc, "shell", msg_id)
    assert reply["content"]["status"] == "ok"
    assert any("history_marker_after_surrogate" in e[2] for e in reply["content"]["history"])
    assert_still_serving(km, kc)


def user_value_or_none(kc, name: str) -> str | None:
    reply, _ = execute(kc, "", silent=True, user_expressions={"v": name})
    result = reply["content"]["user_expressions"]["v"]
    return result["data"]["text/plain"] if result["status"] == "ok" else None
