"""execute_request against real kernels, on both backends.

Covers the reply content, what each request puts on IOPub (and in which
order, with which parent), execution counting, silent and no-history runs,
user expressions, aborting queued requests after an error, magics, shell
commands, top-level await, and the payloads of the reply.
"""

from __future__ import annotations

import re
import time
from typing import Any

from jupyter_client.blocking import BlockingKernelClient

from .utils import (
    collect_iopub,
    execute,
    get_reply,
    iopub_until_idle,
    msg_types,
    stream_text,
    user_value,
)


def merge_streams(outputs: list[dict]) -> list[tuple[str, Any]]:
    """(type, detail) per message; consecutive chunks of one stream are merged.

    A kernel may split a stream into chunks as it likes; only the order of
    distinct outputs is part of the contract.
    """
    merged: list[tuple[str, Any]] = []
    for m in outputs:
        kind = m["msg_type"]
        content = m["content"]
        if kind == "stream":
            if merged and merged[-1][0] == f"stream:{content['name']}":
                merged[-1] = (merged[-1][0], merged[-1][1] + content["text"])
            else:
                merged.append((f"stream:{content['name']}", content["text"]))
        elif kind == "status":
            merged.append((kind, content["execution_state"]))
        else:
            merged.append((kind, None))
    return merged


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def only(outputs: list[dict], msg_type: str) -> dict:
    """The one message of ``msg_type`` in ``outputs``."""
    found = [m for m in outputs if m["msg_type"] == msg_type]
    assert len(found) == 1, msg_types(outputs)
    return found[0]


def next_count(kc: BlockingKernelClient) -> int:
    """Run an empty-ish history-storing cell and return its execution count."""
    reply, _ = execute(kc, "pass")
    assert reply["content"]["status"] == "ok"
    return reply["content"]["execution_count"]


# -- basic outputs -----------------------------------------------------------


def test_print_produces_stdout_stream(kc: BlockingKernelClient) -> None:
    """print() output arrives as one stdout stream between execute_input and idle."""
    reply, outputs = execute(kc, "print('hello')")
    assert reply["content"]["status"] == "ok"
    assert msg_types(outputs) == ["status", "execute_input", "stream", "status"]
    assert stream_text(outputs) == "hello\n"


def test_stdout_and_stderr_streams(kc: BlockingKernelClient) -> None:
    code = "import sys\nprint('to out')\nprint('to err', file=sys.stderr)"
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok"
    assert stream_text(outputs, "stdout") == "to out\n"
    assert stream_text(outputs, "stderr") == "to err\n"
    assert "execute_result" not in msg_types(outputs)


def test_execute_input_has_code_and_count(kc: BlockingKernelClient) -> None:
    code = "input_check = 5"
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok"
    execute_input = only(outputs, "execute_input")
    assert execute_input["content"]["code"] == code
    assert execute_input["content"]["execution_count"] == reply["content"]["execution_count"]


def test_execute_result(kc: BlockingKernelClient) -> None:
    reply, outputs = execute(kc, "6 * 7")
    assert reply["content"]["status"] == "ok"
    result = only(outputs, "execute_result")["content"]
    assert result["data"]["text/plain"] == "42"
    assert result["execution_count"] == reply["content"]["execution_count"]
    assert isinstance(result["metadata"], dict)


def test_trailing_semicolon_suppresses_result(kc: BlockingKernelClient) -> None:
    reply, outputs = execute(kc, "6 * 7;")
    assert reply["content"]["status"] == "ok"
    assert msg_types(outputs) == ["status", "execute_input", "status"]


def test_display_html(kc: BlockingKernelClient) -> None:
    code = "from IPython.display import display, HTML\ndisplay(HTML('<b>bold</b>'))"
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok"
    display = only(outputs, "display_data")["content"]
    assert display["data"]["text/html"] == "<b>bold</b>"
    assert "text/plain" in display["data"]
    assert isinstance(display["metadata"], dict)
    assert "execute_result" not in msg_types(outputs)


def test_display_with_id_and_update(kc: BlockingKernelClient) -> None:
    code = (
        "from IPython.display import display\n"
        "h = display('first', display_id='disp-1')\n"
        "h.update('second')"
    )
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok"
    display = only(outputs, "display_data")["content"]
    update = only(outputs, "update_display_data")["content"]
    assert display["data"]["text/plain"] == "'first'"
    assert display["transient"] == {"display_id": "disp-1"}
    assert update["data"]["text/plain"] == "'second'"
    assert update["transient"] == {"display_id": "disp-1"}


