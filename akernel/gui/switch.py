"""Switching GUI event loops on and off at run time (what ``%gui`` calls)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .loops import GuiUnavailable, LoopHook, Wait, hook_running_loop

log = logging.getLogger("akernel.gui")

# ``%gui`` names of the toolkits supported: Qt (any version, or 5 or 6), Tk.
SUPPORTED = ("qt", "qt5", "qt6", "tk")
# IPython's other ``%gui`` names, refused with a clear message.
NOT_SUPPORTED = {
    "wx": "wxPython",
    "gtk": "GTK",
    "gtk2": "GTK 2",
    "gtk3": "GTK 3",
    "gtk4": "GTK 4",
    "osx": "macOS (Cocoa)",
    "pyglet": "pyglet",
    "glut": "GLUT",
    "qt4": "Qt 4",
}
WORKS = (
    "%gui qt (PyQt6, PySide6, PyQt5 or PySide2) and %gui tk (tkinter) work, as do"
    " %matplotlib qt and %matplotlib tk; and %matplotlib inline, widget, notebook, webagg"
)


@dataclass
class _Active:
    name: str
    hook: LoopHook
    wait: Wait


_active: _Active | None = None
# One toolkit object per name, kept across off and on (Qt's application lives on).
_toolkits: dict[str, Any] = {}


def enable(gui: str | None) -> None:
    """Run ``gui``'s event loop whenever the kernel's loop (asyncio or trio)
    waits; ``None`` or ``""`` switches it off. Call from the main thread, in
    the running loop (a cell).

    Raises :class:`GuiUnavailable` for a toolkit that is not supported or
    cannot start here; whatever was enabled before then stays enabled.
    """
    global _active
    if not gui:
        disable()
        return
    name = gui.lower()
    if name == "asyncio":
        raise GuiUnavailable(
            "%gui asyncio: not a GUI toolkit, and not needed here: the kernel runs cells in its"
            " event loop already, so top-level await works as it is"
        )
    if name in NOT_SUPPORTED:
        raise GuiUnavailable(
            f"%gui {gui}: {NOT_SUPPORTED[name]} event loop integration is not supported by"
            f" akernel. {WORKS}."
        )
    if name not in SUPPORTED:
        raise GuiUnavailable(f"%gui {gui}: no such GUI event loop. {WORKS}.")
    previous = _active
    if previous is not None and previous.name == name and previous.hook.is_running_loop():
        return
    # Off while the new one is prepared, back on if that fails: nothing is lost.
    if previous is not None:
        previous.hook.uninstall()
    try:
        hook = hook_running_loop()
        toolkit = _toolkits.get(name) or _new_toolkit(name)
    except BaseException:
        if previous is not None:
            previous.hook.install(previous.wait)
        raise
    _toolkits[name] = toolkit
    wait = _guarded_wait(name, toolkit)
    hook.install(wait)
    _active = _Active(name, hook, wait)
    log.info("GUI event loop %s enabled", name)


def disable() -> None:
    """Stop running a GUI event loop in the kernel's waits (its windows stay,
    unresponsive, until it is enabled again)."""
    global _active
    active, _active = _active, None
    if active is not None:
        active.hook.uninstall()
        log.info("GUI event loop %s disabled", active.name)


def enabled() -> str | None:
    """The ``%gui`` name of the GUI event loop enabled, if any."""
    return _active.name if _active is not None else None


def _new_toolkit(name: str) -> Any:
    if name == "tk":
        from .tk import TkLoop

        return TkLoop()
    from .qt import QtLoop

    return QtLoop({"qt": None, "qt5": 5, "qt6": 6}[name])


def _guarded_wait(name: str, toolkit: Any) -> Wait:
    """The toolkit's wait, switched off (and logged) if it ever fails: a
    broken GUI must not stop the kernel's event loop."""
    wait = toolkit.wait

    def guarded(fd: int, timeout: float | None, ready: Any) -> None:
        try:
            wait(fd, timeout, ready)
        except Exception:
            log.exception("the %s event loop failed: GUI event loop integration switched off", name)
            disable()

    return guarded
