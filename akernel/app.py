"""The command line: ``akernel launch``, ``akernel install``, ``akernel uninstall``.

``launch`` is a traitlets application, so kernels are configured the way the
Jupyter ecosystem expects: ``akernel_config.py`` in the Jupyter config path
and ``--Class.trait=value`` flags (``--InteractiveShell.colors=nocolor``,
``--Kernel.iopub_flush_interval=0.1``). Bad input stops with one line on
stderr and a non-zero exit.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from importlib.util import find_spec
from pathlib import Path

from traitlets import Enum, TraitError, Unicode
from traitlets.config import Application

from ._version import __version__

log = logging.getLogger("akernel")

_CLASS_TRAIT = re.compile(r"^--[A-Za-z_]\w*(\.[A-Za-z_]\w*)+(=.*)?$")


def log_to_stderr(prefix: str, level: int | str) -> None:
    """Send the ``akernel`` log to stderr, each line tagged ``[prefix LEVEL]``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"[{prefix} %(levelname)s] %(message)s"))
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


class UsageError(Exception):
    """A command-line mistake, reported as one line."""


class LaunchApp(Application):
    """Serve one kernel for a connection file."""

    name = "akernel-launch"
    version = __version__
    description = "Start an akernel Jupyter kernel."

    connection_file = Unicode(
        "", help="Connection file to read (written there if it does not exist)."
    ).tag(config=True)
    backend = Enum(["asyncio", "trio"], "asyncio", help="Event loop to run on.").tag(config=True)
    transport = Enum(["tcp", "ipc"], "tcp", help="Transport for a new connection file.").tag(
        config=True
    )
    ip = Unicode("", help="Address (tcp) or path prefix (ipc) for a new connection file.").tag(
        config=True
    )

    aliases = {
        "f": "LaunchApp.connection_file",
        "connection-file": "LaunchApp.connection_file",
        "backend": "LaunchApp.backend",
        "transport": "LaunchApp.transport",
        "ip": "LaunchApp.ip",
        "log-level": "Application.log_level",
    }
    flags = {
        "debug": ({"Application": {"log_level": logging.DEBUG}}, "Log at DEBUG level."),
    }

    def initialize(self, argv: list[str] | None = None) -> None:
        _check_launch_args(argv or [], self.aliases, self.flags)
        super().initialize(argv)
        if self.extra_args:
            raise UsageError(f"unexpected argument: {self.extra_args[0]!r}")
        from jupyter_core.paths import jupyter_config_path

        self.load_config_file("akernel_config", path=jupyter_config_path())
        # Command-line flags win over the config file.
        super().initialize(argv)
        log_to_stderr("akernel", self.log_level)

    def start(self) -> None:
        import anyio

        from .execution import StartupCode
        from .kernel import Kernel
        from .transport import ConnectionError_, bind_kernel_sockets

        if self.backend == "trio" and find_spec("trio") is None:
            raise UsageError("--backend trio needs trio: pip install 'akernel[trio]'")
        info, path, created = self._connection_info()
        try:
            sockets = bind_kernel_sockets(info)
        except ConnectionError_ as e:
            raise UsageError(str(e)) from None
        try:
            if created or _had_zero_ports(path):
                info.write(path)
            if created:
                print(f"akernel: connect with: jupyter console --existing {path}", file=sys.stderr)
            try:
                kernel = Kernel(
                    info,
                    sockets,
                    backend=self.backend,
                    config=self.config,
                    startup=StartupCode(config=self.config),
                )
            except TraitError as e:
                raise UsageError(f"bad configuration value: {e}") from None
            anyio.run(kernel.serve, backend=self.backend)
        finally:
            if created:
                Path(path).unlink(missing_ok=True)

    def _connection_info(self):
        from jupyter_core.paths import jupyter_runtime_dir

        from .transport import ConnectionError_, ConnectionInfo
        from .wire import new_id

        path = self.connection_file
        if not path:
            runtime = Path(jupyter_runtime_dir())
            runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = str(runtime / f"kernel-{os.getpid()}.json")
        if os.path.exists(path):
            try:
                return ConnectionInfo.load(path), path, False
            except ConnectionError_ as e:
                raise UsageError(str(e)) from None
        if not Path(path).parent.is_dir():
            raise UsageError(f"connection file directory does not exist: {Path(path).parent}")
        info = ConnectionInfo(transport=self.transport, key=new_id())
        info.ip = self.ip or (
            "127.0.0.1" if self.transport == "tcp" else str(Path(path).with_suffix("")) + "-ipc"
        )
        return info, path, True


def _had_zero_ports(path: str) -> bool:
    import json

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return any(data.get(f"{c}_port") == 0 for c in ("shell", "iopub", "stdin", "control", "hb"))


def _check_launch_args(argv: list[str], aliases: dict, flags: dict) -> None:
    """Reject what traitlets would only warn about, with a one-line message."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            continue
        if _CLASS_TRAIT.match(arg):
            if "=" not in arg:
                if i >= len(argv):
                    raise UsageError(f"option {arg} needs a value")
                i += 1
            continue
        name, has_value, _ = arg.lstrip("-").partition("=")
        if name in ("h", "help", "help-all", "version"):
            continue
        if name in flags:
            if has_value:
                raise UsageError(f"flag --{name} takes no value")
            continue
        if name in aliases:
            if not has_value:
                if i >= len(argv) or (argv[i].startswith("-") and argv[i] != "-"):
                    raise UsageError(f"option {arg} needs a value")
                i += 1
            continue
        raise UsageError(f"unknown option: {arg}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``akernel`` command and ``python -m akernel``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "akernel"
    try:
        if argv and argv[0] == "engine":
            from .engine.app import main as engine_main

            engine_main(argv[1:])
            return
        if argv and argv[0] in ("install", "uninstall"):
            from . import kernelspec

            kernelspec.main(argv[0], argv[1:])
            return
        if argv and argv[0] == "launch":
            argv = argv[1:]
        elif argv and argv[0] in ("-V", "--version"):
            print(__version__)
            return
        elif argv and not argv[0].startswith("-"):
            raise UsageError(
                f"unknown command {argv[0]!r} (expected launch, engine, install or uninstall)"
            )
        app = LaunchApp.instance()
        app.initialize(argv)
        app.start()
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
