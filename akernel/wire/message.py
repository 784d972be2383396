"""The message model and header construction."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

PROTOCOL_VERSION = "5.5"
DELIMITER = b"<IDS|MSG>"


def new_id() -> str:
    """A fresh message or session id: 32 hex digits, like ``uuid4().hex``."""
    return os.urandom(16).hex()


_second_cache: list = [-1, ""]


def utcnow_iso() -> str:
    """The current time as ISO 8601 in UTC, the form Jupyter headers use.

    Every message header carries one: the formatted second is cached and only
    the microseconds are formatted per call.
    """
    now = time.time()
    second = int(now)
    cache = _second_cache
    if cache[0] != second:
        cache[1] = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        cache[0] = second
    return f"{cache[1]}.{int((now - second) * 1e6):06d}Z"


@dataclass(slots=True)
class Message:
    """One Jupyter message as received or about to be sent.

    ``raw_header`` keeps the header frame exactly as it arrived, so that the
    replies to this message can reuse it as their ``parent_header`` frame
    without encoding it again.
    """

    header: dict[str, Any]
    parent_header: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    content: dict[str, Any] = field(default_factory=dict)
    buffers: list[Any] = field(default_factory=list)
    identities: list[bytes] = field(default_factory=list)
    raw_header: bytes | None = None

    @property
    def msg_type(self) -> str:
        return self.header["msg_type"]

    @property
    def msg_id(self) -> str:
        return self.header["msg_id"]
