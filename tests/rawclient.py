"""Raw frames on a kernel client's sockets, for tests that send what a client should not."""

from __future__ import annotations

import json
from typing import Any

from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.session import DELIM

from .utils import TIMEOUT


def channel_of(kc: BlockingKernelClient, channel: str):
    return kc.shell_channel if channel == "shell" else kc.control_channel


def build_frames(
    kc: BlockingKernelClient, msg_type: str, content: dict | None = None
) -> tuple[str, list[bytes]]:
    """A correctly signed request, as ``(msg_id, frames)`` (no identity frames)."""
    msg = kc.session.msg(msg_type, content or {})
    return msg["header"]["msg_id"], kc.session.serialize(msg)


def signed_frames(kc: BlockingKernelClient, *parts: Any) -> list[bytes]:
    """Frames signed with the client's key over arbitrary JSON frames.

    ``parts`` are header, parent_header, metadata, content (missing ones are
    ``{}``); bytes are used as they are, anything else is JSON-encoded.
    """
    parts = (*parts, *[{}] * (4 - len(parts)))
    msg_frames = [p if isinstance(p, bytes) else json.dumps(p).encode() for p in parts]
    return [DELIM, kc.session.sign(msg_frames), *msg_frames]


def send_raw(kc: BlockingKernelClient, channel: str, frames: list[bytes]) -> None:
    channel_of(kc, channel).socket.send_multipart(frames)


def request(kc: BlockingKernelClient, channel: str, msg_type: str, content: dict | None = None):
    """Send a normal request on ``channel``; return its msg_id."""
    msg = kc.session.msg(msg_type, content or {})
    channel_of(kc, channel).send(msg)
    return msg["header"]["msg_id"]


def replies_until(
    kc: BlockingKernelClient, channel: str, msg_id: str, timeout: float = TIMEOUT
) -> list[dict]:
    """Every reply on ``channel`` up to and including the reply to ``msg_id``."""
    get = kc.get_shell_msg if channel == "shell" else kc.get_control_msg
    replies = []
    while True:
        reply = get(timeout=timeout)
        replies.append(reply)
        if reply["parent_header"].get("msg_id") == msg_id:
            return replies
