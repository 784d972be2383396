"""Helpers for talking to a kernel in tests."""

from __future__ import annotations

from typing import Any

from jupyter_client.blocking import BlockingKernelClient

TIMEOUT = 20


def collect_iopub(kc: BlockingKernelClient, msg_id: str, timeout: float = TIMEOUT) -> list[dict]:
    """IOPub messages whose parent is ``msg_id``, up to and including its idle."""
    outputs = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        outputs.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return outputs


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


def msg_types(outputs: list[dict]) -> list[str]:
    return [m["msg_type"] for m in outputs]


def stream_text(outputs: list[dict], name: str = "stdout") -> str:
    return "".join(
        m["content"]["text"]
        for m in outputs
        if m["msg_type"] == "stream" and m["content"]["name"] == name
    )
