"""The ``kernel_info_reply`` content, shared by the shell and control channels."""

from __future__ import annotations

import sys
from functools import cache
from typing import Any

from .._version import __version__
from ..wire import PROTOCOL_VERSION


@cache
def kernel_info(
    backend: str = "asyncio", *, debugger: bool = False, subshells: bool = False
) -> dict[str, Any]:
    import IPython

    python = ".".join(map(str, sys.version_info[:3]))
    return {
        "status": "ok",
        "protocol_version": PROTOCOL_VERSION,
        "implementation": "akernel",
        "implementation_version": __version__,
        "language_info": {
            "name": "python",
            "version": python,
            "mimetype": "text/x-python",
            "codemirror_mode": {"name": "ipython", "version": sys.version_info[0]},
            "pygments_lexer": f"ipython{sys.version_info[0]}",
            "nbconvert_exporter": "python",
            "file_extension": ".py",
        },
        "banner": (
            f"Python {sys.version.split()[0]} | akernel {__version__} on {backend}"
            f" | IPython {IPython.__version__}"
        ),
        "help_links": [
            {"text": "Python Reference", "url": "https://docs.python.org/3/"},
            {"text": "IPython Reference", "url": "https://ipython.readthedocs.io/en/stable/"},
        ],
        # Only what this kernel offers (engines: neither).
        "debugger": debugger,
        "supported_features": (["debugger"] if debugger else [])
        + (["kernel subshells"] if subshells else []),
    }
