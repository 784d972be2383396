"""Qt's event loop, run while the kernel's loop waits (``%gui qt``, ``%matplotlib qt``).

Any of PyQt6, PySide6, PyQt5 and PySide2: the one already imported (by
matplotlib, or by the user), else the one ``QT_API`` names (matplotlib's and
IPython's variable), else the first installed in matplotlib's order.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from importlib import import_module
from importlib.util import find_spec
from typing import Any

from .display import probe_qt_application, require_display
from .loops import GuiUnavailable

# Each binding's Qt version; in matplotlib's order of preference.
BINDINGS = {"PyQt6": 6, "PySide6": 6, "PyQt5": 5, "PySide2": 5}
# ``QT_API`` values (matplotlib's and IPython's names).
QT_API_NAMES = {"pyqt6": "PyQt6", "pyside6": "PySide6", "pyqt5": "PyQt5", "pyside2": "PySide2"}
# Longer than any timeout a kernel waits with (QTimer takes a 32-bit int of ms).
_MAX_TIMER_MS = 2**31 - 1


def choose_binding(major: int | None) -> str:
    """The Qt binding to use (``major``: the Qt version asked for, if any)."""
    wanted = [name for name, version in BINDINGS.items() if major in (None, version)]
    loaded = [name for name in BINDINGS if f"{name}.QtCore" in sys.modules]
    if loaded:
        if loaded[0] not in wanted:
            raise GuiUnavailable(
                f"%gui qt{major}: this kernel already uses {loaded[0]} (Qt"
                f" {BINDINGS[loaded[0]]}), and one process can hold one Qt only"
            )
        return loaded[0]
    api = os.environ.get("QT_API", "").lower()
    if api in QT_API_NAMES and QT_API_NAMES[api] in wanted:
        return QT_API_NAMES[api]
    for name in wanted:
        if find_spec(name) is not None:
            return name
    version = f" {major}" if major else ""
    raise GuiUnavailable(
        f"%gui qt{major or ''} needs a Python binding of Qt{version}, and none is installed:"
        f" pip install {'PySide6-Essentials' if major != 5 else 'PyQt5'}"
        f" (or {'PyQt6' if major != 5 else 'PySide2'}), then restart the kernel"
    )


def _enum(owner: Any, scope: str, name: str) -> Any:
    """``owner.scope.name`` (PyQt6 wants scoped enums), or ``owner.name`` (older PyQt5)."""
    scoped = getattr(owner, scope, None)
    return getattr(scoped, name) if scoped is not None else getattr(owner, name)


class QtLoop:
    """Runs Qt's events in a nested ``QEventLoop`` while the kernel waits."""

    def __init__(self, major: int | None = None) -> None:
        binding = choose_binding(major)
        require_display("qt")
        core = import_module(f"{binding}.QtCore")
        widgets = import_module(f"{binding}.QtWidgets")
        app = widgets.QApplication.instance()
        if app is None:
            # Qt ends the process when it cannot start: find out in a child first
            # (not from a frozen application, whose executable is not Python).
            if not getattr(sys, "frozen", False):
                probe_qt_application(binding)
            argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "akernel"
            app = widgets.QApplication([argv0])
        self.app = app
        self._core = core
        self._loop = core.QEventLoop()
        self._exec = getattr(self._loop, "exec", None) or self._loop.exec_
        # Qt's default timers may fire 5% late: a one-second asyncio.sleep would last 1.05 s.
        self._timer = core.QTimer()
        self._timer.setSingleShot(True)
        self._timer.setTimerType(_enum(core.Qt, "TimerType", "PreciseTimer"))
        self._timer.timeout.connect(self._loop.quit)
        self._notifier: Any = None
        self._notifier_fd = -1
        self._ready: Callable[[], bool] | None = None
        # A Qt callback (a button's slot) may give the kernel's loop work
        # without waking its fd (loop.call_soon, a trio Event): end the wait
        # when Qt has nothing left to do and would block.
        core.QAbstractEventDispatcher.instance().aboutToBlock.connect(self._about_to_block)

    def _notifier_for(self, fd: int) -> Any:
        if fd != self._notifier_fd:
            if self._notifier is not None:
                self._notifier.setEnabled(False)
            read = _enum(self._core.QSocketNotifier, "Type", "Read")
            notifier = self._core.QSocketNotifier(fd, read)
            notifier.setEnabled(False)
            notifier.activated.connect(self._loop.quit)
            self._notifier, self._notifier_fd = notifier, fd
        return self._notifier

    def wait(self, fd: int, timeout: float | None, ready: Callable[[], bool]) -> None:
        """Run Qt until ``fd`` is readable, ``timeout`` expires or ``ready()``."""
        if ready():
            return
        notifier = self._notifier_for(fd)
        notifier.setEnabled(True)
        if timeout is not None:
            self._timer.start(min(max(1, math.ceil(timeout * 1000)), _MAX_TIMER_MS))
        self._ready = ready
        try:
            self._exec()
        finally:
            self._ready = None
            notifier.setEnabled(False)
            self._timer.stop()

    def _about_to_block(self) -> None:
        ready = self._ready
        if ready is not None and ready():
            self._loop.quit()
