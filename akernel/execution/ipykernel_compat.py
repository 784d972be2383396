"""ipykernel's own helpers, when ipykernel is installed beside akernel and user
code imports them, work with the akernel kernel running in this process.

akernel never imports ipykernel. When user code does, two of its modules are
adjusted as they load (or at once, if they already are), while the kernel runs:

``ipykernel.connect``
    ``get_connection_file()`` (also ``ipykernel.get_connection_file``) returns
    this kernel's connection file. ipykernel's version looks for a running
    ``IPKernelApp``, finds none and raises.
``ipykernel.comm.comm``
    The messages of ``ipykernel.comm.Comm`` (which bokeh's ``push_notebook``
    and pyviz_comms, so Panel and HoloViews, still create) go out on this
    kernel's IOPub. ipykernel's version sends nothing, and raises nothing,
    when no ipykernel kernel runs: a silent no-op.

Both are restored when the kernel stops.
"""

from __future__ import annotations

import functools
import importlib.abc
import sys
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

Patch = Callable[[ModuleType], Callable[[], None]]
"""Adjusts a module just loaded; returns the undo."""


def _patch_connect(connection_file: str | None) -> Patch:
    def patch(module: ModuleType) -> Callable[[], None]:
        original = module.get_connection_file

        @functools.wraps(original)
        def get_connection_file(app: Any = None) -> str:
            if app is None and connection_file is not None:
                return connection_file
            return original(app)

        module.get_connection_file = get_connection_file
        package = sys.modules.get("ipykernel")
        # ``ipykernel/__init__.py`` re-exports it; if that already ran, update it too.
        patched_package = getattr(package, "get_connection_file", None) is original
        if patched_package:
            package.get_connection_file = get_connection_file  # type: ignore[union-attr]

        def undo() -> None:
            if module.get_connection_file is get_connection_file:
                module.get_connection_file = original
            if patched_package and package.get_connection_file is get_connection_file:  # type: ignore[union-attr]
                package.get_connection_file = original  # type: ignore[union-attr]

        return undo

    return patch


def _patch_comm(module: ModuleType) -> Callable[[], None]:
    from .comms import publish_comm_msg

    base = module.BaseComm
    original = base.__dict__["publish_msg"]

    @functools.wraps(original)
    def publish_msg(
        self: Any,
        msg_type: str,
        data: dict | None = None,
        metadata: dict | None = None,
        buffers: list | None = None,
        **keys: Any,
    ) -> None:
        if not publish_comm_msg(self, msg_type, data, metadata, buffers, **keys):
            original(self, msg_type, data, metadata, buffers, **keys)

    base.publish_msg = publish_msg

    def undo() -> None:
        if base.__dict__.get("publish_msg") is publish_msg:
            base.publish_msg = original

    return undo


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Runs a patch on some modules right after they are executed.

    Finds them with the other finders, and wraps only that module's loader's
    ``exec_module``: the module keeps its ordinary spec and loader.
    """

    def __init__(self, patches: dict[str, Patch], undo: list[Callable[[], None]]) -> None:
        self.patches = patches
        self.undo = undo

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        patch = self.patches.get(fullname)
        if patch is None:
            return None
        spec = None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        execute = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            self.undo.append(patch(module))

        # Per-module loader instances (file loaders are): the wrapper is this module's only.
        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install(connection_file: str | None) -> Callable[[], None]:
    """Adjust ipykernel's modules for this kernel (now, or when they are
    imported); return the undo."""
    patches: dict[str, Patch] = {
        "ipykernel.connect": _patch_connect(connection_file),
        "ipykernel.comm.comm": _patch_comm,
    }
    undo: list[Callable[[], None]] = []
    for name, patch in patches.items():
        module = sys.modules.get(name)
        if module is not None:
            undo.append(patch(module))
    finder = _PatchOnImport(patches, undo)
    sys.meta_path.insert(0, finder)

    def undo_all() -> None:
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)
        while undo:
            undo.pop()()

    return undo_all
