"""ipywidgets end to end at the protocol level, the test acting as the frontend.

The client plays the part of JupyterLab's widget manager: it reads comm_open
and comm_msg messages from IOPub and sends state updates back as comm_msg
requests on the shell channel.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import KernelManager

from .conftest import kernel_name
from .utils import (
    TIMEOUT,
    collect_iopub,
    execute,
    get_reply,
    iopub_until_idle,
    is_idle_of,
    printed,
    stream_text,
    wait_for_stream,
)
from .utils import run_ok as run

WIDGET_TARGET = "jupyter.widget"
VIEW_MIME = "application/vnd.jupyter.widget-view+json"


def opened(outputs: list[dict], model_name: str) -> list[dict]:
    """The widget comm_open messages for models named ``model_name``."""
    return [
        m
        for m in outputs
        if m["msg_type"] == "comm_open"
        and m["content"]["target_name"] == WIDGET_TARGET
        and m["content"]["data"]["state"].get("_model_name") == model_name
    ]


def only_opened(outputs: list[dict], model_name: str) -> dict:
    found = opened(outputs, model_name)
    assert len(found) == 1, [m["msg_type"] for m in outputs]
    return found[0]


def comm_msgs(outputs: list[dict], comm_id: str) -> list[dict]:
    return [
        m for m in outputs if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id
    ]


def send_update(
    kc: BlockingKernelClient,
    comm_id: str,
    state: dict[str, Any],
    buffer_paths: list | None = None,
    buffers: list[bytes] | None = None,
) -> list[dict]:
    """Send a frontend state update to widget ``comm_id``; the IOPub messages it caused."""
    content = {
        "comm_id": comm_id,
        "data": {"method": "update", "state": state, "buffer_paths": buffer_paths or []},
    }
    msg = kc.session.msg("comm_msg", content)
    kc.session.send(kc.shell_channel.socket, msg, buffers=buffers)
    msg_id = msg["header"]["msg_id"]
    received = iopub_until_idle(kc, msg_id)
    assert {m["parent_header"].get("msg_id") for m in received} == {msg_id}
    return received


def model_ref(comm_id: str) -> str:
    return f"IPY_MODEL_{comm_id}"


@pytest.fixture(scope="module")
def slider(kernel) -> dict:
    """``s``, an IntSlider created and displayed in the kernel: its comm_open and display."""
    _, kc = kernel
    outputs = run(
        kc,
        "import ipywidgets\n"
        "from IPython.display import display\n"
        "s = ipywidgets.IntSlider(value=1, description='level')\n"
        "display(s)",
    )
    return {"outputs": outputs, "open": only_opened(outputs, "IntSliderModel")}


def test_display_opens_the_model_comm(slider) -> None:
    """comm_open carries the model state; display_data names the same model."""
    outputs, open_msg = slider["outputs"], slider["open"]
    content = open_msg["content"]
    comm_id = content["comm_id"]
    state = content["data"]["state"]
    assert state["value"] == 1
    assert state["description"] == "level"
    assert state["_model_module"] == "@jupyter-widgets/controls"
    assert content["data"]["buffer_paths"] == []
    assert "version" in open_msg["metadata"]
    # The models the slider refers to (layout, style) were opened before it.
    earlier = outputs[: outputs.index(open_msg)]
    earlier_ids = {m["content"]["comm_id"] for m in earlier if m["msg_type"] == "comm_open"}
    for key in ("layout", "style"):
        assert state[key].startswith("IPY_MODEL_")
        assert state[key][len("IPY_MODEL_") :] in earlier_ids
    displays = [m for m in outputs if m["msg_type"] == "display_data"]
    assert len(displays) == 1
    data = displays[0]["content"]["data"]
    assert data[VIEW_MIME]["model_id"] == comm_id
    assert data[VIEW_MIME]["version_major"] == 2
    assert "IntSlider" in data["text/plain"]
    assert outputs.index(open_msg) < outputs.index(displays[0])


def test_frontend_update_fires_kernel_observer(kc, slider) -> None:
    """A comm_msg update from the frontend sets the trait and runs observers."""
    comm_id = slider["open"]["content"]["comm_id"]
    run(kc, "seen = []\ns.observe(lambda change: seen.append(change['new']), names='value')")
    caused = send_update(kc, comm_id, {"value": 7})
    # ipywidgets echoes accepted updates back, attributed to the update request.
    echoes = [m["content"]["data"] for m in comm_msgs(caused, comm_id)]
    assert echoes == [{"method": "echo_update", "state": {"value": 7}, "buffer_paths": []}]
    assert printed(kc, "print(seen, s.value)") == "[7] 7\n"


def test_kernel_update_reaches_frontend(kc, slider) -> None:
    comm_id = slider["open"]["content"]["comm_id"]
    outputs = run(kc, "s.value = 9")
    updates = [m["content"]["data"] for m in comm_msgs(outputs, comm_id)]
    assert updates == [{"method": "update", "state": {"value": 9}, "buffer_paths": []}]


def test_comm_info_lists_widgets(kc, slider) -> None:
    comm_id = slider["open"]["content"]["comm_id"]
    for target in (WIDGET_TARGET, None):
        msg_id = kc.comm_info(target)
        reply = get_reply(kc, msg_id)
        collect_iopub(kc, msg_id)
        comms = reply["content"]["comms"]
        assert comms[comm_id] == {"target_name": WIDGET_TARGET}
        layout = slider["open"]["content"]["data"]["state"]["layout"][len("IPY_MODEL_") :]
        assert comms[layout] == {"target_name": WIDGET_TARGET}
    msg_id = kc.comm_info("no.such.target")
    assert get_reply(kc, msg_id)["content"]["comms"] == {}
    collect_iopub(kc, msg_id)


IMAGE_BYTES = bytes(range(256)) + b"\x00\xff" * 100


def test_binary_buffers_both_ways(kc) -> None:
    """Bytes traits travel as binary buffers, in comm_open, comm_msg, and back."""
    outputs = run(
        kc,
        "import ipywidgets\n"
        f"img = ipywidgets.Image(value={IMAGE_BYTES!r}, format='png')\n"
        "img_values = []\n"
        "img.observe(lambda change: img_values.append(change['new']), names='value')",
    )
    open_msg = only_opened(outputs, "ImageModel")
    comm_id = open_msg["content"]["comm_id"]
    assert open_msg["content"]["data"]["buffer_paths"] == [["value"]]
    assert "value" not in open_msg["content"]["data"]["state"]
    assert [bytes(b) for b in open_msg["buffers"]] == [IMAGE_BYTES]

    outputs = run(kc, "img.value = bytes(range(255, -1, -1))")
    (update,) = comm_msgs(outputs, comm_id)
    assert update["content"]["data"]["method"] == "update"
    assert update["content"]["data"]["buffer_paths"] == [["value"]]
    assert [bytes(b) for b in update["buffers"]] == [bytes(range(255, -1, -1))]

    from_frontend = b"\x89PNG\r\n\x1a\n" + bytes(1000) + b"end"
    send_update(kc, comm_id, {}, buffer_paths=[["value"]], buffers=[from_frontend])
    check = "print(img.value == img_values[-1], len(img.value), bytes(img.value)[-3:])"
    assert printed(kc, check) == f"True {len(from_frontend)} b'end'\n"
    assert printed(kc, f"print(bytes(img.value) == {from_frontend!r})") == "True\n"


def test_close_sends_comm_close(kc) -> None:
    outputs = run(kc, "import ipywidgets\nbutton = ipywidgets.Button(description='go')")
    comm_id = only_opened(outputs, "ButtonModel")["content"]["comm_id"]
    outputs = run(kc, "button.close()")
    closes = [m for m in outputs if m["msg_type"] == "comm_close"]
    assert [m["content"]["comm_id"] for m in closes] == [comm_id]
    msg_id = kc.comm_info(WIDGET_TARGET)
    assert comm_id not in get_reply(kc, msg_id)["content"]["comms"]
    collect_iopub(kc, msg_id)
    # Closing twice sends nothing more.
    outputs = run(kc, "button.close()")
    assert not [m for m in outputs if m["msg_type"] == "comm_close"]


def test_frontend_close_is_handled(kc) -> None:
    """comm_close from the frontend closes the kernel-side widget comm."""
    outputs = run(kc, "import ipywidgets\nchecked = ipywidgets.Checkbox(value=True)")
    comm_id = only_opened(outputs, "CheckboxModel")["content"]["comm_id"]
    msg = kc.session.msg("comm_close", {"comm_id": comm_id, "data": {}})
    kc.shell_channel.send(msg)
    iopub_until_idle(kc, msg["header"]["msg_id"])
    msg_id = kc.comm_info(WIDGET_TARGET)
    assert comm_id not in get_reply(kc, msg_id)["content"]["comms"]
    collect_iopub(kc, msg_id)


INTERACT_CODE = (
    "import ipywidgets\n"
    "def double(x=3):\n"
    "    print('x is', x)\n"
    "    return x * 2\n"
    "demo = ipywidgets.interact(double, x=(0, 10))"
)


def captured_output(messages: list[dict], output_id: str, parent_id: str) -> list[dict]:
    """The messages an Output widget frontend would capture in ``messages``.

    A frontend's Output widget takes the output whose parent is the request
    the widget's ``msg_id`` state names, from when that state is set until it
    is cleared.
    """
    captured, capturing = [], ""
    for m in messages:
        if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == output_id:
            state = m["content"]["data"].get("state", {})
            if "msg_id" in state:
                capturing = state["msg_id"]
                continue
        if capturing and m["parent_header"].get("msg_id") == capturing:
            captured.append(m)
    assert capturing == "", "the Output widget was left capturing"
    for m in captured:
        assert m["parent_header"]["msg_id"] == parent_id
    return captured


def test_interact(kc) -> None:
    """interact builds a slider and an Output widget that captures the function's output,
    first when the cell runs and again when the frontend moves the slider."""
    msg_id = kc.execute(INTERACT_CODE)
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    outputs = collect_iopub(kc, msg_id)
    slider_open = only_opened(outputs, "IntSliderModel")
    slider_id = slider_open["content"]["comm_id"]
    output_id = only_opened(outputs, "OutputModel")["content"]["comm_id"]
    box_id = only_opened(outputs, "VBoxModel")["content"]["comm_id"]
    # The box holds the slider and the output, and is what the cell displays.
    children = [
        m["content"]["data"]["state"]["children"]
        for m in comm_msgs(outputs, box_id)
        if "children" in m["content"]["data"]["state"]
    ]
    assert children[-1] == [model_ref(slider_id), model_ref(output_id)]
    displays = [
        m for m in outputs if m["msg_type"] == "display_data" and VIEW_MIME in m["content"]["data"]
    ]
    assert [m["content"]["data"][VIEW_MIME]["model_id"] for m in displays] == [box_id]

    captured = captured_output(outputs, output_id, msg_id)
    assert stream_text(captured) == "x is 3\n"
    results = [
        m["content"]["data"]["text/plain"] for m in captured if m["msg_type"] == "display_data"
    ]
    assert results == ["6"]

    caused = send_update(kc, slider_id, {"value": 5})
    update_id = caused[0]["parent_header"]["msg_id"]
    captured = captured_output(caused, output_id, update_id)
    assert stream_text(captured) == "x is 5\n"
    results = [
        m["content"]["data"]["text/plain"] for m in captured if m["msg_type"] == "display_data"
    ]
    assert results == ["10"]
    assert printed(kc, "print(demo.widget.result)") == "10\n"


OUTPUT_WIDGET_CELL = (
    "with out:\n"
    "    print('first')\n"
    "    out.clear_output(wait=True)\n"
    "    print('second')\n"
    "print('in the cell')\n"
    "import time\n"
    "time.sleep(0.2)  # the client's updates arrive while the cell still runs"
)


def test_output_widget_messages_in_the_order_nbclient_needs(kc) -> None:
    """What a headless client like nbclient relies on to capture an Output widget.

    nbclient stops reading a cell's IOPub at its idle status and files a
    message under the Output widget only between the comm_msg that sets the
    widget's ``msg_id`` and the one that clears it; for each output it takes
    in, it sends the widget's new ``outputs`` back as a comm_msg on the shell
    channel, while the cell may still run. So: the captured outputs, in
    program order, inside that bracket (stream output is batched: it must
    still go out before the comm_msg that follows it); nothing of the cell's
    after its idle; the client's updates handled under their own parent.
    """
    opened_outputs = run(kc, "import ipywidgets\nout = ipywidgets.Output()\ndisplay(out)")
    output_id = only_opened(opened_outputs, "OutputModel")["content"]["comm_id"]

    msg_id = kc.execute(OUTPUT_WIDGET_CELL)
    cell, others, updates = [], [], []
    while not cell or not is_idle_of(cell[-1], msg_id):
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") != msg_id:
            others.append(msg)
            continue
        cell.append(msg)
        if msg["msg_type"] == "stream" and msg["content"]["text"] == "first\n":
            # As nbclient's Output widget does, mid-cell.
            state = {"outputs": [{"output_type": "stream", "name": "stdout", "text": "first\n"}]}
            update = kc.session.msg(
                "comm_msg",
                {"comm_id": output_id, "data": {"method": "update", "state": state}},
            )
            kc.shell_channel.send(update)
            updates.append(update["header"]["msg_id"])
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"

    captured = captured_output(cell, output_id, msg_id)
    assert [
        (m["msg_type"], m["content"].get("text", m["content"].get("wait"))) for m in captured
    ] == [("stream", "first\n"), ("clear_output", True), ("stream", "second\n")]
    outside = [m for m in cell if m not in captured and m["msg_type"] == "stream"]
    assert stream_text(outside) == "in the cell\n"

    # The client's update: its own busy/idle (and ipywidgets' echo), before the
    # cell's idle (see test_reply_comes_after_the_clients_output_widget_updates)
    # or, from a client slower than the kernel waits for, after it; nothing more
    # of the cell's anywhere after that idle.
    assert len(updates) == 1
    if not any(is_idle_of(m, updates[0]) for m in others):
        others += iopub_until_idle(kc, updates[0])
    assert all(m["parent_header"].get("msg_id") == updates[0] for m in others), [
        (m["msg_type"], m["parent_header"].get("msg_type")) for m in others
    ]
    assert printed(kc, "print(out.outputs[0]['text'], end='')") == "first\n"


def set_capture_wait(kc: BlockingKernelClient, quiet: float, limit: float) -> None:
    """How long the reply to a cell an Output widget captured waits for the client's
    updates: until none came for ``quiet`` s, at most ``limit`` s."""
    run(
        kc,
        "import comm\n"
        "_captures = comm.get_comm_manager().output_captures\n"
        f"_captures.quiet, _captures.limit = {quiet}, {limit}",
    )


def new_output_widget(kc: BlockingKernelClient) -> str:
    """Display ``out``, an Output widget; its comm id."""
    outputs = run(kc, "import ipywidgets\nout = ipywidgets.Output()\ndisplay(out)")
    return only_opened(outputs, "OutputModel")["content"]["comm_id"]


def send_outputs(kc: BlockingKernelClient, output_id: str, outputs: list, parent: dict) -> str:
    """Send the Output widget's new ``outputs`` as nbclient does (no waiting); the msg_id."""
    content = {
        "comm_id": output_id,
        "data": {"method": "update", "state": {"outputs": outputs}, "buffer_paths": []},
    }
    msg = kc.session.msg("comm_msg", content, parent=parent)
    kc.shell_channel.send(msg)
    return msg["header"]["msg_id"]


