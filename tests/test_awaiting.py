"""While a cell awaits, the shell channel is still served (both backends).

The ordering rules under test (see ``akernel.channels.dispatch``): execute
requests run one at a time in arrival order; any other request is handled
once every request that arrived before it has started, so it is answered
while a cell is suspended in ``await``, but never overtakes an execute
request queued before it.
"""

from __future__ import annotations

from typing import Any

from jupyter_client.blocking import BlockingKernelClient

from .utils import (
    TIMEOUT,
    get_reply,
    iopub_until_idle,
    run_ok,
    stream_text,
    user_value,
    wait_for_stream,
)


def shell_replies(kc: BlockingKernelClient, msg_ids: list[str]) -> list[dict]:
    """The replies to ``msg_ids``, in the order they arrived."""
    wanted, replies = set(msg_ids), []
    while wanted:
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        msg_id = reply["parent_header"].get("msg_id")
        if msg_id in wanted:
            wanted.discard(msg_id)
            replies.append(reply)
    return replies


def send_shell(kc: BlockingKernelClient, msg_type: str, content: dict[str, Any]) -> str:
    msg = kc.session.msg(msg_type, content)
    kc.shell_channel.send(msg)
    return msg["header"]["msg_id"]


def test_requests_answered_while_a_cell_awaits(kc: BlockingKernelClient) -> None:
    run_ok(kc, "import anyio\nawaiting_value = 42")
    cell = kc.execute("print('waiting', flush=True)\nawait anyio.sleep(1.5)\nprint('done')")
    wait_for_stream(kc, cell, "waiting")
    sent = [
        kc.kernel_info(),
        kc.complete("awaiting_v", 10),
        kc.inspect("awaiting_value", 14, 0),
        kc.is_complete("for i in x:"),
        kc.comm_info(),
        kc.history(hist_access_type="tail", n=1),
    ]
    replies = shell_replies(kc, [*sent, cell])
    # Everything is answered before the cell's own reply.
    assert [r["parent_header"]["msg_id"] for r in replies] == [*sent, cell]
    info, complete, inspect, is_complete, comm_info, history = (r["content"] for r in replies[:6])
    assert info["implementation"] == "akernel"
    assert complete["matches"] == ["awaiting_value"]
    assert inspect["found"] is True
    assert "int" in inspect["data"]["text/plain"]
    assert is_complete["status"] == "incomplete"
    assert comm_info["status"] == "ok"
    assert history["status"] == "ok"
    assert replies[-1]["content"]["status"] == "ok"
    assert "done" in stream_text(iopub_until_idle(kc, cell))


def test_cell_awaits_a_comm_message(kc: BlockingKernelClient) -> None:
    """A cell waits for the frontend's answer on a comm it opened."""
    cell = kc.execute(
        "import anyio, comm\n"
        "answered = anyio.Event()\n"
        "answer = {}\n"
        "asking = comm.create_comm(target_name='akernel.test.ask', data={'q': 'name?'})\n"
        "@asking.on_msg\n"
        "def _(msg):\n"
        "    answer.update(msg['content']['data'])\n"
        "    answered.set()\n"
        "with anyio.fail_after(15):\n"
        "    await answered.wait()\n"
        "print('answer:', answer['name'])"
    )
    comm_id = None
    while comm_id is None:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["msg_type"] == "comm_open" and msg["parent_header"].get("msg_id") == cell:
            assert msg["content"]["data"] == {"q": "name?"}
            comm_id = msg["content"]["comm_id"]
    answer = send_shell(kc, "comm_msg", {"comm_id": comm_id, "data": {"name": "trio"}})
    replies = shell_replies(kc, [cell])
    assert replies[0]["content"]["status"] == "ok", replies[0]["content"]
    messages = iopub_until_idle(kc, cell)
    # The comm message was handled (busy, idle) while the cell was running.
    answer_idle = next(
        i
        for i, m in enumerate(messages)
        if m["parent_header"].get("msg_id") == answer
        and m["msg_type"] == "status"
        and m["content"]["execution_state"] == "idle"
    )
    cell_output = [
        m
        for m in messages
        if m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == cell
    ]
    assert cell_output[0]["content"]["text"] == "answer: trio\n"
    assert answer_idle < messages.index(cell_output[0])


def test_cell_awaits_a_widget_change(kc: BlockingKernelClient) -> None:
    """The ipywidgets case: a cell awaits a value the user sets in the frontend."""
    cell = kc.execute(
        "import anyio, ipywidgets\n"
        "from IPython.display import display\n"
        "picked = anyio.Event()\n"
        "chooser = ipywidgets.IntSlider(value=0)\n"
        "chooser.observe(lambda change: picked.set(), 'value')\n"
        "display(chooser)\n"
        "with anyio.fail_after(15):\n"
        "    await picked.wait()\n"
        "print('picked', chooser.value)"
    )
    comm_id = None
    while comm_id is None:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if (
            msg["msg_type"] == "comm_open"
            and msg["parent_header"].get("msg_id") == cell
            and msg["content"]["data"]["state"].get("_model_name") == "IntSliderModel"
        ):
            comm_id = msg["content"]["comm_id"]
    update = {
        "comm_id": comm_id,
        "data": {"method": "update", "state": {"value": 7}, "buffer_paths": []},
    }
    send_shell(kc, "comm_msg", update)
    reply = get_reply(kc, cell)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert "picked 7\n" in stream_text(
        [m for m in iopub_until_idle(kc, cell) if m["parent_header"].get("msg_id") == cell]
    )


