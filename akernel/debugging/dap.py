"""Debug Adapter Protocol framing and bookkeeping, with no I/O.

DAP messages travel as ``Content-Length: N\\r\\n\\r\\n`` followed by N bytes of
UTF-8 JSON. :class:`DapFramer` turns a byte stream into messages, :func:`encode`
does the reverse, :class:`SequenceMap` keeps the kernel's renumbering of the
requests it forwards, and :func:`response` / :func:`error_response` build replies.
Nothing here touches a socket; the caller moves the bytes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_HEADER_BYTES",
    "DapFramer",
    "DapProtocolError",
    "PendingRequest",
    "SequenceMap",
    "encode",
    "error_response",
    "response",
]

MAX_BODY_BYTES = 64 * 1024 * 1024
"""Largest body accepted; a bigger Content-Length is taken as a corrupt stream."""

MAX_HEADER_BYTES = 64 * 1024
"""Largest header block accepted before the blank line that ends it."""

_HEADER_END = b"\r\n\r\n"
_DIGITS = re.compile(r"[0-9]+")


class DapProtocolError(ValueError):
    """The byte stream does not follow DAP framing, or a message is not a JSON object.

    ``messages`` holds the complete messages decoded from the same ``feed`` call
    before the fault, so that nothing already received is lost.
    """

    def __init__(self, reason: str, messages: list[dict[str, Any]] | None = None) -> None:
        super().__init__(reason)
        self.messages: list[dict[str, Any]] = messages or []


class DapFramer:
    """Split a DAP byte stream into messages.

    Feed bytes as they arrive; every complete message is returned, partial data is
    kept for the next call. After a :class:`DapProtocolError` the framer is
    unusable: once a header or body is wrong the message boundaries are lost, so
    every later ``feed`` raises too and the caller must drop the connection.
    """

    def __init__(self, max_body: int = MAX_BODY_BYTES) -> None:
        self._buffer = bytearray()
        self._max_body = max_body
        self._body_length: int | None = None  # set once a header block is parsed
        self._failure: str | None = None

    @property
    def broken(self) -> bool:
        """True after a protocol error: the stream can no longer be framed."""
        return self._failure is not None

    @property
    def buffered(self) -> int:
        """Number of bytes held while waiting for the rest of a message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Add ``data`` to the stream and return every message it completes."""
        if self._failure is not None:
            raise DapProtocolError(f"DAP stream unusable after an earlier error: {self._failure}")
        self._buffer += data
        messages: list[dict[str, Any]] = []
        try:
            while True:
                message = self._next_message()
                if message is None:
                    return messages
                messages.append(message)
        except DapProtocolError as error:
            self._failure = str(error)
            self._buffer.clear()
            error.messages = messages
            raise

    def _next_message(self) -> dict[str, Any] | None:
        if self._body_length is None:
            end = self._buffer.find(_HEADER_END)
            if end < 0:
                if len(self._buffer) > MAX_HEADER_BYTES:
                    raise DapProtocolError(
                        f"DAP header longer than {MAX_HEADER_BYTES} bytes without a blank line"
                    )
                return None
            self._body_length = self._parse_headers(bytes(self._buffer[:end]))
            del self._buffer[: end + len(_HEADER_END)]
        if len(self._buffer) < self._body_length:
            return None
        body = bytes(self._buffer[: self._body_length])
        del self._buffer[: self._body_length]
        self._body_length = None
        return _decode_body(body)

    def _parse_headers(self, block: bytes) -> int:
        try:
            text = block.decode("ascii")
        except UnicodeDecodeError:
            raise DapProtocolError("DAP header contains non-ASCII bytes") from None
        length: int | None = None
        for line in text.split("\r\n"):
            name, colon, value = line.partition(":")
            if not colon or not name.strip():
                raise DapProtocolError(f"malformed DAP header line {line!r}")
            if name.strip().lower() != "content-length":
                continue  # other headers (Content-Type...) carry nothing we need
            if length is not None:
                raise DapProtocolError("DAP header has more than one Content-Length")
            value = value.strip()
            if not _DIGITS.fullmatch(value):
                raise DapProtocolError(
                    f"DAP Content-Length must be a non-negative integer, got {value!r}"
                )
            length = int(value)
        if length is None:
            raise DapProtocolError("DAP header has no Content-Length")
        if length > self._max_body:
            raise DapProtocolError(
                f"DAP Content-Length {length} exceeds the limit of {self._max_body} bytes"
            )
        return length


def _decode_body(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise DapProtocolError(f"DAP body is not valid UTF-8: {error}") from None
    except ValueError as error:
        raise DapProtocolError(f"DAP body is not valid JSON: {error}") from None
    except RecursionError:
        raise DapProtocolError("DAP body is nested too deeply") from None
    if not isinstance(message, dict):
        raise DapProtocolError(f"DAP body must be a JSON object, got {type(message).__name__}")
    return message


def encode(message: dict[str, Any]) -> bytes:
    """Frame ``message`` as DAP bytes: a Content-Length header and the UTF-8 JSON body."""
    if not isinstance(message, dict):
        raise TypeError(f"a DAP message is a dict, got {type(message).__name__}")
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


@dataclass(frozen=True)
class PendingRequest:
    """A forwarded request waiting for its response."""

    client_seq: int
    """The ``seq`` the client gave the request."""
    request: dict[str, Any]
    """The request as the client sent it."""
    origin: Any
    """Whatever the caller needs to answer it, typically the debug_request message."""


class SequenceMap:
    """Renumber forwarded requests and map their responses back.

    The kernel speaks to the debugger with its own ``seq`` numbers (it also sends
    requests of its own), so each client request is given the next kernel seq on
    the way in; the response's ``request_seq`` is translated back on the way out.
    An entry is removed as soon as its response is resolved.
    """

    def __init__(self, first_seq: int = 1) -> None:
        self._next_seq = first_seq
        self._pending: dict[int, PendingRequest] = {}

    def next_seq(self) -> int:
        """Take the next kernel seq (also for messages the kernel sends itself)."""
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def forward(self, request: dict[str, Any], origin: Any = None) -> dict[str, Any]:
        """Return a copy of ``request`` renumbered with a kernel seq, and remember it."""
        client_seq = request.get("seq")
        if type(client_seq) is not int:
            raise DapProtocolError(f"DAP request needs an integer 'seq', got {client_seq!r}")
        seq = self.next_seq()
        self._pending[seq] = PendingRequest(client_seq, request, origin)
        return {**request, "seq": seq}

    def resolve(self, reply: dict[str, Any]) -> tuple[dict[str, Any], PendingRequest] | None:
        """Map a response back to the client's numbering and forget its request.

        Returns the response with ``request_seq`` set to the client's seq, and the
        pending entry; or None when the response answers no forwarded request
        (one of the kernel's own requests, or an unknown seq).
        """
        pending = self._pending.pop(reply.get("request_seq"), None)  # type: ignore[arg-type]
        if pending is None:
            return None
        return {**reply, "request_seq": pending.client_seq}, pending

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, kernel_seq: object) -> bool:
        return kernel_seq in self._pending


def response(
    request: dict[str, Any],
    body: dict[str, Any] | None = None,
    success: bool = True,
    message: str | None = None,
    *,
    seq: int = 0,
) -> dict[str, Any]:
    """Build the DAP response to ``request``; ``seq`` is the responder's own number."""
    reply: dict[str, Any] = {
        "type": "response",
        "seq": seq,
        "request_seq": request.get("seq", 0),
        "success": success,
        "command": request.get("command", ""),
    }
    if message is not None:
        reply["message"] = message
    if body is not None:
        reply["body"] = body
    return reply


def error_response(request: dict[str, Any], message: str, *, seq: int = 0) -> dict[str, Any]:
    """Build a failed DAP response to ``request`` carrying ``message``."""
    return response(request, success=False, message=message, seq=seq)
