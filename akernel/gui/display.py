"""Whether this process can open windows: checked before a toolkit tries.

Qt ends the whole process (``qFatal``) when it cannot reach a display or load
its platform plugin, which would lose the user's kernel and everything in it;
Tk raises an error with a terse message. Both are checked first, to refuse
``%gui`` in the cell instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys

from .loops import GuiUnavailable

# Qt platform plugins that need no X or Wayland server.
_SERVERLESS_QT_PLATFORMS = ("offscreen", "minimal", "vnc", "linuxfb", "eglfs", "vkkhrdisplay")


def require_display(toolkit: str) -> None:
    """Raise :class:`GuiUnavailable` if ``toolkit`` ("qt" or "tk") has no display
    to show windows on (X11 or Wayland systems; elsewhere there always is one)."""
    if sys.platform in ("win32", "darwin"):
        return
    if toolkit == "qt":
        platform = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0].split(";")[0]
        if platform in _SERVERLESS_QT_PLATFORMS or platform.startswith("wayland"):
            return
        if os.environ.get("WAYLAND_DISPLAY") and not os.environ.get("DISPLAY"):
            return
    display = os.environ.get("DISPLAY")
    if not display:
        raise GuiUnavailable(
            f"%gui {toolkit} needs a display, and this kernel has none: DISPLAY is not set in"
            " its environment (a kernel on a remote machine or in a container has no screen)."
            " Plots work here with %matplotlib inline or %matplotlib widget."
        )
    if not _x_display_opens(display):
        raise GuiUnavailable(
            f"%gui {toolkit}: cannot connect to the X display {display!r} (the DISPLAY of this"
            " kernel): is the X server running, and does it let this user in?"
        )


def _x_display_opens(display: str) -> bool:
    """Whether Xlib can connect to ``display`` (true when Xlib is not there to ask)."""
    name = ctypes.util.find_library("X11")
    if name is None:
        return True
    try:
        xlib = ctypes.CDLL(name)
    except OSError:
        return True
    xlib.XOpenDisplay.restype = ctypes.c_void_p
    xlib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    xlib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    connection = xlib.XOpenDisplay(display.encode())
    if not connection:
        return False
    xlib.XCloseDisplay(connection)
    return True


def probe_qt_application(binding: str, timeout: float = 30.0) -> None:
    """Create a ``QApplication`` of ``binding`` in a child process: raise
    :class:`GuiUnavailable` with Qt's own words if that fails (a missing system
    library of the platform plugin, say) instead of letting Qt end this one."""
    code = f"from {binding}.QtWidgets import QApplication; QApplication(['akernel'])"
    try:
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise GuiUnavailable(f"%gui qt: could not check that Qt can start here: {error}") from None
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        said = " ".join(lines[:3]) if lines else f"exit status {result.returncode}"
        raise GuiUnavailable(f"%gui qt: Qt ({binding}) cannot start in this kernel: {said}")
