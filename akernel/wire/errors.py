"""Errors raised when incoming frames cannot be accepted."""


class WireError(ValueError):
    """An incoming message was rejected; it must be logged and dropped."""


class MalformedMessage(WireError):
    """Frames that do not form a Jupyter message (no delimiter, bad JSON, ...)."""


class InvalidSignature(WireError):
    """The HMAC signature is missing or does not match the frames."""


class ReplayedMessage(WireError):
    """A signature that was already seen: the message is a replay."""
