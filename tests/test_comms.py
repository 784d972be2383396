"""Comms through the ``comm`` package, both directions, on both backends."""

from __future__ import annotations

import uuid
from typing import Any

from jupyter_client.blocking import BlockingKernelClient

from .utils import (
    TIMEOUT,
    collect_iopub,
    execute,
    get_reply,
    iopub_until_idle,
    msg_types,
    stream_text,
    user_value,
)


def new_target() -> str:
    return f"target_{uuid.uuid4().hex[:8]}"


def run(kc: BlockingKernelClient, code: str) -> list[dict]:
    """Execute ``code`` successfully; return its IOPub messages."""
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    return outputs


def send_comm(kc: BlockingKernelClient, msg_type: str, content: dict[str, Any]) -> list[dict]:
    """Send a comm message on shell; return the IOPub messages it caused (through idle)."""
    msg = kc.session.msg(msg_type, content)
    kc.shell_channel.send(msg)
    msg_id = msg["header"]["msg_id"]
    received = iopub_until_idle(kc, msg_id)
    # Everything a comm message causes is attributed to it.
    assert {m["parent_header"].get("msg_id") for m in received} == {msg_id}
    assert received[0]["content"].get("execution_state") == "busy"
    return received


def comm_info(kc: BlockingKernelClient, target_name: str | None = None) -> dict[str, Any]:
    msg_id = kc.comm_info(target_name)
    reply = get_reply(kc, msg_id)
    assert reply["content"]["status"] == "ok"
    collect_iopub(kc, msg_id)
    return reply["content"]["comms"]


def only(outputs: list[dict], msg_type: str) -> dict:
    found = [m for m in outputs if m["msg_type"] == msg_type]
    assert len(found) == 1, msg_types(outputs)
    return found[0]


def open_kernel_comm(kc: BlockingKernelClient, target: str, var: str) -> str:
    """Open a comm from the kernel into variable ``var``; return its comm_id."""
    outputs = run(
        kc,
        f"import comm\n"
        f"{var} = comm.create_comm(target_name={target!r}, data={{'a': 1}})\n"
        f"{var}_received = []\n"
        f"{var}.on_msg(lambda msg: {var}_received.append(msg['content']['data']))",
    )
    opened = only(outputs, "comm_open")["content"]
    assert opened["target_name"] == target
    return opened["comm_id"]


# -- kernel-opened comms ------------------------------------------------------------


def test_create_comm_publishes_comm_open(kc: BlockingKernelClient) -> None:
    target = new_target()
    reply, outputs = execute(
        kc,
        f"import comm\nopened = comm.create_comm(target_name={target!r}, data={{'a': 1}})",
    )
    assert reply["content"]["status"] == "ok"
    msg = only(outputs, "comm_open")
    content = msg["content"]
    assert content["target_name"] == target
    assert content["data"] == {"a": 1}
    assert isinstance(content["comm_id"], str) and content["comm_id"]
    assert msg["parent_header"]["msg_id"] == reply["parent_header"]["msg_id"]
    assert user_value(kc, "opened.comm_id") == repr(content["comm_id"])


def test_comm_info_lists_kernel_comm(kc: BlockingKernelClient) -> None:
    target = new_target()
    comm_id = open_kernel_comm(kc, target, "listed")
    assert comm_info(kc)[comm_id] == {"target_name": target}
    assert comm_info(kc, target) == {comm_id: {"target_name": target}}


def test_client_comm_msg_reaches_on_msg(kc: BlockingKernelClient) -> None:
    comm_id = open_kernel_comm(kc, new_target(), "receiver")
    send_comm(kc, "comm_msg", {"comm_id": comm_id, "data": {"n": 1}})
    send_comm(kc, "comm_msg", {"comm_id": comm_id, "data": {"n": 2, "s": "two"}})
    assert user_value(kc, "receiver_received") == "[{'n': 1}, {'n': 2, 's': 'two'}]"


def test_on_msg_output_has_comm_msg_as_parent(kc: BlockingKernelClient) -> None:
    comm_id = open_kernel_comm(kc, new_target(), "printer")
    run(kc, "printer.on_msg(lambda msg: print('handled', msg['content']['data']['x']))")
    received = send_comm(kc, "comm_msg", {"comm_id": comm_id, "data": {"x": 7}})
    assert stream_text(received) == "handled 7\n"


def test_kernel_comm_send_reaches_client(kc: BlockingKernelClient) -> None:
    comm_id = open_kernel_comm(kc, new_target(), "sender")
    outputs = run(kc, "sender.send({'hello': 'client'})")
    msg = only(outputs, "comm_msg")["content"]
    assert msg["comm_id"] == comm_id
    assert msg["data"] == {"hello": "client"}


def test_kernel_comm_send_with_buffers(kc: BlockingKernelClient) -> None:
    comm_id = open_kernel_comm(kc, new_target(), "binary")
    outputs = run(kc, "binary.send({'kind': 'bytes'}, buffers=[b'\\x00\\x01\\x02'])")
    msg = only(outputs, "comm_msg")
    assert msg["content"] == {"comm_id": comm_id, "data": {"kind": "bytes"}}
    assert [bytes(b) for b in msg["buffers"]] == [b"\x00\x01\x02"]


def test_kernel_closes_comm(kc: BlockingKernelClient) -> None:
    target = new_target()
    comm_id = open_kernel_comm(kc, target, "closing")
    outputs = run(kc, "closing.close({'bye': True})")
    msg = only(outputs, "comm_close")["content"]
    assert msg["comm_id"] == comm_id
    assert msg["data"] == {"bye": True}
    assert comm_id not in comm_info(kc)
    assert comm_info(kc, target) == {}


