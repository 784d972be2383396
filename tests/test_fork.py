"""Forked children (``os.fork``, ``multiprocessing`` with fork): their output
reaches the cell that forked them, and they never touch the kernel's sockets
or threads (no hang, however many forks)."""

from __future__ import annotations

import pytest

from .utils import collect_iopub, execute, get_reply, iopub_until_idle, run_ok, stream_text

# Runs in the kernel: wait for a child with a deadline instead of forever, so
# that a hung child fails the cell instead of hanging the test.
WAIT_CHILD = """
import os, time
def wait_child(pid, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.001)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise TimeoutError(f"child {pid} hung")
"""


@pytest.fixture
def kc(kc):
    run_ok(kc, WAIT_CHILD)
    return kc


def test_os_fork_output_reaches_the_cell(kc) -> None:
    code = """
import sys
pid = os.fork()
if pid == 0:
    print("child stdout", os.getpid())
    print("child stderr", file=sys.stderr)
    os._exit(0)
print("parent waits")
assert wait_child(pid) == 0
"""
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert "child stdout" in stream_text(outputs, "stdout")
    assert "parent waits" in stream_text(outputs, "stdout")
    assert stream_text(outputs, "stderr") == "child stderr\n"


def test_child_output_comes_before_what_the_parent_shows_after_waiting(kc) -> None:
    """The child printed, the parent waited for it, then showed a result: the
    child's line arrives first (it used to race the result, now and then)."""
    code = """
pid = os.fork()
if pid == 0:
    print("from the child")
    os._exit(0)
assert wait_child(pid) == 0
'shown after'
"""
    for _ in range(20):
        reply, outputs = execute(kc, code)
        assert reply["content"]["status"] == "ok", reply["content"]
        kinds = [m["msg_type"] for m in outputs if m["msg_type"] in ("stream", "execute_result")]
        assert kinds == ["stream", "execute_result"], kinds


def test_publish_sends_waiting_child_output_first() -> None:
    """In-process, with no flusher thread to read the pipe: a message published
    after a forked child wrote goes out after the child's output, not before."""
    import zmq

    from akernel.channels.iopub import IOPubPublisher
    from akernel.wire import Session

    context = zmq.Context()
    xpub = context.socket(zmq.XPUB)
    xpub.bind("inproc://iopub-order")
    sub = context.socket(zmq.SUB)
    sub.connect("inproc://iopub-order")
    sub.subscribe(b"")
    assert xpub.poll(5_000), "the subscription never arrived"
    xpub.recv()
    session = Session(b"key")
    publisher = IOPubPublisher(xpub, session)
    try:
        publisher._before_fork()  # what os.fork() runs in the kernel: a child may write now
        publisher.children.write("stdout", "from the child\n", "")
        publisher.publish("execute_result", {"data": {"text/plain": "1"}, "metadata": {}})
        received = []
        while sub.poll(1_000):
            received.append(session.deserialize(sub.recv_multipart()[1:]).msg_type)
        assert received == ["stream", "execute_result"]
    finally:
        publisher.children.close()
        sub.close(linger=0)
        xpub.close(linger=0)
        context.term()


def test_multiprocessing_print(kc) -> None:
    """ipykernel's test_subprocess_print."""
    code = """
import multiprocessing as mp
ctx = mp.get_context("fork")
def f(x):
    print(f"hello {x}")
procs = [ctx.Process(target=f, args=(i,)) for i in range(4)]
for p in procs:
    p.start()
for p in procs:
    p.join(30)
    assert p.exitcode == 0, p.exitcode
print("joined")
"""
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    lines = stream_text(outputs).splitlines()
    assert sorted(lines) == sorted([f"hello {i}" for i in range(4)] + ["joined"])
    assert lines[-1] == "joined"


def test_multiprocessing_error(kc) -> None:
    """ipykernel's test_subprocess_error: the child's traceback is shown."""
    code = """
def fail():
    raise ValueError("child failed")
p = ctx.Process(target=fail)
p.start()
p.join(30)
print("exit code", p.exitcode)
"""
    run_ok(kc, "import multiprocessing as mp\nctx = mp.get_context('fork')")
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert "exit code 1" in stream_text(outputs)
    stderr = stream_text(outputs, "stderr")
    assert "Traceback" in stderr and "ValueError: child failed" in stderr