def test_error(kc: BlockingKernelClient) -> None:
    reply, outputs = execute(kc, "1 / 0")
    content = reply["content"]
    assert content["status"] == "error"
    assert content["ename"] == "ZeroDivisionError"
    assert content["evalue"] == "division by zero"
    assert isinstance(content["execution_count"], int)
    error = only(outputs, "error")["content"]
    assert error["ename"] == "ZeroDivisionError"
    assert error["evalue"] == "division by zero"
    assert isinstance(error["traceback"], list) and error["traceback"]
    assert all(isinstance(line, str) for line in error["traceback"])
    assert "ZeroDivisionError" in "".join(error["traceback"])
    assert content["traceback"] == error["traceback"]
    assert msg_types(outputs) == ["status", "execute_input", "error", "status"]
    assert reply["metadata"].get("status") == "error"


def test_error_after_output_keeps_output(kc: BlockingKernelClient) -> None:
    reply, outputs = execute(kc, "print('before')\nraise ValueError('bad value')")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "ValueError"
    assert reply["content"]["evalue"] == "bad value"
    assert stream_text(outputs) == "before\n"
    assert merge_streams(outputs)[2:4] == [("stream:stdout", "before\n"), ("error", None)]


def test_syntax_error(kc: BlockingKernelClient) -> None:
    reply, outputs = execute(kc, "def broken(:\n    pass")
    content = reply["content"]
    assert content["status"] == "error"
    assert content["ename"] == "SyntaxError"
    assert isinstance(content["execution_count"], int)
    error = only(outputs, "error")["content"]
    assert error["ename"] == "SyntaxError"
    assert error["traceback"]
    # The kernel keeps working afterwards.
    reply, outputs = execute(kc, "'still alive'")
    assert reply["content"]["status"] == "ok"
    assert only(outputs, "execute_result")["content"]["data"]["text/plain"] == "'still alive'"


def test_empty_code(kc: BlockingKernelClient) -> None:
    before = next_count(kc)
    reply, outputs = execute(kc, "")
    assert reply["content"]["status"] == "ok"
    assert isinstance(reply["content"]["execution_count"], int)
    assert reply["content"]["payload"] == []
    assert msg_types(outputs) == ["status", "execute_input", "status"]
    assert only(outputs, "execute_input")["content"]["code"] == ""
    # An empty cell does not use up a prompt number.
    assert next_count(kc) == before + 1


# -- IOPub order and parents ---------------------------------------------------


def test_iopub_order_and_parent(kc: BlockingKernelClient) -> None:
    """busy, execute_input, outputs in the order produced, idle; all with this parent."""
    code = (
        "import sys\n"
        "from IPython.display import display, HTML\n"
        "print('one')\n"
        "display(HTML('<i>two</i>'))\n"
        "print('three', file=sys.stderr)\n"
        "print('four')\n"
        "'five'"
    )
    msg_id = kc.execute(code)
    received = iopub_until_idle(kc, msg_id)
    reply = get_reply(kc, msg_id)
    assert reply["content"]["status"] == "ok"
    assert [m["parent_header"].get("msg_id") for m in received] == [msg_id] * len(received)
    assert merge_streams(received) == [
        ("status", "busy"),
        ("execute_input", None),
        ("stream:stdout", "one\n"),
        ("display_data", None),
        ("stream:stderr", "three\n"),
        ("stream:stdout", "four\n"),
        ("execute_result", None),
        ("status", "idle"),
    ]
    assert received[-2]["content"]["data"]["text/plain"] == "'five'"
    for m in received:
        assert m["header"]["session"] == received[0]["header"]["session"]


def test_iopub_parent_for_back_to_back_requests(kc: BlockingKernelClient) -> None:
    """Output of each of several queued requests carries its own request as parent."""
    ids = [kc.execute(f"print('cell {i}')") for i in range(3)]
    received = iopub_until_idle(kc, ids[-1])
    for i, msg_id in enumerate(ids):
        mine = [m for m in received if m["parent_header"].get("msg_id") == msg_id]
        assert merge_streams(mine) == [
            ("status", "busy"),
            ("execute_input", None),
            ("stream:stdout", f"cell {i}\n"),
            ("status", "idle"),
        ]
    assert all(m["parent_header"].get("msg_id") in ids for m in received)
    # Requests are handled one after the other: no interleaving.
    parents = [m["parent_header"]["msg_id"] for m in received]
    assert parents == sorted(parents, key=ids.index)
    for msg_id in ids:
        assert get_reply(kc, msg_id)["content"]["status"] == "ok"


