"""Every request type the shell answers is answered on control too, as
ipykernel does: the reply comes back on control, its output on IOPub."""

from __future__ import annotations

import pytest

from .rawclient import replies_until, request
from .utils import collect_iopub, execute, msg_types, stream_text

# Request type, content, and a check of the reply's content.
REQUESTS = {
    "execute_request": (
        {"code": "print('on control'); 6 * 7", "silent": False},
        lambda c: c["status"] == "ok" and isinstance(c["execution_count"], int),
    ),
    "complete_request": (
        {"code": "import colle", "cursor_pos": 12},
        lambda c: c["status"] == "ok" and "collections" in c["matches"],
    ),
    "inspect_request": (
        {"code": "len", "cursor_pos": 3, "detail_level": 0},
        lambda c: c["status"] == "ok" and c["found"],
    ),
    "is_complete_request": (
        {"code": "for i in range(3):"},
        lambda c: c["status"] == "incomplete",
    ),
    "history_request": (
        {"hist_access_type": "tail", "n": 5, "raw": True, "output": False},
        lambda c: c["status"] == "ok" and isinstance(c["history"], list),
    ),
    "comm_info_request": ({}, lambda c: c["status"] == "ok" and "comms" in c),
    "connect_request": ({}, lambda c: c["status"] == "ok" and c["shell_port"] > 0),
    "kernel_info_request": ({}, lambda c: c["status"] == "ok" and c["implementation"]),
}


@pytest.mark.parametrize("msg_type", list(REQUESTS))
def test_shell_request_answered_on_control(kc, msg_type: str) -> None:
    content, check = REQUESTS[msg_type]
    msg_id = request(kc, "control", msg_type, content)
    reply = replies_until(kc, "control", msg_id)[-1]
    assert reply["msg_type"] == msg_type.replace("_request", "_reply")
    assert check(reply["content"]), reply["content"]
    # Bracketed by busy and idle, once, like any request.
    states = [
        m["content"]["execution_state"]
        for m in collect_iopub(kc, msg_id)
        if m["msg_type"] == "status"
    ]
    assert states == ["busy", "idle"]


def test_execute_on_control_publishes_its_output(kc) -> None:
    msg_id = request(kc, "control", "execute_request", REQUESTS["execute_request"][0])
    reply = replies_until(kc, "control", msg_id)[-1]
    assert reply["content"]["status"] == "ok"
    outputs = collect_iopub(kc, msg_id)
    assert stream_text(outputs) == "on control\n"
    results = [m for m in outputs if m["msg_type"] == "execute_result"]
    assert [m["content"]["data"]["text/plain"] for m in results] == ["42"]
    # Nothing went to the shell channel.
    assert not kc.shell_channel.msg_ready()


def test_execute_error_on_control(kc) -> None:
    msg_id = request(kc, "control", "execute_request", {"code": "1 / 0"})
    reply = replies_until(kc, "control", msg_id)[-1]
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "ZeroDivisionError"
    assert "error" in msg_types(collect_iopub(kc, msg_id))


def test_execute_on_control_waits_for_the_running_cell(kc) -> None:
    """It runs in the main thread, after the cell the shell is running; the
    control channel itself stays free meanwhile."""
    shell_id = kc.execute("import time; time.sleep(1); order = ['shell']")
    control_id = request(kc, "control", "execute_request", {"code": "order.append('control')"})
    info_id = request(kc, "control", "kernel_info_request")
    replies = replies_until(kc, "control", control_id)
    assert [r["parent_header"]["msg_id"] for r in replies] == [info_id, control_id]
    assert replies[-1]["content"]["status"] == "ok"
    assert kc.get_shell_msg(timeout=20)["parent_header"]["msg_id"] == shell_id
    reply, _ = execute(kc, "assert order == ['shell', 'control'], order")
    assert reply["content"]["status"] == "ok", reply["content"]
