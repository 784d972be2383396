"""akernel: a fast, async-native Jupyter kernel for Python, on asyncio and trio."""

from ._version import __version__

__all__ = ["__version__"]
