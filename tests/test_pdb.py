"""pdb in a cell: IPython's debugger; an interrupt at its prompt ends the
debugger and the cell (signal and message mode), and what was queued behind
the cell is answered; the kernel's own frames are hidden from ``where``."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from .conftest import start_kernel, stop_kernel
from .utils import TIMEOUT, execute, get_reply, iopub_until_idle, stream_text

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

DEBUGGED_CELL = """\
def inner():
    x = 41
    {stop}
    return x + 1
inner()
print('after' + ' the debugger')
"""


@pytest.fixture(params=["signal", "message"])
def mode_kernel(backend: str, request: pytest.FixtureRequest) -> Iterator[tuple]:
    km, kc = start_kernel(backend, request.param)
    try:
        yield km, kc
    finally:
        stop_kernel(km, kc)


def wait_for_prompt(kc) -> dict:
    msg = kc.get_stdin_msg(timeout=TIMEOUT)
    assert msg["msg_type"] == "input_request", msg
    return msg


@pytest.mark.parametrize("stop", ["breakpoint()", "import pdb; pdb.set_trace()"])
def test_interrupt_at_the_prompt_ends_debugger_and_cell(mode_kernel, stop: str) -> None:
    km, kc = mode_kernel
    msg_id = kc.execute(DEBUGGED_CELL.format(stop=stop), allow_stdin=True)
    wait_for_prompt(kc)
    queued = kc.execute("print('queued ran')")
    info = kc.kernel_info()
    km.interrupt_kernel()
    reply = get_reply(kc, msg_id)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    # What was queued behind the cell is answered: the execute is aborted
    # (the cell failed), kernel_info is answered as usual.
    assert get_reply(kc, queued)["content"]["status"] == "aborted"
    assert get_reply(kc, info)["content"]["status"] == "ok"
    seen = iopub_until_idle(kc, info)
    assert "after the debugger" not in stream_text(
        [m for m in seen if m["parent_header"].get("msg_id") == msg_id]
    )
    # The debugger did not prompt again.
    assert not kc.stdin_channel.msg_ready()
    reply, outputs = execute(kc, "print('still works')")
    assert reply["content"]["status"] == "ok"
    assert stream_text(outputs) == "still works\n"


def test_where_hides_the_kernel(kernel) -> None:
    _, kc = kernel
    msg_id = kc.execute(DEBUGGED_CELL.format(stop="breakpoint()"), allow_stdin=True)
    wait_for_prompt(kc)
    kc.input("where")
    wait_for_prompt(kc)
    kc.input("p x")
    wait_for_prompt(kc)
    kc.input("continue")
    reply = get_reply(kc, msg_id)
    assert reply["content"]["status"] == "ok", reply["content"]
    text = _ANSI.sub(
        "",
        stream_text(
            [m for m in iopub_until_idle(kc, msg_id) if m["parent_header"].get("msg_id") == msg_id]
        ),
    )
    where = text.split("ipdb>")[0] if "ipdb>" in text else text
    assert "inner()" in text, text
    assert "41" in text, text
    assert "after the debugger" in text
    assert "akernel" not in text, text
    assert "anyio" not in where and "asyncio" not in where and "trio" not in where, text
