"""Signing, packing and unpacking of message frames.

The frame layout on every socket is::

    [identity, ..., b"<IDS|MSG>", signature, header, parent_header, metadata, content, buffer, ...]

where ``signature`` is the hex HMAC of the four JSON frames. ``Session`` is
interoperable byte for byte with ``jupyter_client.session.Session`` but keeps
the hot path lean: one precomputed HMAC object copied per message, orjson,
headers built as plain dicts, no date parsing on receipt.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from . import jsonutil
from .errors import InvalidSignature, MalformedMessage, ReplayedMessage
from .message import DELIMITER, PROTOCOL_VERSION, Message, new_id, utcnow_iso

_EMPTY_DICT = b"{}"
_REQUIRED_HEADER_FIELDS = ("msg_id", "msg_type", "session")
# Headers are flat; jupyter_client fails to read a parent header nested ~500 deep.
_MAX_HEADER_NESTING = 32


def _nesting(value: Any, limit: int = _MAX_HEADER_NESTING + 1) -> int:
    """How deeply ``value`` nests lists and dicts (counting stops past ``limit``)."""
    if isinstance(value, dict):
        children: Any = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return 0
    if limit <= 0:
        return 1
    return 1 + max((_nesting(child, limit - 1) for child in children), default=0)


def digest_for(signature_scheme: str) -> Any:
    """The hashlib constructor for ``"hmac-<digest>"``; ``ValueError`` naming
    the problem if the scheme cannot sign messages."""
    scheme, _, digest_name = signature_scheme.partition("-")
    if scheme != "hmac" or not digest_name:
        raise ValueError(f"unsupported signature scheme {signature_scheme!r} (hmac-<digest>)")
    digestmod = getattr(hashlib, digest_name, None)
    if digestmod is None or not callable(digestmod):
        raise ValueError(f"unknown digest {digest_name!r} in signature scheme {signature_scheme!r}")
    try:
        # Extendable-output digests (shake_*) cannot be used with HMAC.
        hmac.new(b"key", b"", digestmod).hexdigest()
    except (TypeError, ValueError):
        raise ValueError(
            f"digest {digest_name!r} cannot sign messages (signature scheme"
            f" {signature_scheme!r}): use a fixed-size digest such as sha256"
        ) from None
    return digestmod


def _as_bytes(frame: Any) -> bytes:
    return frame if isinstance(frame, bytes) else bytes(frame)


class SignatureHistory:
    """A bounded memory of accepted signatures, to reject replays.

    The shell and control threads verify messages concurrently: the check
    and the insertion are one step under a lock, so a message replayed on
    both channels at once is still accepted only once.
    """

    def __init__(self, size: int = 2**16, seen: Iterable[bytes] = ()) -> None:
        self.size = size
        self._order: deque[bytes] = deque(maxlen=size)
        self._seen: set[bytes] = set()
        self._lock = threading.Lock()
        for signature in seen:
            self._remember(signature)

    def check_and_add(self, signature: bytes) -> None:
        """Remember ``signature``; ``ReplayedMessage`` if it was seen before."""
        with self._lock:
            if signature in self._seen:
                raise ReplayedMessage("signature already seen: message replayed")
            self._remember(signature)
            self.accepted(signature)

    def _remember(self, signature: bytes) -> None:
        if self.size <= 0:
            return
        if len(self._order) == self.size:
            self._seen.discard(self._order[0])
        self._order.append(signature)
        self._seen.add(signature)

    def accepted(self, signature: bytes) -> None:
        """Called with each newly accepted signature, under the lock (for
        subclasses)."""

    def recent(self) -> list[bytes]:
        """The remembered signatures, oldest first."""
        return list(self._order)


class Session:
    """Builds, signs, packs and unpacks messages for one kernel session.

    ``key`` empty means messages are neither signed nor verified, as the
    protocol specifies. ``signature_scheme`` is ``"hmac-<digest>"`` with any
    digest name :mod:`hashlib` knows. ``replay_history`` is how many accepted
    signatures to remember (a replayed message is rejected), or the
    :class:`SignatureHistory` to remember them in.
    """

    def __init__(
        self,
        key: bytes = b"",
        signature_scheme: str = "hmac-sha256",
        *,
        session_id: str | None = None,
        username: str = "akernel",
        replay_history: int | SignatureHistory = 2**16,
        default_metadata: dict[str, Any] | None = None,
    ) -> None:
        digestmod = digest_for(signature_scheme)
        self.key = key
        self.signature_scheme = signature_scheme
        self.session_id = session_id or new_id()
        self.username = username
        self._hmac = hmac.new(key, digestmod=digestmod) if key else None
        self._history = (
            replay_history
            if isinstance(replay_history, SignatureHistory)
            else SignatureHistory(replay_history)
        )
        self._counter = 0
        # Merged into every message's metadata (an engine's uuid, for one);
        # messages without metadata of their own reuse its encoding.
        self._default_metadata = dict(default_metadata or {})
        self._default_metadata_frame = (
            jsonutil.dumps(self._default_metadata) if self._default_metadata else _EMPTY_DICT
        )

    # -- building ---------------------------------------------------------

    def _metadata_frame(self, metadata: dict[str, Any] | None) -> bytes:
        if not metadata:
            return self._default_metadata_frame
        if self._default_metadata:
            metadata = {**self._default_metadata, **metadata}
        return jsonutil.dumps(metadata)

    def new_header(self, msg_type: str) -> dict[str, Any]:
        self._counter += 1
        return {
            # Unique: the session id is random, the counter never repeats.
            "msg_id": f"{self.session_id}_{self._counter}",
            "msg_type": msg_type,
            "username": self.username,
            "session": self.session_id,
            "date": utcnow_iso(),
            "version": PROTOCOL_VERSION,
        }

    def sign(self, frames: Sequence[bytes]) -> bytes:
        """The hex HMAC of the given JSON frames (``b""`` when unsigned)."""
        if self._hmac is None:
            return b""
        h = self._hmac.copy()
        for frame in frames:
            h.update(frame)
        return h.hexdigest().encode("ascii")

    def serialize(
        self,
        msg_type: str,
        content: dict[str, Any] | None = None,
        parent: Message | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[Any] | None = None,
        identities: Sequence[bytes] = (),
        header: dict[str, Any] | None = None,
    ) -> list[Any]:
        """Frames for a new message of ``msg_type`` replying to ``parent``."""
        if parent is None:
            parent_frame = _EMPTY_DICT
        elif parent.raw_header is not None:
            parent_frame = parent.raw_header
        else:
            parent_frame = jsonutil.dumps(parent.header)
        msg_frames = [
            jsonutil.dumps(header if header is not None else self.new_header(msg_type)),
            parent_frame,
            self._metadata_frame(metadata),
            jsonutil.dumps(content) if content else _EMPTY_DICT,
        ]
        frames: list[Any] = [*identities, DELIMITER, self.sign(msg_frames), *msg_frames]
        if buffers:
            frames.extend(buffers)
        return frames

    # -- parsing ----------------------------------------------------------

    def deserialize(self, frames: Sequence[Any]) -> Message:
        """Parse and verify received frames; raise a ``WireError`` to reject them.

        Buffers stay as received (zero-copy ``zmq.Frame`` or bytes).
        """
        index = next((i for i, f in enumerate(frames) if _as_bytes(f) == DELIMITER), -1)
        if index < 0:
            raise MalformedMessage("no <IDS|MSG> delimiter in frames")
        identities = [_as_bytes(f) for f in frames[:index]]
        if len(frames) < index + 6:
            raise MalformedMessage(
                f"expected 5 frames after the delimiter, got {len(frames) - index - 1}"
            )
        signature = _as_bytes(frames[index + 1])
        msg_frames = [_as_bytes(f) for f in frames[index + 2 : index + 6]]
        if self._hmac is not None:
            if not signature:
                raise InvalidSignature("unsigned message on a signed session")
            if not hmac.compare_digest(signature, self.sign(msg_frames)):
                raise InvalidSignature("message signature does not match")
            self._history.check_and_add(signature)
        try:
            header, parent_header, metadata, content = (jsonutil.loads(f) for f in msg_frames)
        except (ValueError, TypeError) as e:
            raise MalformedMessage(f"invalid JSON in message frames: {e}") from None
        if not isinstance(header, dict):
            raise MalformedMessage("header is not a JSON object")
        for name in _REQUIRED_HEADER_FIELDS:
            if not isinstance(header.get(name), str):
                raise MalformedMessage(f"header field {name!r} missing or not a string")
        for value in header.values():
            # Every reply echoes the header as its parent: clients would choke on it.
            if isinstance(value, (dict, list)) and _nesting(value) >= _MAX_HEADER_NESTING:
                raise MalformedMessage(f"header nested deeper than {_MAX_HEADER_NESTING} levels")
        for name, value in (
            ("parent_header", parent_header),
            ("metadata", metadata),
            ("content", content),
        ):
            if not isinstance(value, dict):
                raise MalformedMessage(f"{name} is not a JSON object")
        return Message(
            header=header,
            parent_header=parent_header,
            metadata=metadata,
            content=content,
            buffers=list(frames[index + 6 :]),
            identities=identities,
            raw_header=msg_frames[0],
        )
