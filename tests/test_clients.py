"""Two clients on one kernel: IOPub is broadcast, replies and input requests are not."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator

import pytest
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import KernelManager

from .utils import TIMEOUT, collect_iopub, get_reply, stream_text


def subscribed(client: BlockingKernelClient) -> None:
    """Wait until ``client`` receives IOPub: it sees the idle of its own kernel_info."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        msg_id = client.kernel_info()
        get_reply(client, msg_id)
        try:
            collect_iopub(client, msg_id, timeout=1)
            return
        except queue.Empty:
            # Sent before the subscription took hold: ask again.
            assert time.monotonic() < deadline, "IOPub never delivered to the client"


def next_shell(client: BlockingKernelClient) -> dict:
    return client.get_shell_msg(timeout=TIMEOUT)


@pytest.fixture
def clients(
    kernel: tuple[KernelManager, BlockingKernelClient], kc: BlockingKernelClient
) -> Iterator[tuple[BlockingKernelClient, BlockingKernelClient]]:
    """Client A (the module's) and a client B made from A's connection info."""
    b = BlockingKernelClient()
    b.load_connection_info(kc.get_connection_info())
    b.start_channels()
    try:
        assert b.session.session != kc.session.session
        subscribed(b)
        subscribed(kc)
        yield kc, b
    finally:
        b.stop_channels()


def iopub_signature(messages: list[dict]) -> list[tuple]:
    """What identifies each IOPub message: id, type, parent and content."""
    return [
        (m["header"]["msg_id"], m["msg_type"], m["parent_header"]["msg_id"], m["content"])
        for m in messages
    ]


def test_both_clients_see_all_iopub(clients) -> None:
    """Every IOPub message of A's execute reaches B too: same ids, same outputs."""
    a, b = clients
    code = (
        "import sys\n"
        "print('to stdout')\n"
        "print('to stderr', file=sys.stderr)\n"
        "from IPython.display import display, HTML\n"
        "display(HTML('<b>shown</b>'))\n"
        "6 * 7"
    )
    msg_id = a.execute(code)
    reply = get_reply(a, msg_id)
    assert reply["content"]["status"] == "ok"
    seen_by_a = collect_iopub(a, msg_id)
    seen_by_b = collect_iopub(b, msg_id)
    types = [m["msg_type"] for m in seen_by_a]
    assert types[0] == "status" and types[-1] == "status"
    for expected in ("execute_input", "stream", "display_data", "execute_result"):
        assert expected in types
    assert stream_text(seen_by_a) == "to stdout\n"
    assert stream_text(seen_by_a, "stderr") == "to stderr\n"
    assert iopub_signature(seen_by_b) == iopub_signature(seen_by_a)


def test_a_sees_what_b_runs(clients) -> None:
    """Broadcast works both ways, and the execution count is shared."""
    a, b = clients
    first = a.execute("'from a'")
    first_count = get_reply(a, first)["content"]["execution_count"]
    second = b.execute("print('from b')")
    reply = get_reply(b, second)
    assert reply["content"]["status"] == "ok"
    assert reply["content"]["execution_count"] == first_count + 1
    seen_by_b = collect_iopub(b, second)
    seen_by_a = collect_iopub(a, second)
    assert stream_text(seen_by_a) == "from b\n"
    assert iopub_signature(seen_by_a) == iopub_signature(seen_by_b)
    inputs = [m for m in seen_by_a if m["msg_type"] == "execute_input"]
    assert [m["content"]["execution_count"] for m in inputs] == [first_count + 1]


