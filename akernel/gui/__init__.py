"""GUI event loops (Qt, Tk) run while the kernel's asyncio or trio loop waits: ``%gui``."""

from .loops import GuiUnavailable
from .switch import disable, enable, enabled

__all__ = ["GuiUnavailable", "disable", "enable", "enabled"]
