"""``get_ipython().kernel``: the parts of ipykernel's kernel object libraries use."""

from __future__ import annotations

from jupyter_client.blocking import BlockingKernelClient

from .utils import TIMEOUT, execute, get_reply, iopub_until_idle, stream_text, user_value


def run(kc: BlockingKernelClient, code: str) -> tuple[dict, list[dict]]:
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply, outputs


def printed(kc: BlockingKernelClient, code: str) -> str:
    return stream_text(run(kc, code)[1])


def parent_id(msg: dict) -> str | None:
    return msg["parent_header"].get("msg_id")


def test_variable_inspector_idiom(kc: BlockingKernelClient) -> None:
    """JupyterLab's variable inspector lists the user's variables this way."""
    out = printed(
        kc,
        "from IPython.core.magics.namespace import NamespaceMagics\n"
        "inspector = NamespaceMagics()\n"
        "inspector.shell = get_ipython().kernel.shell\n"
        "inspected_value = 42\n"
        "print('inspected_value' in inspector.who_ls())\n",
    )
    assert out == "True\n"
    assert user_value(kc, "get_ipython().kernel.shell is get_ipython()") == "True"


def test_session_send_publishes_on_iopub(kc: BlockingKernelClient) -> None:
    """``kernel.session.send(kernel.iopub_socket, ...)``, as ipykernel code does
    it: with a type and content, with a message from ``session.msg``, with
    buffers; the parent given is the parent the client sees."""
    reply, outputs = run(
        kc,
        "kernel = get_ipython().kernel\n"
        "content = {'data': {'text/plain': 'sent by hand'}, 'metadata': {}, 'transient': {}}\n"
        "kernel.session.send(kernel.iopub_socket, 'display_data', content,"
        " parent=kernel.get_parent())\n"
        "msg = kernel.session.msg('display_data', {'data': {'text/plain': 'from msg'},"
        " 'metadata': {}}, parent=kernel.get_parent()['header'])\n"
        "kernel.session.send(kernel.iopub_socket, msg)\n"
        "kernel.session.send(kernel.iopub_socket, 'comm_msg',"
        " content={'comm_id': 'by-hand', 'data': {}}, parent=kernel.get_parent(),"
        " buffers=[b'\\xff\\x00'])\n"
        "print('after')\n",
    )
    kinds = [
        (m["msg_type"], m["content"].get("data")) for m in outputs if m["msg_type"] != "status"
    ]
    assert kinds[1:5] == [
        ("display_data", {"text/plain": "sent by hand"}),
        ("display_data", {"text/plain": "from msg"}),
        ("comm_msg", {}),
        ("stream", None),
    ], kinds
    (by_hand,) = [m for m in outputs if m["msg_type"] == "comm_msg"]
    assert by_hand["buffers"] == [b"\xff\x00"]
    assert all(parent_id(m) == reply["parent_header"]["msg_id"] for m in outputs)


def test_session_send_without_parent(kc: BlockingKernelClient) -> None:
    """No parent given: the message has none, as with jupyter_client's Session."""
    msg_id = kc.execute(
        "kernel = get_ipython().kernel\n"
        "kernel.session.send(kernel.iopub_socket, 'stream',"
        " {'name': 'stdout', 'text': 'orphan message'})\n"
    )
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    received = iopub_until_idle(kc, msg_id)
    orphans = [m for m in received if m["content"].get("text") == "orphan message"]
    assert len(orphans) == 1 and orphans[0]["parent_header"] == {}


def test_session_send_elsewhere_is_refused(kc: BlockingKernelClient) -> None:
    """Only IOPub can be sent to, and saying so beats sending nothing."""
    reply, _ = execute(
        kc, "get_ipython().kernel.session.send(object(), 'display_data', {'data': {}})"
    )
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "ValueError"
    assert "kernel.iopub_socket" in reply["content"]["evalue"]


def test_kernel_attributes(kc: BlockingKernelClient) -> None:
    reply, outputs = run(
        kc,
        "import logging\n"
        "kernel = get_ipython().kernel\n"
        "print(kernel.execution_count)\n"
        "print(kernel.language_info['name'], kernel.language_info['file_extension'])\n"
        "print(isinstance(kernel.log, logging.Logger))\n"
        "import comm\n"
        "print(kernel.comm_manager is comm.get_comm_manager())\n"
        "print(kernel.session.session == kernel.get_parent()['header']['session'] or"
        " kernel.session.session)\n",
    )
    count, language, logger, manager, session = stream_text(outputs).splitlines()
    assert int(count) == reply["content"]["execution_count"]
    assert language == "python .py"
    assert logger == manager == "True"
    # The kernel's session id, not the client's.
    assert session not in ("True", "False", "")
    assert session == outputs[0]["header"]["session"]


def test_get_parent_of_the_shell(kc: BlockingKernelClient) -> None:
    reply, outputs = run(
        kc,
        "kernel = get_ipython().kernel\n"
        "print(kernel.get_parent()['header']['msg_id'])\n"
        "print(kernel.get_parent('shell')['msg_type'])\n",
    )
    msg_id, msg_type = stream_text(outputs).splitlines()
    assert msg_id == reply["parent_header"]["msg_id"]
    assert msg_type == "execute_request"


def test_get_parent_of_control(kc: BlockingKernelClient) -> None:
    """``get_parent("control")`` is the last request on the control channel."""
    msg = kc.session.msg("kernel_info_request", {})
    kc.control_channel.send(msg)
    get_reply(kc, msg["header"]["msg_id"], channel="control")
    out = printed(kc, "print(get_ipython().kernel.get_parent('control')['header']['msg_id'])")
    assert out == msg["header"]["msg_id"] + "\n"


def test_set_parent_routes_output(kc: BlockingKernelClient) -> None:
    """``kernel.set_parent`` and the shell's ``set_thread_parent``/
    ``reset_thread_parent`` make output go to another request (as ipykernel's do)."""
    first, _ = run(kc, "first_parent = get_ipython().kernel.get_parent()")
    first_id = first["parent_header"]["msg_id"]
    msg_id = kc.execute(
        "ip = get_ipython()\n"
        "token = ip.set_thread_parent(first_parent)\n"
        "print('to the first cell')\n"
        "ip.reset_thread_parent(token)\n"
        "print('to this cell')\n"
        "import threading\n"
        "def in_thread():\n"
        "    ip.kernel.set_parent(None, first_parent)\n"
        "    print('thread to the first cell')\n"
        "worker = threading.Thread(target=in_thread)\n"
        "worker.start(); worker.join()\n"
        "print('this cell again')\n"
    )
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    streams = [
        (parent_id(m), m["content"]["text"])
        for m in iopub_until_idle(kc, msg_id, TIMEOUT)
        if m["msg_type"] == "stream"
    ]
    lines = [(parent, line) for parent, text in streams for line in text.splitlines()]
    assert lines == [
        (first_id, "to the first cell"),
        (msg_id, "to this cell"),
        (first_id, "thread to the first cell"),
        (msg_id, "this cell again"),
    ]
