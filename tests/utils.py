"""Helpers for talking to a kernel in tests."""

from __future__ import annotations

import time
from typing import Any

import psutil
from jupyter_client.blocking import BlockingKernelClient

TIMEOUT = 20


def is_idle_of(msg: dict, msg_id: str) -> bool:
    """Whether ``msg`` is the idle status that ends request ``msg_id``."""
    return (
        msg["msg_type"] == "status"
        and msg["content"]["execution_state"] == "idle"
        and msg["parent_header"].get("msg_id") == msg_id
    )


def iopub_until_idle(kc: BlockingKernelClient, msg_id: str, timeout: float = TIMEOUT) -> list[dict]:
    """Every IOPub message, whatever its parent, up to the idle status of ``msg_id``."""
    received = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        received.append(msg)
        if is_idle_of(msg, msg_id):
            return received


def collect_iopub(kc: BlockingKernelClient, msg_id: str, timeout: float = TIMEOUT) -> list[dict]:
    """IOPub messages whose parent is ``msg_id``, up to and including its idle."""
    return [
        m
        for m in iopub_until_idle(kc, msg_id, timeout)
        if m["parent_header"].get("msg_id") == msg_id
    ]


def get_reply(
    kc: BlockingKernelClient, msg_id: str, timeout: float = TIMEOUT, channel: str = "shell"
) -> dict:
    """The reply to ``msg_id`` on ``channel``, skipping replies to other requests."""
    get = kc.get_shell_msg if channel == "shell" else kc.get_control_msg
    while True:
        reply = get(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def execute(
    kc: BlockingKernelClient, code: str, timeout: float = TIMEOUT, **kwargs: Any
) -> tuple[dict, list[dict]]:
    """Run ``code``; return its execute_reply and its IOPub messages."""
    msg_id = kc.execute(code, **kwargs)
    reply = get_reply(kc, msg_id, timeout)
    outputs = collect_iopub(kc, msg_id, timeout)
    return reply, outputs


def run_ok(kc: BlockingKernelClient, code: str) -> list[dict]:
    """Execute ``code``, which must succeed; return its IOPub messages."""
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    return outputs


def printed(kc: BlockingKernelClient, code: str) -> str:
    """Execute ``code``, which must succeed; the text it printed."""
    return stream_text(run_ok(kc, code))


def wait_for_stream(kc: BlockingKernelClient, msg_id: str, text: str) -> list[dict]:
    """IOPub messages up to the stream output containing ``text`` of request ``msg_id``."""
    seen: list[dict] = []
    deadline = time.monotonic() + TIMEOUT
    while True:
        assert time.monotonic() < deadline, f"no {text!r} from {msg_id}: {seen}"
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        seen.append(msg)
        if (
            msg["msg_type"] == "stream"
            and msg["parent_header"].get("msg_id") == msg_id
            and text in msg["content"]["text"]
        ):
            return seen


def wait_for_status(kc: BlockingKernelClient, msg_id: str, state: str) -> None:
    """Read IOPub up to the ``state`` status (busy, idle) of request ``msg_id``."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        assert time.monotonic() < deadline, f"no {state!r} status for {msg_id}"
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if (
            msg["msg_type"] == "status"
            and msg["parent_header"].get("msg_id") == msg_id
            and msg["content"]["execution_state"] == state
        ):
            return


def msg_types(outputs: list[dict]) -> list[str]:
    return [m["msg_type"] for m in outputs]


def stream_text(outputs: list[dict], name: str = "stdout") -> str:
    return "".join(
        m["content"]["text"]
        for m in outputs
        if m["msg_type"] == "stream" and m["content"]["name"] == name
    )


def is_gone(process: psutil.Process) -> bool:
    """Whether ``process`` has exited (an unreaped zombie counts as exited)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(process: psutil.Process, timeout: float = 30) -> bool:
    """Wait up to ``timeout`` seconds for ``process`` to exit; whether it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_gone(process):
            return True
        time.sleep(0.1)
    return is_gone(process)


def user_value(kc: BlockingKernelClient, expression: str) -> str:
    """The text/plain repr of ``expression`` evaluated in the kernel."""
    reply, _ = execute(kc, "", silent=True, user_expressions={"v": expression})
    assert reply["content"]["status"] == "ok", reply["content"]
    result = reply["content"]["user_expressions"]["v"]
    assert result["status"] == "ok", result
    return result["data"]["text/plain"]
