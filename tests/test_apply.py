"""ipyparallel's requests served by any akernel kernel: apply_request on shell,
abort_request and clear_request on control (both backends).

The client packs and unpacks with ipyparallel's own serialization, as
ipyparallel's clients do.
"""

from __future__ import annotations

import queue
from typing import Any

import pytest
from jupyter_client.blocking import BlockingKernelClient

from .utils import (
    collect_iopub,
    get_reply,
    run_ok,
    stream_text,
    user_value,
    wait_for_status,
    wait_for_stream,
)

serialize = pytest.importorskip("ipyparallel.serialize")
# Functions run with the user namespace as globals when they come from
# ``__main__`` (defined interactively), as in a notebook: ``interactive`` says so.
interactive = pytest.importorskip("ipyparallel").interactive


def send_apply(
    kc: BlockingKernelClient, f: Any, *args: Any, metadata: dict | None = None, **kwargs: Any
) -> str:
    buffers = serialize.pack_apply_message(f, args, kwargs)
    msg = kc.session.msg("apply_request", {}, metadata=metadata or {})
    kc.session.send(kc.shell_channel.socket, msg, buffers=buffers)
    return msg["header"]["msg_id"]


def apply(kc: BlockingKernelClient, f: Any, *args: Any, **kwargs: Any) -> tuple[dict, Any, list]:
    """Apply ``f``; the reply, its unpacked result (None on error), and IOPub messages."""
    msg_id = send_apply(kc, f, *args, **kwargs)
    reply = get_reply(kc, msg_id)
    outputs = collect_iopub(kc, msg_id)
    result = None
    if reply["content"]["status"] == "ok":
        result, _ = serialize.deserialize_object(reply["buffers"])
    return reply, result, outputs


@interactive
def add(a: int, b: int = 0) -> int:
    return a + b


@interactive
def fail(message: str) -> None:
    raise ValueError(message)


def test_apply_returns_the_result(kc: BlockingKernelClient) -> None:
    reply, result, outputs = apply(kc, add, 40, b=2)
    assert reply["msg_type"] == "apply_reply"
    assert reply["content"]["status"] == "ok"
    assert result == 42
    metadata = reply["metadata"]
    assert metadata["status"] == "ok"
    assert metadata["dependencies_met"] is True
    assert "started" in metadata
    states = [m["content"]["execution_state"] for m in outputs if m["msg_type"] == "status"]
    assert states == ["busy", "idle"]


def test_apply_runs_in_the_user_namespace(kc: BlockingKernelClient) -> None:
    """Functions see the namespace as globals: how push/pull work."""
    run_ok(kc, "applied_base = 100")

    @interactive
    def read_base() -> int:
        return applied_base  # type: ignore[name-defined]  # noqa: F821

    reply, result, _ = apply(kc, read_base)
    assert result == 100, reply["content"]

    @interactive
    def write_global(value: int) -> None:
        globals()["from_apply"] = value

    apply(kc, write_global, 7)
    assert user_value(kc, "from_apply") == "7"


def test_apply_error_reply_and_traceback(kc: BlockingKernelClient) -> None:
    reply, _, outputs = apply(kc, fail, "bad input")
    content = reply["content"]
    assert content["status"] == "error"
    assert (content["ename"], content["evalue"]) == ("ValueError", "bad input")
    assert any("bad input" in line for line in content["traceback"])
    assert reply["metadata"]["status"] == "error"
    errors = [m for m in outputs if m["msg_type"] == "error"]
    assert errors and errors[0]["content"]["ename"] == "ValueError"


def test_apply_output_is_stream_output(kc: BlockingKernelClient) -> None:
    @interactive
    def talk() -> str:
        print("from apply")
        return "done"

    _, result, outputs = apply(kc, talk)
    assert result == "done"
    assert stream_text(outputs) == "from apply\n"