def test_replies_go_only_to_their_sender(clients) -> None:
    """Requests from both clients, interleaved: each client gets exactly its own replies.

    Every shell message a client receives is checked in order, so a reply
    delivered to the wrong client would show up before the expected one.
    """
    a, b = clients
    sent_by_a, sent_by_b = [], []
    for i in range(5):
        sent_by_a.append(("execute_reply", a.execute(f"import time\ntime.sleep(0.05)\n{i}")))
        sent_by_b.append(("kernel_info_reply", b.kernel_info()))
        sent_by_b.append(("complete_reply", b.complete("impo", 4)))
    # One more request each, answered after all of the above.
    sent_by_a.append(("kernel_info_reply", a.kernel_info()))
    sent_by_b.append(("execute_reply", b.execute("'last'")))
    for client, sent in ((a, sent_by_a), (b, sent_by_b)):
        received = [next_shell(client) for _ in sent]
        assert [(m["msg_type"], m["parent_header"]["msg_id"]) for m in received] == sent
        for m in received:
            assert m["content"]["status"] == "ok", m["content"]
        assert not client.shell_channel.msg_ready()


def test_control_replies_go_only_to_their_sender(clients) -> None:
    """Control replies are routed per client as well."""
    a, b = clients
    sent = []
    for client in (a, b, a, b):
        msg = client.session.msg("kernel_info_request", {})
        client.control_channel.send(msg)
        sent.append((client, msg["header"]["msg_id"]))
    for client in (a, b):
        mine = [msg_id for owner, msg_id in sent if owner is client]
        received = [client.get_control_msg(timeout=TIMEOUT) for _ in mine]
        assert [m["parent_header"]["msg_id"] for m in received] == mine
        assert [m["msg_type"] for m in received] == ["kernel_info_reply"] * len(mine)


def test_input_request_goes_to_the_executing_client(clients) -> None:
    """B runs input(): B's stdin gets the request, A's stdin gets nothing.

    Then A runs input(): the first thing on A's stdin is A's own request, so
    nothing of B's was ever queued there.
    """
    a, b = clients
    msg_id = b.execute("answer_b = input('B asks: ')\nprint('B got', answer_b)", allow_stdin=True)
    request = b.get_stdin_msg(timeout=TIMEOUT)
    assert request["msg_type"] == "input_request"
    assert request["parent_header"]["msg_id"] == msg_id
    assert request["content"]["prompt"] == "B asks: "
    assert not a.stdin_channel.msg_ready()
    b.input("from B")
    assert get_reply(b, msg_id)["content"]["status"] == "ok"
    assert stream_text(collect_iopub(b, msg_id)) == "B got from B\n"
    # A saw B's output on IOPub, but no input request.
    assert stream_text(collect_iopub(a, msg_id)) == "B got from B\n"

    msg_id = a.execute("answer_a = input('A asks: ')\nprint('A got', answer_a)", allow_stdin=True)
    request = a.get_stdin_msg(timeout=TIMEOUT)
    assert request["parent_header"]["msg_id"] == msg_id
    assert request["content"]["prompt"] == "A asks: "
    a.input("from A")
    assert get_reply(a, msg_id)["content"]["status"] == "ok"
    assert stream_text(collect_iopub(a, msg_id)) == "A got from A\n"
    collect_iopub(b, msg_id)
    assert not b.stdin_channel.msg_ready()


def test_allow_stdin_is_per_request(clients) -> None:
    """A runs input() with allow_stdin false: an error for A, no request for anyone,
    even though B (which allows stdin) is connected; then B's input() still works."""
    a, b = clients
    msg_id = a.execute("input('nobody answers: ')", allow_stdin=False)
    reply = get_reply(a, msg_id)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "StdinNotImplementedError"
    collect_iopub(a, msg_id)
    collect_iopub(b, msg_id)

    msg_id = b.execute("value_b = input('B again: ')\nvalue_b", allow_stdin=True)
    request = b.get_stdin_msg(timeout=TIMEOUT)
    # The first request B sees is this one: none was made for A's cell.
    assert request["parent_header"]["msg_id"] == msg_id
    b.input("ok")
    assert get_reply(b, msg_id)["content"]["status"] == "ok"
    results = [m for m in collect_iopub(b, msg_id) if m["msg_type"] == "execute_result"]
    assert [m["content"]["data"]["text/plain"] for m in results] == ["'ok'"]
    assert not a.stdin_channel.msg_ready()
    assert not b.shell_channel.msg_ready()
    assert not a.shell_channel.msg_ready()
