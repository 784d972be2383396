"""A client that stops reading IOPub holds nobody up: the others get everything, at once."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator

import psutil
import pytest
import zmq
from jupyter_client.blocking import BlockingKernelClient

from .conftest import start_kernel, stop_kernel
from .rawclient import replies_until, request
from .utils import execute, iopub_until_idle, is_idle_of

# Enough 4 KB messages to fill a stalled client's queue in the kernel (1,000
# messages) and the socket buffers between the two, several times over.
DISPLAYS = 6_000


@pytest.fixture
def stalled(kernel, kc) -> Iterator[zmq.Socket]:
    """An IOPub subscriber that takes its welcome, then stops reading."""
    km = kernel[0]
    socket = km.connect_iopub()
    socket.rcvhwm = 1
    try:
        # Its subscription is in place once the kernel has welcomed it.
        assert socket.poll(10_000), "no iopub_welcome for the new subscriber"
        socket.recv_multipart()
        yield socket
    finally:
        socket.close(linger=0)


def drain(socket: zmq.Socket, quiet: float = 1.0) -> list[dict]:
    """Read until nothing arrives for ``quiet`` seconds; the messages' JSON parts."""
    from jupyter_client.session import Session

    session = Session()  # parsing only: the kernel's key is not needed for content
    received = []
    while socket.poll(int(quiet * 1000)):
        frames = socket.recv_multipart()
        index = frames.index(b"<IDS|MSG>")
        header, _, _, content = (session.unpack(f) for f in frames[index + 2 : index + 6])
        received.append({"msg_type": header["msg_type"], "content": content})
    return received


def display_code(count: int) -> str:
    return (
        "from IPython.display import display\n"
        f"for i in range({count}):\n"
        "    display({'text/plain': f'{i:06d}' + 'x' * 4000}, raw=True)\n"
    )


def test_stalled_subscriber_holds_nobody_up(kernel, kc, stalled):
    km = kernel[0]
    msg_id = kc.execute(display_code(DISPLAYS))
    outputs = iopub_until_idle(kc, msg_id, timeout=60)
    numbers = [
        int(m["content"]["data"]["text/plain"][:6])
        for m in outputs
        if m["msg_type"] == "display_data" and m["parent_header"].get("msg_id") == msg_id
    ]
    # The healthy client got every message, in order.
    assert numbers == list(range(DISPLAYS))
    reply = replies_until(kc, "shell", msg_id)[-1]
    assert reply["content"]["status"] == "ok"

    # The stalled client is still not reading: control and shell answer.
    control_id = request(kc, "control", "kernel_info_request")
    assert replies_until(kc, "control", control_id, timeout=10)[-1]["content"]["status"] == "ok"
    for _ in range(50):
        reply, _ = execute(kc, "pass", timeout=10)
        assert reply["content"]["status"] == "ok"
    assert km.is_alive()

    # It reads again: it got what its queue held and lost the rest...
    shown = [m for m in drain(stalled) if m["msg_type"] == "display_data"]
    assert 0 < len(shown) < DISPLAYS
    # ... and from now on gets everything again.
    reply, _ = execute(kc, "print('after')")
    assert any(
        m["msg_type"] == "stream" and m["content"]["text"] == "after\n" for m in drain(stalled)
    )


def kernel_with_stall_timeout(backend: str, seconds: float) -> Iterator[tuple]:
    """A kernel (and its client) with ``Kernel.iopub_stall_timeout`` set, stopped after."""
    km, kc = start_kernel(backend, extra_arguments=[f"--Kernel.iopub_stall_timeout={seconds}"])
    try:
        yield km, kc
    finally:
        stop_kernel(km, kc)


@pytest.fixture
def lenient_kernel(backend):
    """A kernel that waits a minute for a client that stopped reading: on a loaded
    machine the test's slow reader may not be scheduled for the default 2 s."""
    yield from kernel_with_stall_timeout(backend, 60)


