"""Non-execute shell requests (and kernel_info on control), on both backends.

complete, inspect, is_complete, history, kernel_info, connect, comm_info and
shutdown: the reply content, and the busy/idle pair each request puts on
IOPub with the request as parent.
"""

from __future__ import annotations

import platform
import re
import time
import uuid
from typing import Any

import pytest
from jupyter_client.blocking import BlockingKernelClient

from .utils import TIMEOUT, execute, get_reply, iopub_until_idle


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def send(
    kc: BlockingKernelClient,
    msg_type: str,
    content: dict[str, Any] | None = None,
    channel: str = "shell",
) -> str:
    """Send a request on ``channel``; return its msg_id."""
    msg = kc.session.msg(msg_type, content or {})
    getattr(kc, f"{channel}_channel").send(msg)
    return msg["header"]["msg_id"]


def assert_bracketed(received: list[dict], msg_id: str) -> None:
    """IOPub traffic of a request is exactly busy then idle, both with it as parent."""
    assert [(m["msg_type"], m["content"].get("execution_state")) for m in received] == [
        ("status", "busy"),
        ("status", "idle"),
    ]
    assert [m["parent_header"].get("msg_id") for m in received] == [msg_id, msg_id]


def request(
    kc: BlockingKernelClient,
    msg_type: str,
    content: dict[str, Any] | None = None,
    channel: str = "shell",
) -> dict:
    """Send a request, check its busy/idle bracket on IOPub, return the reply."""
    msg_id = send(kc, msg_type, content, channel)
    reply = get_reply(kc, msg_id, channel=channel)
    assert reply["msg_type"] == msg_type.replace("_request", "_reply")
    assert reply["parent_header"]["msg_id"] == msg_id
    assert_bracketed(iopub_until_idle(kc, msg_id), msg_id)
    return reply


def run(kc: BlockingKernelClient, code: str) -> int:
    """Execute ``code`` successfully; return its execution count."""
    reply, _ = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply["content"]["execution_count"]


def completed_texts(code: str, content: dict) -> list[str]:
    """``code`` with each match applied between cursor_start and cursor_end."""
    start, end = content["cursor_start"], content["cursor_end"]
    return [code[:start] + match + code[end:] for match in content["matches"]]


# -- complete ------------------------------------------------------------------


def test_complete_module_name(kc: BlockingKernelClient) -> None:
    code = "import o"
    content = request(kc, "complete_request", {"code": code, "cursor_pos": len(code)})["content"]
    assert content["status"] == "ok"
    assert "os" in content["matches"]
    assert content["cursor_start"] == len("import ")
    assert content["cursor_end"] == len(code)
    assert all(match.startswith("o") for match in content["matches"])


def test_complete_attribute_of_user_variable(kc: BlockingKernelClient) -> None:
    run(
        kc,
        "class Completable:\n"
        "    some_attribute = 1\n"
        "    def some_method(self):\n"
        "        pass\n"
        "completable_obj = Completable()",
    )
    code = "completable_obj.some_"
    content = request(kc, "complete_request", {"code": code, "cursor_pos": len(code)})["content"]
    assert content["status"] == "ok"
    texts = completed_texts(code, content)
    assert "completable_obj.some_attribute" in texts
    assert "completable_obj.some_method" in texts
    assert 0 <= content["cursor_start"] <= content["cursor_end"] == len(code)


def test_complete_user_variable_name(kc: BlockingKernelClient) -> None:
    run(kc, "completion_target_variable = 1")
    code = "x = completion_target_v"
    content = request(kc, "complete_request", {"code": code, "cursor_pos": len(code)})["content"]
    assert "x = completion_target_variable" in completed_texts(code, content)
    assert content["cursor_start"] == len("x = ")