def test_200_forks_while_a_thread_prints(kc) -> None:
    """A thread prints (and so holds the kernel's output locks) while the
    cell forks 200 children that print: none may hang, none is lost."""
    code = """
import threading
stop = threading.Event()
def chatter():
    while not stop.is_set():
        print("thread", end="")
thread = threading.Thread(target=chatter)
thread.start()
try:
    for i in range(200):
        pid = os.fork()
        if pid == 0:
            print(f"fork {i}")
            os._exit(0)
        assert wait_child(pid) == 0
finally:
    stop.set()
    thread.join()
print()
print("forks done")
"""
    reply, outputs = execute(kc, code, timeout=120)
    assert reply["content"]["status"] == "ok", reply["content"]
    text = stream_text(outputs).replace("thread", "")
    assert sorted(line for line in text.split("\n") if line.startswith("fork ")) == sorted(
        f"fork {i}" for i in range(200)
    )
    assert "forks done" in text


def test_200_multiprocessing_runs(kc) -> None:
    code = """
import multiprocessing as mp
ctx = mp.get_context("fork")
def work(i):
    print(f"run {i}")
for i in range(200):
    p = ctx.Process(target=work, args=(i,))
    p.start()
    p.join(30)
    assert p.exitcode == 0, (i, p.exitcode)
"""
    reply, outputs = execute(kc, code, timeout=120)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert stream_text(outputs).splitlines() == [f"run {i}" for i in range(200)]


def test_pool_results_and_output(kc) -> None:
    code = """
import multiprocessing as mp
def square(x):
    print("square", x)
    return x * x
with mp.get_context("fork").Pool(2) as pool:
    print(pool.map(square, range(5)))
"""
    reply, outputs = execute(kc, code, timeout=60)
    assert reply["content"]["status"] == "ok", reply["content"]
    lines = stream_text(outputs).splitlines()
    assert "[0, 1, 4, 9, 16]" in lines
    assert sorted(line for line in lines if line.startswith("square")) == [
        f"square {i}" for i in range(5)
    ]


def test_sigterm_reaching_a_child_before_its_fork_callbacks_ends_it(kc) -> None:
    """``Pool.terminate`` sends SIGTERM to workers that may not have run an
    instruction yet (a loaded machine): one that came before the kernel's
    at-fork callbacks gave the child its own SIGTERM handler back was
    swallowed, and the pool waited forever for that worker. A callback run
    first in the child sends it right there."""
    code = """
import signal
from akernel.channels import forked
def sigterm_as_forked():
    os.kill(os.getpid(), signal.SIGTERM)
forked._in_child.insert(0, sigterm_as_forked)
try:
    pid = os.fork()
    if pid == 0:
        time.sleep(1)
        os._exit(0)
finally:
    forked._in_child.remove(sigterm_as_forked)
print(wait_child(pid))
"""
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert stream_text(outputs) == "-15\n", "the child outlived its SIGTERM"


def test_late_child_output_goes_to_the_forking_cell(kc) -> None:
    """A child still printing after its cell ended: its output keeps its
    parent, not the cell running at the time."""
    forking = kc.execute(
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    time.sleep(0.5)\n"
        "    print('late child', flush=True)\n"
        "    os._exit(0)\n"
    )
    get_reply(kc, forking)
    collect_iopub(kc, forking)
    later = kc.execute("assert wait_child(pid) == 0\ntime.sleep(0.2)")
    assert get_reply(kc, later)["content"]["status"] == "ok"
    seen = iopub_until_idle(kc, later)
    late = [m for m in seen if m["msg_type"] == "stream" and "late child" in m["content"]["text"]]
    assert [m["parent_header"]["msg_id"] for m in late] == [forking], seen


def test_child_cannot_display_or_ask_for_input(kc) -> None:
    code = """
from IPython.display import display
pid = os.fork()
if pid == 0:
    try:
        display("shown in child")
        try:
            input("child asks")
        except Exception as e:
            print("input:", type(e).__name__)
    finally:
        os._exit(0)
assert wait_child(pid) == 0
"""
    reply, outputs = execute(kc, code, allow_stdin=True)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert "display_data" not in [m["msg_type"] for m in outputs]
    assert "not shown" in stream_text(outputs, "stderr")
    assert "input: StdinNotImplementedError" in stream_text(outputs)
