"""The wire layer: Jupyter messages as bytes, with no sockets and no event loop.

Everything here is pure: build headers, pack and unpack the JSON frames, sign
and verify them. The transport layer moves the frames this layer produces.
"""

from .errors import InvalidSignature, MalformedMessage, ReplayedMessage, WireError
from .message import DELIMITER, PROTOCOL_VERSION, Message, new_id, utcnow_iso
from .session import Session, SignatureHistory, digest_for

__all__ = [
    "DELIMITER",
    "PROTOCOL_VERSION",
    "InvalidSignature",
    "MalformedMessage",
    "Message",
    "ReplayedMessage",
    "Session",
    "SignatureHistory",
    "WireError",
    "digest_for",
    "new_id",
    "utcnow_iso",
]