def test_complete_at_cursor_inside_code(kc: BlockingKernelClient) -> None:
    """Completion uses the text before cursor_pos, not the end of the code."""
    code = "import o\nx = 1"
    cursor = len("import o")
    content = request(kc, "complete_request", {"code": code, "cursor_pos": cursor})["content"]
    assert "os" in content["matches"]
    assert content["cursor_start"] == len("import ")
    assert content["cursor_end"] == cursor
    assert "import os\nx = 1" in completed_texts(code, content)


def test_complete_nothing_matches(kc: BlockingKernelClient) -> None:
    code = "zzz_no_such_name_qqq"
    content = request(kc, "complete_request", {"code": code, "cursor_pos": len(code)})["content"]
    assert content["status"] == "ok"
    assert content["matches"] == []
    assert content["cursor_end"] == len(code)


# -- inspect ---------------------------------------------------------------------


def test_inspect_builtin(kc: BlockingKernelClient) -> None:
    content = request(kc, "inspect_request", {"code": "len", "cursor_pos": 3, "detail_level": 0})[
        "content"
    ]
    assert content["status"] == "ok"
    assert content["found"] is True
    text = strip_ansi(content["data"]["text/plain"])
    assert "Return the number of items" in text
    assert isinstance(content["metadata"], dict)


def test_inspect_user_variable_at_cursor(kc: BlockingKernelClient) -> None:
    run(kc, "inspect_target = [1, 2, 3]")
    code = "print(inspect_target)"
    cursor = code.index("inspect_target") + 3
    content = request(kc, "inspect_request", {"code": code, "cursor_pos": cursor})["content"]
    assert content["found"] is True
    text = strip_ansi(content["data"]["text/plain"])
    assert "list" in text
    assert "[1, 2, 3]" in text


def test_inspect_source_with_detail_level_1(kc: BlockingKernelClient) -> None:
    run(kc, "def inspected_function(a, b=2):\n    '''Add things.'''\n    return a + b")
    code = "inspected_function"
    content = request(
        kc, "inspect_request", {"code": code, "cursor_pos": len(code), "detail_level": 1}
    )["content"]
    assert content["found"] is True
    text = strip_ansi(content["data"]["text/plain"])
    assert "def inspected_function(a, b=2):" in text
    assert "return a + b" in text


def test_inspect_unknown_name(kc: BlockingKernelClient) -> None:
    code = "no_such_name_for_inspection"
    content = request(kc, "inspect_request", {"code": code, "cursor_pos": len(code)})["content"]
    assert content["status"] == "ok"
    assert content["found"] is False
    assert content["data"] == {}


# -- is_complete -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "indent"),
    [
        ("x = 1", "complete", None),
        ("print('hi')", "complete", None),
        ("for i in range(3):", "incomplete", "    "),
        ("if True:\n    if x:", "incomplete", "        "),
        ("a = [1,", "incomplete", ""),
        ("1 2 3", "invalid", None),
        ("x = )", "invalid", None),
    ],
)
def test_is_complete(kc: BlockingKernelClient, code: str, status: str, indent: str | None) -> None:
    content = request(kc, "is_complete_request", {"code": code})["content"]
    assert content["status"] == status
    if indent is None:
        assert "indent" not in content
    else:
        assert content["indent"] == indent


# -- history ---------------------------------------------------------------------


def test_history_tail(kc: BlockingKernelClient) -> None:
    marker = uuid.uuid4().hex[:8]
    codes = [f"tail_{marker}_a = 1", f"tail_{marker}_b = 2", f"tail_{marker}_c = 3"]
    counts = [run(kc, code) for code in codes]
    content = request(
        kc,
        "history_request",
        {"hist_access_type": "tail", "n": 2, "raw": True, "output": False},
    )["content"]
    assert content["status"] == "ok"
    history = content["history"]
    assert [(line, source) for _, line, source in history] == list(
        zip(counts[1:], codes[1:], strict=True)
    )
    assert all(isinstance(session, int) for session, _, _ in history)