def test_scheduler_metadata_is_copied(kc: BlockingKernelClient) -> None:
    md = {"is_broadcast": True, "is_coalescing": True, "original_msg_id": "orig", "label": "l"}
    msg_id = send_apply(kc, add, 1, metadata=md)
    reply = get_reply(kc, msg_id)
    collect_iopub(kc, msg_id)
    for key, value in md.items():
        assert reply["metadata"][key] == value


def test_abort_request_aborts_by_id(kc: BlockingKernelClient) -> None:
    run_ok(kc, "import time")
    blocker = kc.execute("time.sleep(0.5)")
    doomed = send_apply(kc, add, 1)
    survivor = send_apply(kc, add, 2)
    abort = kc.session.msg("abort_request", {"msg_ids": [doomed]})
    kc.control_channel.send(abort)
    assert get_reply(kc, abort["header"]["msg_id"], channel="control")["content"]["status"] == "ok"
    replies = {mid: get_reply(kc, mid) for mid in (blocker, doomed, survivor)}
    statuses = {mid: reply["content"]["status"] for mid, reply in replies.items()}
    assert statuses == {blocker: "ok", doomed: "aborted", survivor: "ok"}
    assert replies[doomed]["metadata"]["status"] == "aborted"
    assert "started" in replies[doomed]["metadata"]
    for mid in (blocker, doomed, survivor):
        collect_iopub(kc, mid)


def test_abort_request_without_ids_aborts_all_waiting(kc: BlockingKernelClient) -> None:
    """Everything that arrived before the abort is aborted, even though the
    kernel only looks at its queue once the blocking cell is done."""
    run_ok(kc, "import time")
    blocker = kc.execute("time.sleep(1)")
    doomed = [send_apply(kc, add, 1), send_apply(kc, add, 2)]
    wait_for_status(kc, blocker, "busy")
    abort = kc.session.msg("abort_request", {"msg_ids": []})
    kc.control_channel.send(abort)
    assert get_reply(kc, abort["header"]["msg_id"], channel="control")["content"]["status"] == "ok"
    assert get_reply(kc, blocker)["content"]["status"] == "ok"
    for mid in doomed:
        assert get_reply(kc, mid)["content"]["status"] == "aborted"
    for mid in (blocker, *doomed):
        collect_iopub(kc, mid)
    assert apply(kc, add, 3)[1] == 3


@interactive
def nap() -> None:
    import time

    print("napping", flush=True)
    time.sleep(60)


@pytest.mark.parametrize("function", ["python", "builtin"])
def test_interrupt_request_interrupts_an_apply(kc: BlockingKernelClient, function: str) -> None:
    """An interrupt raises KeyboardInterrupt in the applied function, even in a
    builtin one (no frame of its own) such as ``time.sleep``."""
    import time

    if function == "python":
        msg_id = send_apply(kc, nap)
        wait_for_stream(kc, msg_id, "napping")
    else:
        msg_id = send_apply(kc, time.sleep, 60)
        wait_for_status(kc, msg_id, "busy")
    reply = None
    # An interrupt that lands before the call has started is ignored: repeat.
    while reply is None:
        interrupt = kc.session.msg("interrupt_request", {})
        kc.control_channel.send(interrupt)
        get_reply(kc, interrupt["header"]["msg_id"], channel="control")
        try:
            reply = get_reply(kc, msg_id, timeout=0.5)
        except queue.Empty:
            pass
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    collect_iopub(kc, msg_id)
    assert apply(kc, add, 5)[1] == 5


def test_clear_request_clears_the_namespace(fresh_kernel) -> None:
    _, kc = fresh_kernel
    run_ok(kc, "to_be_cleared = 1")
    clear = kc.session.msg("clear_request", {})
    kc.control_channel.send(clear)
    assert get_reply(kc, clear["header"]["msg_id"], channel="control")["content"]["status"] == "ok"
    assert user_value(kc, "'to_be_cleared' in globals()") == "False"