# -- execution counting --------------------------------------------------------


def test_execution_count_increments(kc: BlockingKernelClient) -> None:
    counts = []
    for code in ("a_count = 1", "1 / 0", "a_count + 1"):
        reply, outputs = execute(kc, code)
        count = reply["content"]["execution_count"]
        assert only(outputs, "execute_input")["content"]["execution_count"] == count
        counts.append(count)
    first = counts[0]
    assert counts == [first, first + 1, first + 2]


def test_execution_count_in_prompt_variables(kc: BlockingKernelClient) -> None:
    reply, _ = execute(kc, "'prompt var'")
    count = reply["content"]["execution_count"]
    assert user_value(kc, f"_{count}") == "'prompt var'"
    assert user_value(kc, f"_i{count}") == "\"'prompt var'\""


def test_silent(kc: BlockingKernelClient) -> None:
    before = next_count(kc)
    reply, outputs = execute(kc, "silent_side_effect = 11\nsilent_side_effect * 2", silent=True)
    assert reply["content"]["status"] == "ok"
    assert msg_types(outputs) == ["status", "status"]
    assert user_value(kc, "silent_side_effect") == "11"
    assert next_count(kc) == before + 1


def test_silent_print_not_broadcast(kc: BlockingKernelClient) -> None:
    """silent=True: "will not broadcast output on the IOPUB channel" (messaging spec)."""
    reply, outputs = execute(kc, "print('should not be seen')", silent=True)
    assert reply["content"]["status"] == "ok"
    assert msg_types(outputs) == ["status", "status"]


def test_silent_error_does_not_bump_count(kc: BlockingKernelClient) -> None:
    before = next_count(kc)
    reply, _ = execute(kc, "1 / 0", silent=True, stop_on_error=False)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "ZeroDivisionError"
    assert next_count(kc) == before + 1


def test_store_history_false(kc: BlockingKernelClient) -> None:
    before = next_count(kc)
    reply, outputs = execute(kc, "no_history = 3\nno_history", store_history=False)
    assert reply["content"]["status"] == "ok"
    # Spec: without history, the reply holds the current value of the counter.
    assert reply["content"]["execution_count"] == before
    assert only(outputs, "execute_result")["content"]["data"]["text/plain"] == "3"
    assert next_count(kc) == before + 1
    assert user_value(kc, "no_history") == "3"


# -- user expressions --------------------------------------------------------------


def test_user_expressions(kc: BlockingKernelClient) -> None:
    reply, _ = execute(
        kc,
        "ue_base = 20",
        user_expressions={"ok": "ue_base + 1", "bad": "ue_undefined_name", "zero": "1/0"},
    )
    content = reply["content"]
    assert content["status"] == "ok"
    expressions = content["user_expressions"]
    assert set(expressions) == {"ok", "bad", "zero"}
    assert expressions["ok"]["status"] == "ok"
    assert expressions["ok"]["data"]["text/plain"] == "21"
    assert isinstance(expressions["ok"]["metadata"], dict)
    assert expressions["bad"]["status"] == "error"
    assert expressions["bad"]["ename"] == "NameError"
    assert "ue_undefined_name" in expressions["bad"]["evalue"]
    assert isinstance(expressions["bad"]["traceback"], list)
    assert expressions["zero"]["status"] == "error"
    assert expressions["zero"]["ename"] == "ZeroDivisionError"


def test_user_expressions_do_not_produce_execute_result(kc: BlockingKernelClient) -> None:
    reply, outputs = execute(kc, "ue_quiet = 1", user_expressions={"q": "ue_quiet + 4"})
    assert reply["content"]["user_expressions"]["q"]["data"]["text/plain"] == "5"
    assert msg_types(outputs) == ["status", "execute_input", "status"]


# -- stop_on_error -------------------------------------------------------------