def answer_like_nbclient(
    kc: BlockingKernelClient, msg_id: str, output_id: str
) -> tuple[list[dict], list[str]]:
    """Read IOPub up to the idle of cell ``msg_id``, answering each output the
    Output widget captures, and each ``clear_output``, with the widget's new
    ``outputs``, as nbclient's stand-in for the widget does. Returns every
    IOPub message read, and the ids of the updates sent."""
    seen: list[dict] = []
    updates: list[str] = []
    outputs: list[dict] = []
    capturing = False
    while not seen or not is_idle_of(seen[-1], msg_id):
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        seen.append(msg)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        content = msg["content"]
        if msg["msg_type"] == "comm_msg" and content["comm_id"] == output_id:
            state = content["data"].get("state", {})
            if "msg_id" in state:
                capturing = state["msg_id"] == msg_id
        elif capturing and msg["msg_type"] == "clear_output" and not content["wait"]:
            outputs = []
            updates.append(send_outputs(kc, output_id, outputs, msg["parent_header"]))
        elif capturing and msg["msg_type"] == "stream":
            outputs = [*outputs, {"output_type": "stream", **content}]
            updates.append(send_outputs(kc, output_id, outputs, msg["parent_header"]))
    return seen, updates


def test_reply_comes_after_the_clients_output_widget_updates(fresh_kernel) -> None:
    """A cell an Output widget captured gets its reply once the client's updates of
    the widget have come in and been handled: nbclient misses a reply that reaches
    it just before it sends one (docs/clients.md). The cell ends at once, so the
    updates arrive after it: the kernel must wait for them (here for up to a
    second between two, as slow as a client may be)."""
    _, kc = fresh_kernel
    set_capture_wait(kc, quiet=1.0, limit=TIMEOUT / 2)
    output_id = new_output_widget(kc)
    msg_id = kc.execute(
        "with out:\n    print('first')\n    out.clear_output()\n    print('second')"
    )
    seen, updates = answer_like_nbclient(kc, msg_id, output_id)
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    assert len(updates) == 3
    # Each update was handled (its idle published) before the cell's reply and idle.
    handled = [u for u in updates if any(is_idle_of(m, u) for m in seen)]
    assert handled == updates
    assert printed(kc, "print(out.outputs[0]['text'], end='')") == "second\n"