def test_client_closes_kernel_comm(kc: BlockingKernelClient) -> None:
    target = new_target()
    comm_id = open_kernel_comm(kc, target, "closed_by_client")
    run(
        kc,
        "closed_by_client_close = []\n"
        "closed_by_client.on_close(lambda msg: "
        "closed_by_client_close.append(msg['content']['data']))",
    )
    received = send_comm(kc, "comm_close", {"comm_id": comm_id, "data": {"why": "done"}})
    # Closing from the client is not echoed back.
    assert "comm_close" not in msg_types(received)
    assert user_value(kc, "closed_by_client_close") == "[{'why': 'done'}]"
    assert comm_info(kc, target) == {}
    # Messages to a closed comm are dropped without breaking anything.
    received = send_comm(kc, "comm_msg", {"comm_id": comm_id, "data": {"late": True}})
    assert "error" not in msg_types(received)
    assert user_value(kc, "closed_by_client_received") == "[]"


# -- client-opened comms ------------------------------------------------------------


def register_recording_target(kc: BlockingKernelClient, target: str) -> None:
    """Register ``target`` in the kernel; opened comms and their messages are recorded."""
    run(
        kc,
        "import comm\n"
        "opened_by_client = {}\n"
        "def on_open(c, msg):\n"
        "    record = {'open': msg['content']['data'], 'msgs': [], 'closed': None}\n"
        "    opened_by_client[c.comm_id] = record\n"
        "    c.on_msg(lambda m: record['msgs'].append(m['content']['data']))\n"
        "    def on_close(m):\n"
        "        record['closed'] = m['content']['data']\n"
        "    c.on_close(on_close)\n"
        "    c.send({'ack': msg['content']['data']})\n"
        f"comm.get_comm_manager().register_target({target!r}, on_open)",
    )


def test_client_opens_comm_to_registered_target(kc: BlockingKernelClient) -> None:
    target = new_target()
    register_recording_target(kc, target)
    comm_id = uuid.uuid4().hex
    received = send_comm(
        kc, "comm_open", {"comm_id": comm_id, "target_name": target, "data": {"hi": 1}}
    )
    # The handler ran while the comm_open was handled: its reply has that parent.
    ack = only(received, "comm_msg")["content"]
    assert ack == {"comm_id": comm_id, "data": {"ack": {"hi": 1}}}
    assert user_value(kc, f"opened_by_client[{comm_id!r}]['open']") == "{'hi': 1}"
    assert comm_info(kc, target) == {comm_id: {"target_name": target}}

    send_comm(kc, "comm_msg", {"comm_id": comm_id, "data": {"n": 1}})
    assert user_value(kc, f"opened_by_client[{comm_id!r}]['msgs']") == "[{'n': 1}]"

    received = send_comm(kc, "comm_close", {"comm_id": comm_id, "data": {"end": 1}})
    assert "comm_close" not in msg_types(received)
    assert user_value(kc, f"opened_by_client[{comm_id!r}]['closed']") == "{'end': 1}"
    assert comm_info(kc, target) == {}


def test_kernel_closes_client_opened_comm(kc: BlockingKernelClient) -> None:
    target = new_target()
    register_recording_target(kc, target)
    comm_id = uuid.uuid4().hex
    send_comm(kc, "comm_open", {"comm_id": comm_id, "target_name": target, "data": {}})
    outputs = run(kc, f"comm.get_comm_manager().get_comm({comm_id!r}).close()")
    assert only(outputs, "comm_close")["content"]["comm_id"] == comm_id
    assert comm_info(kc, target) == {}


def test_comm_open_to_unknown_target_is_closed(kc: BlockingKernelClient) -> None:
    comm_id = uuid.uuid4().hex
    target = new_target()
    received = send_comm(kc, "comm_open", {"comm_id": comm_id, "target_name": target, "data": {}})
    assert only(received, "comm_close")["content"]["comm_id"] == comm_id
    assert comm_id not in comm_info(kc)


def test_comm_info_filters_by_target(kc: BlockingKernelClient) -> None:
    first, second = new_target(), new_target()
    a = open_kernel_comm(kc, first, "filter_a")
    b = open_kernel_comm(kc, first, "filter_b")
    c = open_kernel_comm(kc, second, "filter_c")
    everything = comm_info(kc)
    assert {a, b, c} <= set(everything)
    assert comm_info(kc, first) == {a: {"target_name": first}, b: {"target_name": first}}
    assert comm_info(kc, second) == {c: {"target_name": second}}


def test_comm_messages_bracketed_by_busy_idle(kc: BlockingKernelClient) -> None:
    comm_id = open_kernel_comm(kc, new_target(), "quiet")
    received = send_comm(kc, "comm_msg", {"comm_id": comm_id, "data": {}})
    assert [(m["msg_type"], m["content"].get("execution_state")) for m in received] == [
        ("status", "busy"),
        ("status", "idle"),
    ]
    # No shell reply is sent for comm messages: the next reply is for the next request.
    msg_id = kc.kernel_info()
    assert kc.get_shell_msg(timeout=TIMEOUT)["parent_header"]["msg_id"] == msg_id


def test_comm_msg_to_unknown_comm_is_ignored(kc: BlockingKernelClient) -> None:
    """Dropped; at most a warning on stderr (as ipykernel does), and the kernel goes on."""
    comm_id = uuid.uuid4().hex
    received = send_comm(kc, "comm_msg", {"comm_id": comm_id, "data": {"x": 1}})
    assert set(msg_types(received)) <= {"status", "stream"}
    assert stream_text(received, "stdout") == ""
    assert user_value(kc, "1 + 1") == "2"
