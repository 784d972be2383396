"""``get_ipython().kernel.session`` and ``kernel.iopub_socket``, as ipykernel has them.

Code written for ipykernel publishes its own messages with
``kernel.session.send(kernel.iopub_socket, "display_data", content, parent=...)``
(ipykernel's comms do, and so do extensions and test notebooks). In akernel
the IOPub socket belongs to the IOPub publisher, one ordered stream that any
thread feeds; ``kernel.iopub_socket`` stands for it, and ``session.send`` hands
the message to the publisher, after all output published before it.
"""

from __future__ import annotations

from typing import Any

from ..channels import IOPubPublisher, current_request
from ..wire import Message


class IOPubSocket:
    """What ``kernel.iopub_socket`` is: the destination ``session.send`` publishes to.

    Not a ZeroMQ socket: the publisher's thread owns that one.
    """

    def __init__(self, iopub: IOPubPublisher) -> None:
        self.iopub = iopub

    def __repr__(self) -> str:
        return "<akernel IOPub channel>"


def header_of(parent: Any) -> dict[str, Any]:
    """The header of ``parent``: a message dict, a header dict, a ``Message`` or None."""
    if parent is None:
        return {}
    if isinstance(parent, Message):
        return parent.header
    if not isinstance(parent, dict):
        raise TypeError(f"a parent must be a message or header dict, not {type(parent).__name__}")
    header = parent.get("header", parent)
    if not isinstance(header, dict):
        raise TypeError(f"a parent's header must be a dict, not {type(header).__name__}")
    return header


def as_message(parent: Any, known: tuple[Message | None, ...] = ()) -> Message | None:
    """``parent`` (a message or header dict, as ipykernel's API takes it) as a
    ``Message`` to publish under; one of ``known`` if it is that request
    (which keeps the identities its input requests are routed by)."""
    if isinstance(parent, Message):
        return parent
    header = header_of(parent)
    if not header:
        return None
    msg_id = header.get("msg_id")
    for message in (current_request.get(), *known):
        if message is not None and msg_id is not None and message.msg_id == msg_id:
            return message
    if "msg_type" not in header or "msg_id" not in header:
        raise ValueError("a parent header needs at least msg_id and msg_type")
    fields = parent if isinstance(parent, dict) and "header" in parent else {}
    return Message(
        header=dict(header),
        parent_header=dict(fields.get("parent_header") or {}),
        metadata=dict(fields.get("metadata") or {}),
        content=dict(fields.get("content") or {}),
    )


class KernelSession:
    """The part of jupyter_client's ``Session`` that kernel code uses: ``msg``,
    ``msg_header`` and ``send`` on ``kernel.iopub_socket``.

    The HMAC key is not exposed: messages are signed when they are sent.
    """

    def __init__(self, iopub: IOPubPublisher, iopub_socket: IOPubSocket) -> None:
        self._iopub = iopub
        self._iopub_socket = iopub_socket

    @property
    def session(self) -> str:
        """The session id of the kernel's messages."""
        return self._iopub.session.session_id

    @property
    def username(self) -> str:
        return self._iopub.session.username

    def msg_header(self, msg_type: str) -> dict[str, Any]:
        """A new header for a message of ``msg_type``."""
        return self._iopub.session.new_header(msg_type)

    def msg(
        self,
        msg_type: str,
        content: dict[str, Any] | None = None,
        parent: Any = None,
        header: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A message dict, as ``jupyter_client.Session.msg`` builds it."""
        header = header if header is not None else self.msg_header(msg_type)
        return {
            "header": header,
            "msg_id": header["msg_id"],
            "msg_type": header["msg_type"],
            "parent_header": dict(header_of(parent)),
            "content": {} if content is None else content,
            "metadata": dict(metadata or {}),
        }

    def send(
        self,
        stream: Any,
        msg_or_type: dict[str, Any] | str,
        content: dict[str, Any] | None = None,
        parent: Any = None,
        ident: Any = None,
        buffers: list[Any] | None = None,
        track: bool = False,
        header: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Publish a message on IOPub (``stream`` must be ``kernel.iopub_socket``).

        ``msg_or_type`` is a message dict (from :meth:`msg`) or a message type
        with ``content``; ``parent`` (a message or its header) is the request
        the message belongs to, none if omitted, as in jupyter_client. The
        message goes out after the output published before it, with a header
        of its own; ``ident`` (the ZeroMQ topic) is chosen by the publisher.
        Returns None: jupyter_client returns the message, ``track`` is not
        supported.
        """
        if stream is not self._iopub_socket:
            raise ValueError(
                "akernel's kernel.session.send publishes on IOPub only: pass"
                f" kernel.iopub_socket, not {stream!r} (replies to requests are the kernel's)"
            )
        if isinstance(msg_or_type, dict):
            msg = msg_or_type
            msg_type = msg["header"]["msg_type"] if "header" in msg else msg["msg_type"]
            content = msg.get("content") or {}
            parent_header = msg.get("parent_header") or {}
            metadata = {**(msg.get("metadata") or {}), **(metadata or {})}
        elif isinstance(msg_or_type, str):
            msg_type = msg_or_type
            parent_header = header_of(parent)
        else:
            raise TypeError(
                f"msg_or_type must be a message dict or a type, not {type(msg_or_type).__name__}"
            )
        if not isinstance(content, dict):
            raise TypeError(f"content must be a dict, not {type(content).__name__}")
        self._iopub.publish(
            msg_type,
            content,
            as_message(parent_header),
            metadata=metadata or None,
            buffers=list(buffers) if buffers else None,
        )