def test_the_wait_for_updates_ends_while_a_client_keeps_sending(fresh_kernel) -> None:
    """A client that never stops sending updates still gets its reply (``limit``)."""
    _, kc = fresh_kernel
    set_capture_wait(kc, quiet=0.5, limit=1.0)
    output_id = new_output_widget(kc)
    msg_id = kc.execute("with out:\n    print('once')")
    wait_for_stream(kc, msg_id, "once")
    outputs = [{"output_type": "stream", "name": "stdout", "text": "once\n"}]
    reply = None
    deadline = time.monotonic() + TIMEOUT
    while reply is None and time.monotonic() < deadline:
        send_outputs(kc, output_id, outputs, {"msg_id": msg_id})
        if kc.shell_channel.socket.poll(50):
            reply = get_reply(kc, msg_id)
    assert reply is not None, "no reply while the client kept sending updates"
    assert reply["content"]["status"] == "ok"


def test_silent_and_later_cells_do_not_wait(fresh_kernel) -> None:
    """Only a non-silent cell an Output widget captured waits for the client (here
    longer than the test waits for a reply): a silent cell publishes nothing a
    client could capture; a capture by a comm message's handler (interact's
    slider moved) names that message, and the cells after it do not wait."""
    _, kc = fresh_kernel
    new_output_widget(kc)
    run(kc, "from ipywidgets import interact\ndemo = interact(lambda x: print(x), x=(0, 9))")
    slider_id = printed(kc, "print(demo.widget.children[0].comm.comm_id, end='')")
    set_capture_wait(kc, quiet=3 * TIMEOUT, limit=3 * TIMEOUT)
    reply, _ = execute(kc, "with out:\n    print('unseen')", silent=True)
    assert reply["content"]["status"] == "ok"
    caused = send_update(kc, slider_id, {"value": 7})
    assert stream_text(caused) == "7\n"
    assert printed(kc, "print('next')") == "next\n"