def test_stop_on_error_aborts_queued(kc: BlockingKernelClient) -> None:
    assert execute(kc, "abort_hits = []")[0]["content"]["status"] == "ok"
    first = kc.execute("import time\ntime.sleep(0.5)\n1/0")
    second = kc.execute("abort_hits.append(2)")
    third = kc.execute("abort_hits.append(3)")
    replies = [get_reply(kc, msg_id) for msg_id in (first, second, third)]
    assert replies[0]["content"]["status"] == "error"
    assert replies[0]["content"]["ename"] == "ZeroDivisionError"
    for reply in replies[1:]:
        assert reply["content"]["status"] == "aborted"
    for msg_id in (second, third):
        outputs = collect_iopub(kc, msg_id)
        assert outputs[0]["content"]["execution_state"] == "busy"
        assert outputs[-1]["content"]["execution_state"] == "idle"
        assert "execute_input" not in msg_types(outputs)
        assert "stream" not in msg_types(outputs)
    assert user_value(kc, "abort_hits") == "[]"
    # A request sent after the aborted ones runs normally.
    reply, outputs = execute(kc, "abort_hits.append(4); abort_hits")
    assert reply["content"]["status"] == "ok"
    assert only(outputs, "execute_result")["content"]["data"]["text/plain"] == "[4]"


def test_stop_on_error_false_keeps_queue(kc: BlockingKernelClient) -> None:
    assert execute(kc, "keep_hits = []")[0]["content"]["status"] == "ok"
    first = kc.execute("import time\ntime.sleep(0.5)\n1/0", stop_on_error=False)
    second = kc.execute("keep_hits.append(2)")
    third = kc.execute("keep_hits.append(3)")
    replies = [get_reply(kc, msg_id) for msg_id in (first, second, third)]
    assert [r["content"]["status"] for r in replies] == ["error", "ok", "ok"]
    assert user_value(kc, "keep_hits") == "[2, 3]"


def test_request_sent_after_error_is_not_aborted(kc: BlockingKernelClient) -> None:
    """Only requests queued when the error happened are aborted.

    Once the client has the error reply and the idle status, the next request
    it sends was not queued behind the failed one and must run.
    """
    statuses = []
    for i in range(20):
        failing, _ = execute(kc, "1 / 0")
        following, _ = execute(kc, f"after_error = {i}")
        statuses.append((failing["content"]["status"], following["content"]["status"]))
    assert statuses == [("error", "ok")] * 20


def test_aborted_requests_do_not_bump_count(kc: BlockingKernelClient) -> None:
    before = next_count(kc)
    first = kc.execute("import time\ntime.sleep(0.5)\n1/0")
    second = kc.execute("pass")
    assert get_reply(kc, first)["content"]["execution_count"] == before + 1
    assert get_reply(kc, second)["content"]["status"] == "aborted"
    collect_iopub(kc, second)
    assert next_count(kc) == before + 2


# -- IPython features ----------------------------------------------------------------


def test_line_magic_time(kc: BlockingKernelClient) -> None:
    reply, outputs = execute(kc, "%time timed = sum(range(10))")
    assert reply["content"]["status"] == "ok"
    assert "Wall time" in stream_text(outputs)
    assert user_value(kc, "timed") == "45"


def test_line_magic_who(kc: BlockingKernelClient) -> None:
    execute(kc, "who_marker_variable = 1")
    reply, outputs = execute(kc, "%who int")
    assert reply["content"]["status"] == "ok"
    assert "who_marker_variable" in stream_text(outputs)


def test_cell_magic(kc: BlockingKernelClient) -> None:
    reply, outputs = execute(kc, "%%capture captured\nprint('captured text')")
    assert reply["content"]["status"] == "ok"
    assert "stream" not in msg_types(outputs)
    assert user_value(kc, "captured.stdout") == "'captured text\\n'"


def test_unknown_magic_is_an_error(kc: BlockingKernelClient) -> None:
    reply, outputs = execute(kc, "%no_such_magic_here")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "UsageError"
    assert "no_such_magic_here" in reply["content"]["evalue"]
    # IPython reports usage errors as a short message on stderr, not a traceback.
    assert "no_such_magic_here" in stream_text(outputs, "stderr")


def test_top_level_await_native(kc: BlockingKernelClient, backend: str) -> None:
    """A cell can await the library of the loop the kernel runs on."""
    library = "asyncio" if backend == "asyncio" else "trio"
    code = (
        f"import {library}, sniffio\n"
        f"await {library}.sleep(0.1)\n"
        "print(sniffio.current_async_library())"
    )
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert stream_text(outputs) == f"{backend}\n"


