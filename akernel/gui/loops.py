"""Run a GUI toolkit's event loop while the kernel's event loop waits for I/O.

When asyncio's or trio's loop has nothing ready to run, it blocks in one
system call on one file descriptor: asyncio's selector (``select(timeout)``
on an epoll, kqueue or poll object) and trio's I/O manager
(``epoll.poll(timeout)``). Every way the loop can be woken (a socket, the
wake-up pipe of ``call_soon_threadsafe``/``run_sync_soon``, the mailbox the
kernel's other threads post to, a signal's wake-up fd) makes that descriptor
readable. A :class:`LoopHook` replaces that one call, while a GUI is enabled,
by: run the toolkit's own loop until the descriptor is readable, the timeout
expires, or a GUI callback made work for the loop; then do the real call with
timeout 0. The kernel is woken as fast as before; with no GUI enabled the
hook is absent and the loop is untouched.

Both hooks reach into private attributes (``loop._selector``, trio's
``runner.io_manager._epoll``): they check what they need is there and refuse,
with a clear :class:`GuiUnavailable`, when it is not (uvloop, trio as the
guest of another loop, a future trio that keeps its loop elsewhere).
"""

from __future__ import annotations

import asyncio
import select
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

Wait = Callable[[int, float | None, Callable[[], bool]], None]
"""``wait(fd, timeout, ready)``: run the GUI until ``fd`` is readable,
``timeout`` seconds passed (``None``: no limit), or ``ready()`` is true (a
GUI callback gave the event loop work)."""


class GuiUnavailable(Exception):
    """A GUI event loop cannot be enabled here; the message says why, and what works."""


class LoopHook:
    """Replaces the blocking wait of one running event loop (see the module's doc)."""

    def install(self, wait: Wait) -> None:
        """Make the loop call ``wait`` before each wait for I/O that could block."""
        raise NotImplementedError

    def uninstall(self) -> None:
        """Put the loop's own wait back, exactly as it was."""
        raise NotImplementedError

    def is_running_loop(self) -> bool:
        """Whether this hooks the loop running in this thread."""
        raise NotImplementedError


def hook_running_loop(backend: str | None = None) -> LoopHook:
    """A hook (not installed yet) for the event loop running in this thread,
    which must be the main thread: GUI toolkits live there. ``backend``
    ("asyncio" or "trio") if known; found out otherwise."""
    if threading.current_thread() is not threading.main_thread():
        raise GuiUnavailable(
            "GUI event loops run in the main thread: enable them from the parent shell,"
            " not from a subshell or another thread"
        )
    if backend is None:
        backend = _running_backend()
    if backend == "trio":
        return TrioHook(_trio_runner())
    if backend == "asyncio":
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise GuiUnavailable("no asyncio event loop is running in this thread") from None
        return AsyncioHook(loop)
    raise GuiUnavailable(f"GUI event loops need asyncio or trio, not {backend!r}")


def _running_backend() -> str:
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_run():
        return "trio"
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise GuiUnavailable("no asyncio or trio event loop is running in this thread") from None
    return "asyncio"


# -- asyncio ----------------------------------------------------------------------


