"""The message model and header construction."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

PROTOCOL_VERSION = "5.5"
DELIMITER = b"<IDS|MSG>"


def new_id() -> str:
    """A fresh message or session id: 32 hex digits, like ``uuid4().hex``."""
    return os.urandom(16).hex()


def utcnow_iso() -> str:
    """The current time as ISO 8601 in UTC, the form Jupyter headers use."""
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


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