def test_top_level_await_anyio(kc: BlockingKernelClient) -> None:
    code = (
        "import anyio\n"
        "async def twice(x):\n"
        "    await anyio.sleep(0.05)\n"
        "    return 2 * x\n"
        "await anyio.sleep(0.1)\n"
        "await twice(21)"
    )
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    result = only(outputs, "execute_result")["content"]
    assert result["data"]["text/plain"] == "42"
    assert result["execution_count"] == reply["content"]["execution_count"]


def test_top_level_await_error(kc: BlockingKernelClient) -> None:
    code = "import anyio\nawait anyio.sleep(0.01)\nraise KeyError('after await')"
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyError"
    assert only(outputs, "error")["content"]["ename"] == "KeyError"


def test_inspect_with_question_mark_pages(kc: BlockingKernelClient) -> None:
    reply, outputs = execute(kc, "len?")
    content = reply["content"]
    assert content["status"] == "ok"
    pages = [p for p in content["payload"] if p["source"] == "page"]
    assert len(pages) == 1
    text = strip_ansi(pages[0]["data"]["text/plain"])
    assert "Return the number of items" in text
    assert pages[0]["start"] == 0
    assert "execute_result" not in msg_types(outputs)


def test_source_with_double_question_mark_pages(kc: BlockingKernelClient) -> None:
    reply, _ = execute(kc, "import json\njson.dumps??")
    content = reply["content"]
    assert content["status"] == "ok"
    pages = [p for p in content["payload"] if p["source"] == "page"]
    assert len(pages) == 1
    assert "def dumps(obj" in strip_ansi(pages[0]["data"]["text/plain"])


def test_payload_cleared_between_requests(kc: BlockingKernelClient) -> None:
    reply, _ = execute(kc, "get_ipython().set_next_input('once')")
    assert len(reply["content"]["payload"]) == 1
    reply, _ = execute(kc, "1")
    assert reply["content"]["payload"] == []


def test_set_next_input_payload(kc: BlockingKernelClient) -> None:
    reply, _ = execute(kc, "get_ipython().set_next_input('next_cell = 1')")
    content = reply["content"]
    assert content["status"] == "ok"
    assert content["payload"] == [
        {"source": "set_next_input", "text": "next_cell = 1", "replace": False}
    ]


def test_underscore_is_last_result(kc: BlockingKernelClient) -> None:
    execute(kc, "'last value'")
    reply, outputs = execute(kc, "_")
    assert reply["content"]["status"] == "ok"
    assert only(outputs, "execute_result")["content"]["data"]["text/plain"] == "'last value'"


def test_unicode_output(kc: BlockingKernelClient) -> None:
    reply, outputs = execute(kc, "print('héllo ☃ 𝄞')\n'ünï'")
    assert reply["content"]["status"] == "ok"
    assert stream_text(outputs) == "héllo ☃ 𝄞\n"
    assert only(outputs, "execute_result")["content"]["data"]["text/plain"] == "'ünï'"


def test_large_output_arrives_whole(kc: BlockingKernelClient) -> None:
    reply, outputs = execute(kc, "for i in range(2000):\n    print(i)")
    assert reply["content"]["status"] == "ok"
    assert stream_text(outputs) == "".join(f"{i}\n" for i in range(2000))


# -- shell commands --------------------------------------------------------------
# Last in the file: ``!cmd`` forks the kernel process.


def test_shell_command_output_is_captured(kc: BlockingKernelClient) -> None:
    reply, outputs = execute(kc, "!echo hello-from-shell")
    assert reply["content"]["status"] == "ok"
    assert "hello-from-shell" in stream_text(outputs)


def test_shell_command_capture_to_variable(kc: BlockingKernelClient) -> None:
    reply, _ = execute(kc, "shell_lines = !echo captured-line")
    assert reply["content"]["status"] == "ok"
    assert user_value(kc, "list(shell_lines)") == "['captured-line']"


def test_kernel_survives_await_after_shell_command(
    fresh_kernel: tuple[Any, BlockingKernelClient],
) -> None:
    """The event loop keeps running fine after ``!cmd`` (which forks)."""
    _, kc = fresh_kernel
    reply, outputs = execute(kc, "!echo forked\nimport anyio\nawait anyio.sleep(1.5)\n'done'")
    assert reply["content"]["status"] == "ok"
    assert "forked" in stream_text(outputs)
    time.sleep(1.5)
    reply, outputs = execute(kc, "'still serving'")
    assert reply["content"]["status"] == "ok"
    assert only(outputs, "execute_result")["content"]["data"]["text/plain"] == "'still serving'"