def test_history_range_current_session(kc: BlockingKernelClient) -> None:
    marker = uuid.uuid4().hex[:8]
    codes = [f"range_{marker}_a = 1", f"range_{marker}_b = 2"]
    counts = [run(kc, code) for code in codes]
    content = request(
        kc,
        "history_request",
        {
            "hist_access_type": "range",
            "session": 0,
            "start": counts[0],
            "stop": counts[1] + 1,
            "raw": True,
            "output": False,
        },
    )["content"]
    assert content["status"] == "ok"
    assert [(line, source) for _, line, source in content["history"]] == list(
        zip(counts, codes, strict=True)
    )


def test_history_range_from_start(kc: BlockingKernelClient) -> None:
    marker = uuid.uuid4().hex[:8]
    code = f"whole_{marker} = 1"
    count = run(kc, code)
    content = request(
        kc,
        "history_request",
        {"hist_access_type": "range", "session": 0, "start": 1, "raw": True, "output": False},
    )["content"]
    lines = [line for _, line, _ in content["history"]]
    assert lines == sorted(lines)
    assert lines[0] == 1
    assert (count, code) in [(line, source) for _, line, source in content["history"]]


def test_history_range_with_output(kc: BlockingKernelClient) -> None:
    marker = uuid.uuid4().hex[:8]
    code = f"'output_{marker}'"
    count = run(kc, code)
    content = request(
        kc,
        "history_request",
        {
            "hist_access_type": "range",
            "session": 0,
            "start": count,
            "stop": count + 1,
            "raw": True,
            "output": True,
        },
    )["content"]
    assert len(content["history"]) == 1
    _, line, (source, _output) = content["history"][0]
    assert (line, source) == (count, code)


def test_history_search(kc: BlockingKernelClient) -> None:
    marker = uuid.uuid4().hex[:8]
    codes = [f"search_{marker}_a = 1", f"search_{marker}_b = 2", f"other_{marker} = 3"]
    counts = [run(kc, code) for code in codes]
    content = request(
        kc,
        "history_request",
        {
            "hist_access_type": "search",
            "pattern": f"search_{marker}_*",
            "raw": True,
            "output": False,
        },
    )["content"]
    assert content["status"] == "ok"
    assert sorted((line, source) for _, line, source in content["history"]) == list(
        zip(counts[:2], codes[:2], strict=True)
    )


def test_history_search_unique_and_n(kc: BlockingKernelClient) -> None:
    marker = uuid.uuid4().hex[:8]
    code = f"repeated_{marker} = 1"
    for _ in range(3):
        run(kc, code)
    content = request(
        kc,
        "history_request",
        {
            "hist_access_type": "search",
            "pattern": f"repeated_{marker}*",
            "unique": True,
            "raw": True,
            "output": False,
        },
    )["content"]
    assert [source for _, _, source in content["history"]] == [code]
    content = request(
        kc,
        "history_request",
        {
            "hist_access_type": "search",
            "pattern": f"repeated_{marker}*",
            "n": 2,
            "raw": True,
            "output": False,
        },
    )["content"]
    assert [source for _, _, source in content["history"]] == [code, code]


# -- kernel_info -------------------------------------------------------------------


def check_kernel_info(content: dict, backend: str) -> None:
    assert content["status"] == "ok"
    assert content["protocol_version"] == "5.5"
    assert content["implementation"] == "akernel"
    assert isinstance(content["implementation_version"], str)
    assert content["implementation_version"]
    info = content["language_info"]
    assert info["name"] == "python"
    # The kernelspecs run this very interpreter.
    assert info["version"] == platform.python_version()
    assert info["mimetype"] == "text/x-python"
    assert info["file_extension"] == ".py"
    assert info["pygments_lexer"] == "ipython3"
    assert info["codemirror_mode"] == {"name": "ipython", "version": 3}
    assert info["nbconvert_exporter"] == "python"
    assert isinstance(content["banner"], str)
    assert platform.python_version() in content["banner"]
    assert backend in content["banner"]
    links = content["help_links"]
    assert isinstance(links, list) and links
    for link in links:
        assert set(link) == {"text", "url"}
        assert link["url"].startswith("https://")