def test_slow_reader_loses_nothing(lenient_kernel):
    """A client that reads, however slowly, is waited for: back-pressure, not loss."""
    km, kc = lenient_kernel
    slow = km.connect_iopub()
    try:
        assert slow.poll(10_000)
        slow.recv_multipart()
        msg_id = kc.execute(display_code(3_000))
        received = 0
        healthy_done = False
        deadline = time.monotonic() + 90
        while (received < 3_000 or not healthy_done) and time.monotonic() < deadline:
            # The test's own client keeps reading too.
            while kc.iopub_channel.msg_ready():
                healthy_done |= is_idle_of(kc.get_iopub_msg(), msg_id)
            # About 1,000 messages a second: slower than the cell publishes.
            if slow.poll(10):
                frames = slow.recv_multipart()
                received += b'"display_data"' in frames[frames.index(b"<IDS|MSG>") + 2]
                time.sleep(0.001)
        assert received == 3_000
        assert healthy_done
        assert replies_until(kc, "shell", msg_id)[-1]["content"]["status"] == "ok"
    finally:
        slow.close(linger=0)


def test_stalled_subscriber_memory_is_bounded(kernel, kc, stalled):
    """A cell prints 300 MB while one client is stalled: the kernel keeps at
    most its queue for it (about 1,000 messages of at most 64 KiB)."""
    km = kernel[0]
    process = psutil.Process(km.provisioner.pid)
    before = process.memory_info().rss
    code = "chunk = 'y' * (1 << 20)\nfor _ in range(300):\n    print(chunk)\n"
    msg_id = kc.execute(code)
    total = 0
    for m in iopub_until_idle(kc, msg_id, timeout=120):
        if m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == msg_id:
            total += len(m["content"]["text"])
    assert total == 300 * ((1 << 20) + 1)
    assert replies_until(kc, "shell", msg_id)[-1]["content"]["status"] == "ok"
    grown = process.memory_info().rss - before
    assert grown < 150 * (1 << 20), f"kernel grew by {grown / (1 << 20):.0f} MB"


@pytest.fixture
def patient_kernel(backend):
    """A kernel that waits 40 s for a client that stopped reading before it
    leaves it behind: long enough to see who else waits meanwhile, even when
    the test's own client, on a loaded machine, takes many seconds to read its
    backlog before it can notice the wait. (The test does not wait the 40 s
    out: leaving a client behind is test_stalled_subscriber_holds_nobody_up's.)"""
    yield from kernel_with_stall_timeout(backend, 40)


def read_both_until_idle(
    kc: BlockingKernelClient, other: zmq.Socket, msg_id: str, timeout: float
) -> list[dict]:
    """Read IOPub on ``kc`` and on ``other`` (whose messages are dropped) as fast as
    they come, up to the idle of ``msg_id``; return what ``kc`` received."""
    received: list[dict] = []
    deadline = time.monotonic() + timeout
    while not (received and is_idle_of(received[-1], msg_id)):
        assert time.monotonic() < deadline, f"{msg_id} not idle in {timeout} s"
        while other.poll(0):
            other.recv_multipart()
        try:
            received.append(kc.get_iopub_msg(timeout=0.01))
        except queue.Empty:
            continue
    return received


def test_control_answers_while_iopub_waits(patient_kernel):
    km, kc = patient_kernel
    stalled = km.connect_iopub()
    try:
        assert stalled.poll(10_000)
        stalled.recv_multipart()
        msg_id = kc.execute(display_code(DISPLAYS))
        # The cell publishes as fast as it can: a second without a message
        # means it is waiting for the stalled client.
        waiting = 0
        while True:
            try:
                msg = kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                break
            waiting += msg["msg_type"] == "display_data"
        assert 0 < waiting < DISPLAYS
        # Control answers now, not when the 40 s are over.
        control_id = request(kc, "control", "kernel_info_request")
        assert replies_until(kc, "control", control_id, timeout=10)[-1]["content"]["status"] == "ok"
        # Then the stalled client reads again, so the kernel need not wait the 40 s
        # out, and the cell completes, everything in order.
        outputs = read_both_until_idle(kc, stalled, msg_id, timeout=90)
        shown = waiting + sum(
            m["msg_type"] == "display_data" and m["parent_header"].get("msg_id") == msg_id
            for m in outputs
        )
        assert shown == DISPLAYS
        # The control request's statuses came too, once IOPub could take them.
        assert {
            m["content"]["execution_state"]
            for m in outputs
            if m["msg_type"] == "status" and m["parent_header"].get("msg_id") == control_id
        } == {"busy", "idle"}
    finally:
        stalled.close(linger=0)
