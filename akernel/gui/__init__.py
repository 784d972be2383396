"""GUI event loops (Qt, Tk) run while the kernel's asyncio or trio loop waits: ``%gui``."""

from .loops import GuiUnavailable
from .switch import SUPPORTED, disable, enable, enabled

__all__ = ["SUPPORTED", "GuiUnavailable", "disable", "enable", "enabled"]