def test_nothing_overtakes_a_queued_execute(kc: BlockingKernelClient) -> None:
    """A request sent after a queued (not yet started) execute waits for it to start."""
    run_ok(
        kc,
        "import anyio, comm\n"
        "order = []\n"
        "def _record(c, open_msg):\n"
        "    c.on_msg(lambda msg: order.append(msg['content']['data']['tag']))\n"
        "comm.get_comm_manager().register_target('akernel.test.order', _record)",
    )
    comm_id = "order-comm"
    opened = send_shell(kc, "comm_open", {"comm_id": comm_id, "target_name": "akernel.test.order"})
    iopub_until_idle(kc, opened)
    first = kc.execute("print('first', flush=True)\nawait anyio.sleep(1)\norder.append('first')")
    wait_for_stream(kc, first, "first")
    during = send_shell(kc, "comm_msg", {"comm_id": comm_id, "data": {"tag": "during first"}})
    info_before = kc.kernel_info()
    second = kc.execute("order.append('second')")
    after = send_shell(kc, "comm_msg", {"comm_id": comm_id, "data": {"tag": "after second"}})
    info_after = kc.kernel_info()
    replies = shell_replies(kc, [info_before, first, second, info_after])
    assert [r["parent_header"]["msg_id"] for r in replies] == [
        info_before,
        first,
        second,
        info_after,
    ]
    iopub_until_idle(kc, after)
    assert user_value(kc, "order") == "['during first', 'first', 'second', 'after second']"
    assert during  # handled while the first cell awaited: first in ``order``


def test_failed_cell_aborts_the_execute_waiting_behind_it(kc: BlockingKernelClient) -> None:
    """stop_on_error: an execute queued behind an awaiting cell that fails is aborted,
    other requests queued with it are answered, and the next execute runs."""
    run_ok(kc, "import anyio\nran_after_error = False")
    failing = kc.execute("print('failing', flush=True)\nawait anyio.sleep(0.5)\n1/0")
    wait_for_stream(kc, failing, "failing")
    queued = kc.execute("ran_after_error = True")
    info = kc.kernel_info()
    replies = shell_replies(kc, [failing, queued, info])
    by_id = {r["parent_header"]["msg_id"]: r["content"] for r in replies}
    assert by_id[failing]["status"] == "error"
    assert by_id[failing]["ename"] == "ZeroDivisionError"
    assert by_id[queued]["status"] == "aborted"
    assert by_id[info]["status"] == "ok"
    iopub_until_idle(kc, info)
    assert user_value(kc, "ran_after_error") == "False"


def test_comm_handler_sees_context_variables_of_cells(kc: BlockingKernelClient) -> None:
    """Comm handlers run in the cells' context, also while a cell awaits."""
    run_ok(
        kc,
        "import anyio, comm, contextvars\n"
        "flavour = contextvars.ContextVar('flavour', default='unset')\n"
        "flavour.set('from a cell')\n"
        "tasted = []\n"
        "def _taste(c, open_msg):\n"
        "    c.on_msg(lambda msg: tasted.append(flavour.get()))\n"
        "comm.get_comm_manager().register_target('akernel.test.ctx', _taste)",
    )
    comm_id = "ctx-comm"
    iopub_until_idle(
        kc, send_shell(kc, "comm_open", {"comm_id": comm_id, "target_name": "akernel.test.ctx"})
    )
    iopub_until_idle(kc, send_shell(kc, "comm_msg", {"comm_id": comm_id, "data": {}}))
    cell = kc.execute("print('waiting', flush=True)\nawait anyio.sleep(1)")
    wait_for_stream(kc, cell, "waiting")
    send_shell(kc, "comm_msg", {"comm_id": comm_id, "data": {}})
    assert get_reply(kc, cell)["content"]["status"] == "ok"
    iopub_until_idle(kc, cell)
    assert user_value(kc, "tasted") == "['from a cell', 'from a cell']"


def test_interrupting_a_cell_that_awaits_a_comm(fresh_kernel) -> None:
    km, kc = fresh_kernel
    cell = kc.execute(
        "import anyio\nnever = anyio.Event()\nprint('waiting', flush=True)\nawait never.wait()"
    )
    wait_for_stream(kc, cell, "waiting")
    info = kc.kernel_info()
    assert get_reply(kc, info)["content"]["status"] == "ok"
    km.interrupt_kernel()
    reply = get_reply(kc, cell)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    iopub_until_idle(kc, cell)
    assert user_value(kc, "1 + 1") == "2"


def test_requests_sent_with_a_cell_wait_for_it_to_start(kc: BlockingKernelClient) -> None:
    """A comm_open sent right behind the cell that registers its target is handled
    after the cell started (target registered), and while it awaits."""
    cell = kc.execute(
        "import anyio, comm\n"
        "greeted = anyio.Event()\n"
        "def _greeter(c, open_msg):\n"
        "    c.on_msg(lambda msg: greeted.set())\n"
        "comm.get_comm_manager().register_target('akernel.test.race', _greeter)\n"
        "with anyio.fail_after(15):\n"
        "    await greeted.wait()\n"
        "print('greeted')"
    )
    # No waiting: both are on the socket before the cell has started.
    send_shell(kc, "comm_open", {"comm_id": "race-comm", "target_name": "akernel.test.race"})
    send_shell(kc, "comm_msg", {"comm_id": "race-comm", "data": {}})
    reply = get_reply(kc, cell)
    assert reply["content"]["status"] == "ok", reply["content"]
    outputs = [m for m in iopub_until_idle(kc, cell) if m["parent_header"].get("msg_id") == cell]
    assert stream_text(outputs) == "greeted\n"
