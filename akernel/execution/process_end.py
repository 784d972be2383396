"""Ending the process by the signal that ended the kernel in the middle of a cell.

A kernel that gets SIGTERM while a cell runs is being killed: its clients
(nbclient's ``DeadKernelError``, a notebook server's restart logic) must see
a dead kernel, not a cell that finished with ``KeyboardInterrupt``. So the
running request gets no reply, what the cell printed so far is published,
the kernel tears down as usual (connection file, sockets, threads), and then
the signal is delivered again to its previous handler: by default that ends
the process, with the signal as its exit status.

With the default handler the signal is re-raised from an ``atexit`` hook
registered when the kernel starts, so it runs after the rest of the process's
own clean-up (hooks registered later, e.g. by user code, run before it). A
host application's own handler is called at once when the kernel stops.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys

log = logging.getLogger("akernel")


class DeathBySignal:
    """Re-delivers a terminating signal once the kernel has stopped."""

    def __init__(self) -> None:
        self.signum: int | None = None
        atexit.register(self._at_exit)

    def note(self, signum: int) -> None:
        """The kernel is ending because of ``signum``, in the middle of a request."""
        self.signum = signum

    def release(self) -> None:
        """Call when the kernel has stopped and the signal's previous handler
        is back: deliver the signal to it, now or (default handler) at exit."""
        signum = self.signum
        if signum is None:
            atexit.unregister(self._at_exit)
            return
        handler = signal.getsignal(signum)
        if handler is signal.SIG_DFL:
            return  # at exit, after the process's clean-up
        atexit.unregister(self._at_exit)
        if callable(handler):
            signal.raise_signal(signum)

    def _at_exit(self) -> None:
        signum = self.signum
        if signum is None:
            return
        log.info("ending the process by %s, as it was asked", signal.Signals(signum).name)
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()
            except Exception:
                pass
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
