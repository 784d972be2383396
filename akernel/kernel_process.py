"""What the kernel does to and about its process: file descriptors, its parent, signals.

Kept apart from the kernel's wiring (kernel.py): each is a process-wide change
the kernel makes, and undoes, only when it owns the process (a launched kernel)
or was asked to (an embedded one).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import anyio
import zmq

from .channels import ControlThread, FdCapture, IOPubPublisher
from .execution import OutputRouter
from .transport import ConnectionInfo, Heartbeat, KernelSockets

log = logging.getLogger("akernel")


def capture_fds(router: OutputRouter, iopub: IOPubPublisher) -> list[FdCapture]:
    """Send what is written to file descriptors 1 and 2 (by C code, by child
    processes) to the frontend, through ``router``; the kernel's own log keeps
    writing where stderr went before."""
    sys.__stdout__.flush()
    sys.__stderr__.flush()
    captures = [
        FdCapture(fd, lambda text, name=name: router.publish_stream(name, text))
        for fd, name in ((1, "stdout"), (2, "stderr"))
    ]
    for capture in captures:
        iopub.add_reader(capture.read_fd, capture.drain)
    router.captures = captures
    own_stderr = os.fdopen(os.dup(captures[1].saved_fd), "w", buffering=1)
    for handler in log.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(own_stderr)
    return captures


async def watch_parent(pid: int, interval: float, on_gone: Callable[[], None]) -> None:
    """Call ``on_gone`` once process ``pid`` (the one that started us) is gone."""
    direct = os.getppid() == pid
    while True:
        await anyio.sleep(interval)
        if direct:
            gone = os.getppid() != pid  # reparented: the parent died
        else:
            try:
                os.kill(pid, 0)
                gone = False
            except ProcessLookupError:
                gone = True
            except PermissionError:
                gone = False
        if gone:
            log.warning("parent process %d is gone: shutting down", pid)
            on_gone()
            return


def bind_for_frontends(
    sockets: KernelSockets,
    info: ConnectionInfo,
    iopub: IOPubPublisher,
    control: ControlThread,
    ip: str,
) -> tuple[ConnectionInfo, Heartbeat]:
    """Bind the kernel's sockets to random TCP ports on ``ip`` too (each by the
    thread that owns it), with a heartbeat echo of their own: the connection
    info for frontends, and that heartbeat (to stop with the kernel)."""
    address = f"tcp://{ip}"
    frontends = ConnectionInfo(
        ip=ip, key=info.key, signature_scheme=info.signature_scheme, kernel_name="akernel"
    )
    frontends.shell_port = sockets.shell.bind_to_random_port(address)
    frontends.stdin_port = sockets.stdin.bind_to_random_port(address)
    frontends.iopub_port = iopub.bind_to_random_port(address)
    frontends.control_port = control.call(lambda: sockets.control.bind_to_random_port(address))
    hb = sockets.context.socket(zmq.ROUTER)
    hb.linger = 0
    frontends.hb_port = hb.bind_to_random_port(address)
    heartbeat = Heartbeat(sockets.context, hb)
    heartbeat.start()
    return frontends, heartbeat


def restore_switch_interval(previous: float, ours: float) -> None:
    """Put the GIL switch interval back, unless someone changed the kernel's since."""
    if sys.getswitchinterval() == ours:
        sys.setswitchinterval(previous)


def restore_signal(signum: int, previous: Any, ours: Any) -> None:
    """Give ``signum`` back to its previous handler, unless someone took it since."""
    if signal.getsignal(signum) is ours:
        signal.signal(signum, previous)
