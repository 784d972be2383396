"""Libraries recognise akernel as the Jupyter kernel it is.

Many libraries decide "am I in a Jupyter kernel?" with idioms aimed at
ipykernel; each idiom below was read in the library's source, and is made
true while a kernel runs, because akernel is such a kernel (same protocol,
same frontends, IPython's shell):

``get_ipython().__class__.__name__ == "ZMQInteractiveShell"``
    rich (``console._is_jupyter``: HTML output, ``Console().is_jupyter``),
    plotly, and countless notebooks. The shell's class has that name
    (``shell.py``; ``AkernelShell`` is an alias).
``type(get_ipython()).__module__.startswith("ipykernel.")``
    plotly (``io._renderers``), to choose the ``plotly_mimetype`` renderer
    over one that embeds plotly.js in every notebook. The class's module is
    registered as ``ipykernel.zmqshell``, next:
``"ipykernel.zmqshell" in sys.modules``
    tqdm >= 4.68.3 (``tqdm.autonotebook``, so ``tqdm.auto``): the widget bar
    instead of text on stderr. The module under that name holds the shell's
    class and nothing of ipykernel's; asking it for anything else says so.
    ``import ipykernel`` still fails when ipykernel is not installed: only
    the submodule's name is taken.
``"IPKernelApp" in get_ipython().config``, ``config["IPKernelApp"]["connection_file"]``
    tqdm < 4.68.3, and code that looks for the connection file (to find its
    notebook through the server, for one): the section holds the real path.
``ipykernel.get_connection_file()``, ``from ipykernel.comm import Comm``
    when ipykernel is installed beside akernel: see :mod:`.ipykernel_compat`.

Everything is undone when the kernel stops (an embedded kernel leaves its
host process as it found it), except the class name.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

from IPython.core.interactiveshell import InteractiveShell

from . import ipykernel_compat

SHELL_MODULE = "ipykernel.zmqshell"


def connection_file_of(shell: InteractiveShell) -> str | None:
    """The absolute path of the running kernel's connection file, if it has one.

    The kernel's ``connection_file`` if it says, else the launcher's
    ``-f``/``--connection-file`` (``LaunchApp.connection_file``).
    """
    path = getattr(shell.parent, "connection_file", None)
    if not path:
        launch = shell.config.get("LaunchApp")
        path = launch.get("connection_file") if launch is not None else None
    if not path or not isinstance(path, str | os.PathLike):
        return None
    return os.path.abspath(os.fspath(path))


def shell_module(shell_class: type) -> ModuleType:
    """The module registered as ``ipykernel.zmqshell``: the shell's class only."""
    defined_in = sys.modules[shell_class.__module__]
    module = ModuleType(
        SHELL_MODULE,
        "akernel's shell, under the name of ipykernel's shell module so that libraries"
        " recognise a Jupyter kernel. It holds ZMQInteractiveShell (akernel's) only.",
    )
    module.__spec__ = ModuleSpec(SHELL_MODULE, None, origin=getattr(defined_in, "__file__", None))
    module.__file__ = getattr(defined_in, "__file__", None)
    module.ZMQInteractiveShell = shell_class  # type: ignore[attr-defined]
    module.__all__ = ["ZMQInteractiveShell"]  # type: ignore[attr-defined]

    def __getattr__(name: str) -> Any:
        raise AttributeError(
            f"{SHELL_MODULE} is akernel's shell in this kernel: it has ZMQInteractiveShell"
            f" (akernel's) and not ipykernel's {name!r}"
        )

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module


def recognise_running_kernel() -> Callable[[], None]:
    """Make the idioms above true for the running kernel's shell; return the undo."""
    if not InteractiveShell.initialized():
        return lambda: None
    shell = InteractiveShell.instance()
    undo: list[Callable[[], None]] = []

    shell_class = type(shell)
    if SHELL_MODULE not in sys.modules:
        module = shell_module(shell_class)
        sys.modules[SHELL_MODULE] = module

        def unregister(module: ModuleType = module) -> None:
            if sys.modules.get(SHELL_MODULE) is module:
                del sys.modules[SHELL_MODULE]

        undo.append(unregister)
        defined_in = shell_class.__module__
        shell_class.__module__ = SHELL_MODULE
        undo.append(lambda: setattr(shell_class, "__module__", defined_in))

    connection_file = connection_file_of(shell)
    undo.append(_announce_kernel_app(shell.config, connection_file))
    undo.append(ipykernel_compat.install(connection_file))

    def undo_all() -> None:
        for step in reversed(undo):
            step()

    return undo_all


def _announce_kernel_app(config: Any, connection_file: str | None) -> Callable[[], None]:
    """Give the config an ``IPKernelApp`` section, with the connection file."""
    created = "IPKernelApp" not in config
    section = config.IPKernelApp  # created on access
    added = connection_file is not None and "connection_file" not in section
    if added:
        section.connection_file = connection_file

    def undo() -> None:
        if created:
            config.pop("IPKernelApp", None)
        elif added:
            section.pop("connection_file", None)

    return undo
