"""input(), getpass() and ``await akernel.ainput()`` through the stdin channel, on both backends."""

from __future__ import annotations

import time

from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import KernelManager

from .utils import (
    TIMEOUT,
    collect_iopub,
    execute,
    get_reply,
    msg_types,
    stream_text,
    wait_for_stream,
)


def wait_input_request(kc: BlockingKernelClient, msg_id: str) -> dict:
    """The next stdin message; fails early if the execute reply comes first instead."""
    deadline = time.monotonic() + TIMEOUT
    while not kc.stdin_channel.msg_ready():
        if kc.shell_channel.msg_ready():
            reply = kc.get_shell_msg(timeout=TIMEOUT)
            if reply["parent_header"].get("msg_id") == msg_id:
                raise AssertionError(f"reply without input_request: {reply['content']}")
        assert time.monotonic() < deadline, "no input_request"
        time.sleep(0.01)
    return kc.get_stdin_msg(timeout=TIMEOUT)


def answer_input(kc: BlockingKernelClient, msg_id: str, value: str) -> dict:
    """Wait for the input_request of execute request ``msg_id``, answer it, return it."""
    request = wait_input_request(kc, msg_id)
    assert request["msg_type"] == "input_request"
    assert request["parent_header"]["msg_id"] == msg_id
    kc.input(value)
    return request


def test_input(kc: BlockingKernelClient) -> None:
    code = "answer = input('your name? ')\nprint('got', repr(answer))"
    msg_id = kc.execute(code, allow_stdin=True)
    request = answer_input(kc, msg_id, "x")
    assert request["content"]["prompt"] == "your name? "
    assert request["content"]["password"] is False
    reply = get_reply(kc, msg_id)
    assert reply["content"]["status"] == "ok"
    outputs = collect_iopub(kc, msg_id)
    assert stream_text(outputs) == "got 'x'\n"
    assert "error" not in msg_types(outputs)


def test_input_without_prompt(kc: BlockingKernelClient) -> None:
    msg_id = kc.execute("plain = input()\nplain", allow_stdin=True)
    request = answer_input(kc, msg_id, "no prompt")
    assert request["content"]["prompt"] == ""
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    outputs = collect_iopub(kc, msg_id)
    results = [m for m in outputs if m["msg_type"] == "execute_result"]
    assert [m["content"]["data"]["text/plain"] for m in results] == ["'no prompt'"]


def test_getpass(kc: BlockingKernelClient) -> None:
    code = "import getpass\nsecret = getpass.getpass('pw: ')\nprint(len(secret))"
    msg_id = kc.execute(code, allow_stdin=True)
    request = answer_input(kc, msg_id, "s3cr3t")
    assert request["content"]["prompt"] == "pw: "
    assert request["content"]["password"] is True
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    assert stream_text(collect_iopub(kc, msg_id)) == "6\n"


def test_several_inputs_in_one_cell(kc: BlockingKernelClient) -> None:
    code = "values = [input(f'value {i}: ') for i in range(3)]\nprint('+'.join(values))"
    msg_id = kc.execute(code, allow_stdin=True)
    prompts = [answer_input(kc, msg_id, f"v{i}")["content"]["prompt"] for i in range(3)]
    assert prompts == ["value 0: ", "value 1: ", "value 2: "]
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    assert stream_text(collect_iopub(kc, msg_id)) == "v0+v1+v2\n"


def test_output_before_input_is_published_first(kc: BlockingKernelClient) -> None:
    """What a cell printed before asking for input reaches the client while it waits."""
    msg_id = kc.execute("print('question follows')\nreply_value = input('? ')", allow_stdin=True)
    request = wait_input_request(kc, msg_id)
    assert request["msg_type"] == "input_request"
    seen = []
    while "question follows\n" not in "".join(seen):
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            seen.append(msg["content"]["text"])
    kc.input("ok")
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    collect_iopub(kc, msg_id)
    reply, _ = execute(kc, "reply_value", user_expressions={"v": "reply_value"})
    assert reply["content"]["user_expressions"]["v"]["data"]["text/plain"] == "'ok'"


def test_input_not_allowed(kc: BlockingKernelClient) -> None:
    msg_id = kc.execute("input('never answered: ')", allow_stdin=False)
    reply = get_reply(kc, msg_id)
    content = reply["content"]
    assert content["status"] == "error"
    assert content["ename"] == "StdinNotImplementedError"
    outputs = collect_iopub(kc, msg_id)
    errors = [m for m in outputs if m["msg_type"] == "error"]
    assert [m["content"]["ename"] for m in errors] == ["StdinNotImplementedError"]
    assert "input" in errors[0]["content"]["evalue"]


def test_getpass_not_allowed(kc: BlockingKernelClient) -> None:
    reply, outputs = execute(kc, "import getpass\ngetpass.getpass()", allow_stdin=False)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "StdinNotImplementedError"
    assert "error" in msg_types(outputs)


def test_no_input_request_when_not_allowed(kc: BlockingKernelClient) -> None:
    """With allow_stdin false nothing is sent on stdin, and the next request still works."""
    reply, _ = execute(kc, "input()", allow_stdin=False)
    assert reply["content"]["status"] == "error"
    assert kc.stdin_channel.msg_ready() is False
    msg_id = kc.execute("after = input('again: ')\nafter", allow_stdin=True)
    request = answer_input(kc, msg_id, "works")
    assert request["content"]["prompt"] == "again: "
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    collect_iopub(kc, msg_id)


# --- await akernel.ainput(): the event loop goes on while the client answers -------------


def test_ainput_lets_the_loop_run_while_it_waits(kc: BlockingKernelClient) -> None:
    code = (
        "import akernel, anyio\n"
        "async def meanwhile():\n"
        "    await anyio.sleep(0)\n"
        "    print('ran while the cell waited', flush=True)\n"
        "akernel.task_group().start_soon(meanwhile)\n"
        "secret = await akernel.ainput('token: ', password=True)\n"
        "print('got', len(secret))\n"
    )
    msg_id = kc.execute(code, allow_stdin=True)
    request = wait_input_request(kc, msg_id)
    assert request["content"] == {"prompt": "token: ", "password": True}
    # Not answered yet: the background task runs all the same.
    wait_for_stream(kc, msg_id, "ran while the cell waited")
    kc.input("abc")
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    assert "got 3\n" in stream_text(collect_iopub(kc, msg_id))


def test_ainput_ends_on_interrupt(kernel: tuple[KernelManager, BlockingKernelClient]) -> None:
    km, kc = kernel
    code = "import akernel\nanswer = await akernel.ainput('never: ')"
    msg_id = kc.execute(code, allow_stdin=True)
    wait_input_request(kc, msg_id)
    km.interrupt_kernel()
    reply = get_reply(kc, msg_id)
    assert reply["content"]["ename"] == "KeyboardInterrupt", reply["content"]
    collect_iopub(kc, msg_id)
    # The next prompt is answered as usual (the unanswered one is forgotten).
    msg_id = kc.execute("after = input('again: ')\nafter", allow_stdin=True)
    answer_input(kc, msg_id, "works")
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    collect_iopub(kc, msg_id)


def test_ainput_not_allowed(kc: BlockingKernelClient) -> None:
    reply, _ = execute(kc, "import akernel\nawait akernel.ainput()", allow_stdin=False)
    assert reply["content"]["ename"] == "StdinNotImplementedError", reply["content"]
    assert kc.stdin_channel.msg_ready() is False
