"""A cell's reply waits for the client's Output widget updates (nbclient misses it otherwise)."""

from __future__ import annotations

from typing import Any

import anyio


class OutputCaptures:
    """Holds back the reply to a cell whose output an Output widget captured
    until the client's updates of the widget have stopped coming in.

    A client that renders an Output widget answers each output the widget
    captures, and each ``clear_output``, by sending the widget's new
    ``outputs`` back as a ``comm_msg`` on the shell channel. nbclient (so
    papermill, ``jupyter execute``) misses a reply that reaches it just before
    it sends one of those (docs/clients.md); a reply sent once they have
    stopped coming comes after its last send. While the reply waits, the
    updates are handled as they arrive (the execute handler is suspended: the
    dispatcher's side reader handles requests, as while a cell awaits). The
    wait ends when none came in for ``quiet`` seconds, so a client that sends
    none costs the cell ``quiet``; ``limit`` bounds it for a client that never
    stops. A cell whose request no Output widget named in its ``msg_id`` pays
    one comparison.
    """

    # nbclient's updates come a millisecond or two apart, now and then 5-15 ms
    # on a loaded machine: 5 ms of quiet still let a few replies through, 10 ms
    # none. It takes nbclient ~0.1 s to answer 200 captured outputs.
    def __init__(self, quiet: float = 0.01, limit: float = 1.0) -> None:
        self.quiet = quiet
        self.limit = limit
        #: The msg_id of the request an Output widget last started capturing output of.
        self.request_id: Any = None
        # Set while the wait runs: an update arrived.
        self._heard: anyio.Event | None = None

    def note_published(self, msg_type: str, data: Any) -> None:
        """Look at a comm message the kernel sends: an Output widget's ``msg_id``
        being set to a request (ipywidgets' ``Output.__enter__``)?"""
        if msg_type == "comm_msg" and type(data) is dict:
            state = data.get("state")
            if type(state) is dict and state.get("msg_id"):
                self.request_id = state["msg_id"]

    def note_received(self, content: Any) -> None:
        """Look at a comm message from the client: an Output widget's new outputs?"""
        if self._heard is None or type(content) is not dict:
            return
        data = content.get("data")
        state = data.get("state") if type(data) is dict else None
        if type(state) is dict and "outputs" in state:
            self._heard.set()

    async def wait_for_client(self) -> None:
        """Wait until no update came in for ``quiet`` seconds, at most ``limit``."""
        self.request_id = None
        deadline = anyio.current_time() + self.limit
        try:
            while (left := deadline - anyio.current_time()) > 0:
                heard = self._heard = anyio.Event()
                with anyio.move_on_after(min(self.quiet, left)):
                    await heard.wait()
                if not heard.is_set():
                    return
        finally:
            self._heard = None