def test_requests_and_interrupts_during_the_wait(fresh_kernel) -> None:
    """While the reply waits for the client, other requests are answered; an interrupt
    then finds no cell running and is ignored: the cell's reply is ``ok``."""
    km, kc = fresh_kernel
    set_capture_wait(kc, quiet=2.0, limit=TIMEOUT / 2)
    new_output_widget(kc)
    msg_id = kc.execute("with out:\n    print('done')")
    wait_for_stream(kc, msg_id, "done")
    info_id = kc.kernel_info()
    # The cell never awaits: kernel_info is answered first only if the reply waits.
    first = kc.get_shell_msg(timeout=TIMEOUT)
    assert first["parent_header"]["msg_id"] == info_id, first["msg_type"]
    km.interrupt_kernel()
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    iopub_until_idle(kc, msg_id)
    assert printed(kc, "print('after')") == "after\n"


def test_kernel_exits_quietly_with_live_widgets(backend, tmp_path) -> None:
    """Widgets still open when the kernel shuts down leave no errors on its stderr.

    Widgets close their comms when they are collected, which happens while the
    interpreter finalizes, after the kernel stopped serving: that must not try
    to publish. The pause at exit makes the kernel's last message more than a
    second old by then, as it usually is in real use.
    """
    km = KernelManager(kernel_name=kernel_name(backend))
    stderr_path = tmp_path / "kernel-stderr.txt"
    with stderr_path.open("w") as stderr:
        km.start_kernel(stderr=stderr)
    kc = km.client()
    try:
        kc.start_channels()
        kc.wait_for_ready(timeout=30)
        run(
            kc,
            "import atexit, time\n"
            "import ipywidgets\n"
            "from IPython.display import display\n"
            "kept = [ipywidgets.IntSlider(), ipywidgets.Image(value=b'png'), ipywidgets.Output()]\n"
            "display(*kept)\n"
            "atexit.register(time.sleep, 1.1)",
        )
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
        km.cleanup_resources()
    errors = stderr_path.read_text()
    assert "Traceback" not in errors, errors
    assert "Exception ignored" not in errors, errors
