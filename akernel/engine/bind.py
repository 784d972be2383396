"""Attaching a Jupyter frontend to a running engine (ipyparallel's
``bind_kernel``): the engine listens on TCP ports of its own as well, and
writes a kernel connection file for ``jupyter console --existing``.

Call :func:`bind_kernel` on the engine, e.g. ``%px akernel.engine.bind_kernel()``
or ``rc[0].apply_sync(ipyparallel.bind_kernel)``: in an akernel engine,
``ipyparallel.bind_kernel`` is this function.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("akernel")

# Set by the engine while it serves: binds and returns the connection file.
_bind: Callable[[str], str] | None = None


def bind_kernel(ip: str = "127.0.0.1", **kwargs: Any) -> str:
    """Make this engine a kernel that Jupyter frontends can connect to as
    well; return its connection file. Only the first call binds.

    ``ip`` is the interface to listen on (loopback by default: the connection
    file holds the key that lets anyone who can reach the ports run code).
    """
    if _bind is None:
        raise RuntimeError("bind_kernel must be called in a running akernel engine")
    return _bind(ip)


def make_binder(
    kernel: Any, *, engine_id: int, curve: bool, runtime_dir: str | None = None
) -> Callable[[str], str]:
    """The engine's binder: once, listen and write ``kernel-<pid>.json`` in
    Jupyter's runtime directory (removed when the engine stops)."""
    bound: list[str] = []

    def bind(ip: str) -> str:
        if bound:
            return bound[0]
        if curve:
            raise RuntimeError(
                "bind_kernel: this cluster uses CurveZMQ, and Jupyter frontends"
                " cannot connect to its sockets"
            )
        from jupyter_core.paths import jupyter_runtime_dir

        info = kernel.listen_for_frontends(ip)
        directory = Path(runtime_dir or jupyter_runtime_dir())
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"kernel-{os.getpid()}.json"
        info.write(path)
        kernel.add_teardown(lambda: path.unlink(missing_ok=True))
        bound.append(str(path))
        log.info(
            "engine %d: frontends can connect with: jupyter console --existing %s",
            engine_id,
            path,
        )
        return str(path)

    return bind


def install(binder: Callable[[str], str]) -> Callable[[], None]:
    """Serve ``bind_kernel`` (and ``ipyparallel.bind_kernel``, which only knows
    ipengine) with ``binder``; return the undo."""
    global _bind
    _bind = binder
    undo: list[Callable[[], None]] = []
    try:
        import ipyparallel
    except ImportError:
        pass
    else:
        original = ipyparallel.bind_kernel
        ipyparallel.bind_kernel = bind_kernel
        undo.append(lambda: setattr(ipyparallel, "bind_kernel", original))

    def uninstall() -> None:
        global _bind
        _bind = None
        for step in undo:
            step()

    return uninstall
