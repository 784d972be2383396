"""The heartbeat: a C-level echo on its own thread.

``zmq.proxy_steerable`` echoes every ping back to its sender without taking
the GIL, so the heartbeat answers while Python is busy in user code. A PAIR
control socket lets the owner stop it cleanly.
"""

from __future__ import annotations

import signal
import threading

import zmq


class Heartbeat:
    """Echo thread for a bound ROUTER (kernel) or any socket pair (engine)."""

    def __init__(
        self,
        context: zmq.Context,
        frontend: zmq.Socket,
        backend: zmq.Socket | None = None,
        *,
        capture: zmq.Socket | None = None,
    ):
        """``capture`` (used by the echo thread only) gets a copy of every ping."""
        self._context = context
        self._frontend = frontend
        self._backend = backend if backend is not None else frontend
        self._capture = capture
        address = f"inproc://heartbeat-control-{id(self)}"
        self._control_in = context.socket(zmq.PAIR)
        self._control_in.bind(address)
        self._control_out = context.socket(zmq.PAIR)
        self._control_out.connect(address)
        self._thread = threading.Thread(target=self._run, name="akernel-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            zmq.proxy_steerable(self._frontend, self._backend, self._capture, self._control_in)
        except zmq.ContextTerminated:
            pass

    def stop(self) -> None:
        """Stop the echo and close its sockets."""
        if self._thread.is_alive():
            self._control_out.send(b"TERMINATE")
            self._thread.join(timeout=5)
        for sock in {self._frontend, self._backend, self._control_in, self._control_out}:
            sock.close(linger=0)
        if self._capture is not None:
            self._capture.close(linger=0)
