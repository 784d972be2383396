"""ipyparallel's requests: ``apply_request`` on shell, ``abort_request`` and
``clear_request`` on control, and the reply metadata its schedulers need.

Any kernel serves them (clients may speak ``apply_request`` directly); an
engine additionally tags every message with its uuid (see the session's
default metadata) and reports ``engine_info`` with its errors. ipyparallel's
serialization is imported on first use: it is only needed by clients that
send these requests, and they have it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..channels import RequestDispatcher
from ..wire import Message, utcnow_iso
from .interrupt import call_user_function
from .shell import AkernelShell

log = logging.getLogger("akernel.apply")

# Copied from the request into the reply's metadata, for the schedulers.
_PASSED_THROUGH = {
    "is_broadcast": False,
    "is_coalescing": False,
    "original_msg_id": "",
    "label": None,
}


@dataclass
class EngineIdentity:
    """Who this kernel is to an ipyparallel controller."""

    uuid: str
    id: int


class ApplyHandlers:
    """``apply_request`` (shell), ``abort_request`` and ``clear_request`` (control)."""

    def __init__(
        self,
        shell: AkernelShell,
        dispatcher: RequestDispatcher,
        engine: EngineIdentity | None = None,
    ) -> None:
        self.shell = shell
        self.dispatcher = dispatcher
        self.engine = engine

    # -- metadata -------------------------------------------------------------

    def reply_metadata(
        self, request: Message, reply: dict[str, Any], started: str
    ) -> dict[str, Any]:
        """Metadata of an execute or apply reply, as ipyparallel's schedulers read it."""
        requested = request.metadata
        metadata: dict[str, Any] = {
            "started": started,
            "dependencies_met": True,
            "status": reply["status"],
        }
        for key, default in _PASSED_THROUGH.items():
            metadata[key] = requested.get(key, default)
        if reply["status"] == "error":
            if reply.get("ename") == "UnmetDependency":
                metadata["dependencies_met"] = False
            if self.engine is not None:
                metadata["engine_info"] = self.engine_info()
        return metadata

    def aborted_metadata(self, request: Message) -> dict[str, Any]:
        """Metadata of an ``aborted`` reply: the broadcast scheduler matches
        replies to requests by ``original_msg_id``, and drops the rest."""
        return self.reply_metadata(request, {"status": "aborted"}, utcnow_iso())

    def engine_info(self, method: str | None = None) -> dict[str, Any]:
        assert self.engine is not None
        info: dict[str, Any] = {"engine_uuid": self.engine.uuid, "engine_id": self.engine.id}
        if method:
            info["method"] = method
        return info

    # -- shell ------------------------------------------------------------------

    def apply_request(self, msg: Message) -> None:
        """Call a serialized function with serialized arguments in the user
        namespace, and reply with the serialized result."""
        from ipyparallel.serialize import serialize_object, unpack_apply_message

        started = utcnow_iso()
        shell = self.shell
        interrupts = shell.interrupts
        result_buffers: list[Any] = []
        try:
            function, args, kwargs = unpack_apply_message(
                list(msg.buffers), shell.user_global_ns, copy=False
            )
            if interrupts is not None:
                interrupts.executing = True
            try:
                result = call_user_function(function, args, kwargs)
            finally:
                if interrupts is not None:
                    interrupts.executing = False
                    interrupts.pending = False
            result_buffers = serialize_object(result)
        except BaseException as error:  # reported to the client, as a cell's error
            reply = self._error_reply(error)
        else:
            reply = {"status": "ok"}
        sys.stdout.flush()
        sys.stderr.flush()
        self.dispatcher.reply(
            msg,
            "apply_reply",
            reply,
            metadata=self.reply_metadata(msg, reply, started),
            buffers=result_buffers,
        )

    def _error_reply(self, error: BaseException) -> dict[str, Any]:
        shell = self.shell
        shell.last_error = None
        tb = error.__traceback__
        shell.showtraceback((type(error), error, tb.tb_next if tb is not None else None))
        content = dict(shell.last_error or {})
        try:
            evalue = str(error)
        except Exception as str_error:
            evalue = f"(str() of the error failed: {str_error})"
        reply: dict[str, Any] = {
            "status": "error",
            "ename": type(error).__name__,
            "evalue": evalue,
            "traceback": content.get("traceback", []),
        }
        if self.engine is not None:
            reply["engine_info"] = self.engine_info(method="apply")
        return reply

    # -- data publication ---------------------------------------------------------

    def publish_data(self, data: dict[str, Any]) -> None:
        """Send ``data`` to the client of the current request as a ``data_message``
        (what ``ipyparallel.datapub.publish_data`` does on ipykernel engines)."""
        from ipyparallel.serialize import serialize_object

        router = self.shell.router
        if router is not None:
            router.publish("data_message", {"keys": list(data)}, buffers=serialize_object(data))

    def install_data_publisher(self) -> Callable[[], None]:
        """Make ``ipyparallel.datapub.publish_data`` publish through this kernel
        (ipyparallel's own looks up ipykernel's shell); return the undo."""
        import ipyparallel.datapub as datapub

        original = datapub.publish_data
        datapub.publish_data = self.publish_data
        return lambda: setattr(datapub, "publish_data", original)

    # -- control (called on the control thread) ------------------------------

    def abort(self, msg_ids: list[str] | str | None) -> None:
        """Abort the given requests when their turn comes (all queued ones if none)."""
        if isinstance(msg_ids, str):
            msg_ids = [msg_ids]
        if msg_ids:
            self.dispatcher.abort_ids(str(m) for m in msg_ids)
        else:
            self.dispatcher.abort_waiting_soon()

    def clear(self) -> None:
        """Clear the user namespace (right away, as ipykernel does: a client
        waits for the reply before it sends the next request)."""
        self.shell.reset(new_session=False)