def test_kernel_info_on_shell(kc: BlockingKernelClient, backend: str) -> None:
    reply = request(kc, "kernel_info_request")
    check_kernel_info(reply["content"], backend)


def test_kernel_info_on_control(kc: BlockingKernelClient, backend: str) -> None:
    reply = request(kc, "kernel_info_request", channel="control")
    check_kernel_info(reply["content"], backend)
    shell_reply = request(kc, "kernel_info_request")
    assert reply["content"] == shell_reply["content"]


def test_kernel_info_through_client_helper(kc: BlockingKernelClient) -> None:
    msg_id = kc.kernel_info()
    reply = get_reply(kc, msg_id)
    assert reply["content"]["implementation"] == "akernel"
    assert reply["header"]["version"] == "5.5"


# -- connect and comm_info -----------------------------------------------------------


def test_connect_request(kc: BlockingKernelClient) -> None:
    content = request(kc, "connect_request")["content"]
    info = kc.get_connection_info()
    assert content["status"] == "ok"
    for name in ("shell", "iopub", "stdin", "hb", "control"):
        assert content[f"{name}_port"] == info[f"{name}_port"]
        assert isinstance(content[f"{name}_port"], int) and content[f"{name}_port"] > 0


def test_comm_info_request(kc: BlockingKernelClient) -> None:
    content = request(kc, "comm_info_request")["content"]
    assert content["status"] == "ok"
    assert isinstance(content["comms"], dict)
    content = request(kc, "comm_info_request", {"target_name": "no.such.target"})["content"]
    assert content == {"status": "ok", "comms": {}}


# -- busy/idle for every request ----------------------------------------------------------


@pytest.mark.parametrize(
    ("msg_type", "content", "channel", "status"),
    [
        ("complete_request", {"code": "pri", "cursor_pos": 3}, "shell", "ok"),
        ("inspect_request", {"code": "print", "cursor_pos": 5}, "shell", "ok"),
        ("is_complete_request", {"code": "x = 1"}, "shell", "complete"),
        ("history_request", {"hist_access_type": "tail", "n": 1, "raw": True}, "shell", "ok"),
        ("kernel_info_request", {}, "shell", "ok"),
        ("kernel_info_request", {}, "control", "ok"),
        ("connect_request", {}, "shell", "ok"),
        ("comm_info_request", {}, "shell", "ok"),
    ],
)
def test_request_bracketed_by_busy_idle(
    kc: BlockingKernelClient, msg_type: str, content: dict, channel: str, status: str
) -> None:
    reply = request(kc, msg_type, content, channel)
    assert reply["content"]["status"] == status


def test_unknown_request_type_keeps_kernel_alive(kc: BlockingKernelClient) -> None:
    msg_id = send(kc, "no_such_request", {})
    assert_bracketed(iopub_until_idle(kc, msg_id), msg_id)
    assert request(kc, "kernel_info_request")["content"]["status"] == "ok"


# -- shutdown -------------------------------------------------------------------------


def wait_dead(km: Any) -> None:
    deadline = time.monotonic() + TIMEOUT
    while km.is_alive():
        assert time.monotonic() < deadline, "kernel still alive after shutdown_request"
        time.sleep(0.1)


@pytest.mark.parametrize("channel", ["shell", "control"])
def test_shutdown_request(fresh_kernel: tuple[Any, BlockingKernelClient], channel: str) -> None:
    km, kc = fresh_kernel
    run(kc, "pre_shutdown = 1")
    msg_id = send(kc, "shutdown_request", {"restart": False}, channel)
    reply = get_reply(kc, msg_id, channel=channel)
    assert reply["content"] == {"status": "ok", "restart": False}
    wait_dead(km)