class AsyncioHook(LoopHook):
    """Hooks ``loop._selector.select`` of an asyncio selector event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        selector = getattr(loop, "_selector", None)
        ready = getattr(loop, "_ready", None)
        if (
            not isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)
            or selector is None
            or not hasattr(selector, "__dict__")
            or not callable(getattr(selector, "fileno", None))
            or ready is None
        ):
            kind = f"{type(loop).__module__}.{type(loop).__qualname__}"
            raise GuiUnavailable(
                f"GUI event loops need asyncio's own selector event loop; this kernel runs on"
                f" {kind}, whose wait for I/O akernel cannot share with a GUI"
            )
        if "select" in vars(selector):
            raise GuiUnavailable("the asyncio loop's selector is already hooked by someone else")
        self.loop = loop
        self._selector = selector
        self._ready = ready
        self._select: Callable[..., Any] | None = None
        self._signals: _SignalWakeup | None = None

    def install(self, wait: Wait) -> None:
        selector, ready = self._selector, self._ready
        original = selector.select
        fd = selector.fileno()

        def has_work() -> bool:
            return bool(ready)

        def select_with_gui(timeout: float | None = None) -> Any:
            if timeout is not None and timeout <= 0:
                return original(timeout)
            wait(fd, timeout, has_work)
            return original(0)

        self._signals = _SignalWakeup.install(self.loop)
        selector.select = select_with_gui
        self._select = select_with_gui

    def uninstall(self) -> None:
        if self._select is not None and vars(self._selector).get("select") is self._select:
            del self._selector.select
        self._select = None
        if self._signals is not None:
            self._signals.uninstall()
            self._signals = None

    def is_running_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False


class _SignalWakeup:
    """A signal wake-up fd (``signal.set_wakeup_fd``) read by the loop, for
    as long as a GUI runs in its waits, when none is set yet (asyncio sets
    one only for ``loop.add_signal_handler``; trio always has its own).

    Without it, a signal that comes while the GUI toolkit blocks in its own
    poll is noted by Python but its handler runs only when the toolkit calls
    back into Python: an interrupt would wait for the next GUI event.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, pair: tuple[socket.socket, ...]) -> None:
        self.loop = loop
        self.read_sock, self.write_sock = pair

    @classmethod
    def install(cls, loop: asyncio.AbstractEventLoop) -> _SignalWakeup | None:
        previous = signal.set_wakeup_fd(-1)
        if previous != -1:
            # The loop's own (add_signal_handler): signals wake it already.
            signal.set_wakeup_fd(previous)
            return None
        pair = socket.socketpair()
        for sock in pair:
            sock.setblocking(False)
        signal.set_wakeup_fd(pair[1].fileno(), warn_on_full_buffer=False)
        wakeup = cls(loop, pair)
        loop.add_reader(pair[0].fileno(), wakeup._drain)
        return wakeup

    def _drain(self) -> None:
        try:
            while self.read_sock.recv(4096):
                pass
        except OSError:
            pass

    def uninstall(self) -> None:
        current = signal.set_wakeup_fd(-1)
        if current != self.write_sock.fileno():
            signal.set_wakeup_fd(current)  # someone else's since: theirs stays
        if not self.loop.is_closed():
            self.loop.remove_reader(self.read_sock.fileno())
        self.read_sock.close()
        self.write_sock.close()


# -- trio ---------------------------------------------------------------------------


def _trio_runner() -> Any:
    """trio's run loop state of this thread (private: checked by TrioHook)."""
    import trio

    try:
        return trio._core._run.GLOBAL_RUN_CONTEXT.runner
    except AttributeError:
        raise GuiUnavailable(
            f"this trio ({trio.__version__}) keeps its run loop where akernel cannot find it:"
            " GUI event loops are not available on it"
        ) from None


class TrioHook(LoopHook):
    """Hooks the ``poll`` of the epoll object trio's I/O manager waits in."""

    def __init__(self, runner: Any) -> None:
        if getattr(runner, "is_guest", False):
            raise GuiUnavailable(
                "trio runs here as the guest of another event loop, which owns the waiting:"
                " run the GUI in that host loop instead"
            )
        io_manager = getattr(runner, "io_manager", None)
        epoll = getattr(io_manager, "_epoll", None)
        runq = getattr(runner, "runq", None)
        if not isinstance(epoll, select.epoll) or runq is None:
            raise GuiUnavailable(
                f"GUI event loops on trio need its epoll I/O manager (Linux); this one is"
                f" {type(io_manager).__name__}, whose wait akernel cannot share with a GUI"
            )
        self._runner = runner
        self._io_manager = io_manager
        self._epoll = epoll
        self._runq = runq
        self._hooked: _EpollWithGui | None = None

    def install(self, wait: Wait) -> None:
        runq = self._runq
        self._hooked = _EpollWithGui(self._epoll, wait, lambda: bool(runq))
        self._io_manager._epoll = self._hooked

    def uninstall(self) -> None:
        if self._hooked is not None and self._io_manager._epoll is self._hooked:
            self._io_manager._epoll = self._epoll
        self._hooked = None

    def is_running_loop(self) -> bool:
        trio = sys.modules.get("trio")
        return trio is not None and trio.lowlevel.in_trio_run() and _trio_runner() is self._runner


class _EpollWithGui:
    """trio's epoll object, whose ``poll`` runs the GUI while it would block."""

    __slots__ = ("_epoll", "_fd", "_ready", "_wait", "modify", "register", "unregister")

    def __init__(self, epoll: select.epoll, wait: Wait, ready: Callable[[], bool]) -> None:
        self._epoll = epoll
        self._wait = wait
        self._ready = ready
        self._fd = epoll.fileno()
        # Called for every wait_readable/wait_writable: no detour through __getattr__.
        self.register = epoll.register
        self.modify = epoll.modify
        self.unregister = epoll.unregister

    def poll(self, timeout: float | None = None, maxevents: int = -1) -> list[tuple[int, int]]:
        if timeout == 0:
            return self._epoll.poll(0, maxevents)
        limit = None if timeout is None or timeout < 0 else timeout
        self._wait(self._fd, limit, self._ready)
        return self._epoll.poll(0, maxevents)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._epoll, name)
