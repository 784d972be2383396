"""The command line: ``akernel launch``, ``akernel install``, ``akernel uninstall``.

``launch`` is a traitlets application, so kernels are configured the way the
Jupyter ecosystem expects: the IPython profile's ``ipython_config.py`` and
``ipython_kernel_config.py``, ``akernel_config.py`` (see profile_config.py),
and ``--Class.trait=value`` flags (``--InteractiveShell.colors=nocolor``,
``--Kernel.iopub_flush_interval=0.1``). IPython's kernel options
(``--profile``, ``--profile-dir``, ``--matplotlib``, ``-c``...) mean what they
mean to ipykernel; what a kernel manager may hand ipykernel and akernel has
no use for (a file name from ``jupyter run``, port numbers, session options)
is ignored with a warning. Bad input stops with one line on stderr and a
non-zero exit.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from copy import deepcopy
from importlib.util import find_spec
from pathlib import Path

from traitlets import Bool, Enum, TraitError, Unicode
from traitlets.config import Application

from ._version import __version__

log = logging.getLogger("akernel")

_CLASS_TRAIT = re.compile(r"^--[A-Za-z_]\w*(\.[A-Za-z_]\w*)+(=.*)?$")

# ipykernel's options that mean nothing to akernel: the connection file gives
# the ports and the key, output always goes to the frontend, and the event
# loop is chosen with --backend. Options with a value, then flags.
IGNORED_OPTIONS = {
    "hb": "the connection file gives the ports",
    "shell": "the connection file gives the ports",
    "iopub": "the connection file gives the ports",
    "stdin": "the connection file gives the ports",
    "control": "the connection file gives the ports",
    "ident": "session options come from the connection file",
    "user": "session options come from the connection file",
    "keyfile": "the connection file gives the key",
}
IGNORED_FLAGS = {
    "secure": "the connection file gives the key",
    "no-secure": "the connection file gives the key",
    "no-stdout": "output always goes to the frontend",
    "no-stderr": "output always goes to the frontend",
    "trio-loop": "use --backend trio",
    "init": "profiles are not copied from IPython's templates",
    "show-config": "not supported",
    "show-config-json": "not supported",
}


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
    allow_unsigned = Bool(
        False,
        help="Serve a connection file whose key is empty: messages are then neither signed"
        " nor checked, and anyone who can reach the ports can run code.",
    ).tag(config=True)
    # Off by default: jupyter console --existing (jupyter_client 8.10's
    # JupyterConsoleApp) reads the curve keys but connects without them, so it
    # would hang on the very command the kernel prints.
    curve = Bool(
        False,
        help="Encrypt a kernel that writes its own connection file with CurveZMQ:"
        " a fresh keypair goes into the file, and clients built from the file"
        " (jupyter_client's KernelClient.load_connection_file) encrypt too. A file given"
        " to the kernel is served as it says.",
    ).tag(config=True)

    profile = Unicode(
        "default", help="IPython profile whose configuration and start-up files to use."
    ).tag(config=True)
    ipython_dir = Unicode(
        "", help="IPython directory holding the profiles (default: $IPYTHONDIR or ~/.ipython)."
    ).tag(config=True)
    extra_config_file = Unicode("", help="A config file to load after the profile's.").tag(
        config=True
    )

    # IPython's shell options (-c, -m, --ext, --matplotlib, --colors...) are
    # added by initialize: they configure InteractiveShell and the start-up
    # code, as in ipykernel.
    aliases = {
        "profile": "LaunchApp.profile",
        "profile-dir": "ProfileDir.location",
        "ipython-dir": "LaunchApp.ipython_dir",
        "config": "LaunchApp.extra_config_file",
        "f": "LaunchApp.connection_file",
        "connection-file": "LaunchApp.connection_file",
        "backend": "LaunchApp.backend",
        "transport": "LaunchApp.transport",
        "ip": "LaunchApp.ip",
        "log-level": "Application.log_level",
    }
    flags = {
        "debug": ({"Application": {"log_level": logging.DEBUG}}, "Log at DEBUG level."),
        "quiet": ({"Application": {"log_level": logging.CRITICAL}}, "Log only critical errors."),
        "allow-unsigned": (
            {"LaunchApp": {"allow_unsigned": True}},
            "Accept a connection file with an empty key (unsigned messages).",
        ),
        "curve": (
            {"LaunchApp": {"curve": True}},
            "Encrypt with CurveZMQ when the kernel writes its own connection file.",
        ),
    }

    def initialize(self, argv: list[str] | None = None) -> None:
        # Imported here: IPython is slow to import, and only a kernel needs it.
        from IPython.core.shellapp import shell_aliases, shell_flags

        self.aliases = {**shell_aliases, **type(self).aliases}
        self.flags = {**shell_flags, **type(self).flags}
        argv, ignored = _check_launch_args(argv or [], self.aliases, self.flags)
        super().initialize(argv)
        ignored += [
            f"ignoring argument {arg!r}: akernel runs no file named on its command line"
            " (jupyter run sends the file's code to the kernel itself)"
            for arg in self.extra_args
        ]
        command_line = deepcopy(self.config)
        self._load_profile_config()
        # Command-line options win over the config files.
        self.update_config(command_line)
        log_to_stderr("akernel", self.log_level)
        for warning in ignored:
            log.warning(warning)

    def _load_profile_config(self) -> None:
        """Find the profile, tell the shell where it is, load its config files."""
        from jupyter_core.paths import jupyter_config_path

        from .profile_config import ProfileError, load_config_files, resolve_profile_dir

        try:
            profile_dir = resolve_profile_dir(self.config, self.profile, self.ipython_dir)
            load_config_files(
                self,
                profile_dir,
                jupyter_paths=jupyter_config_path(),
                extra_config_file=self.extra_config_file,
            )
        except ProfileError as e:
            raise UsageError(str(e)) from None
        # The shell and its start-up code take the profile from here.
        self.config.ProfileDir.location = profile_dir
        if self.ipython_dir:
            self.config.InteractiveShell.ipython_dir = os.path.expanduser(self.ipython_dir)

    def start(self) -> None:
        import anyio

        from .execution import StartupCode
        from .kernel import Kernel
        from .transport import ConnectionError_, bind_kernel_sockets

        if self.backend == "trio" and find_spec("trio") is None:
            raise UsageError("--backend trio needs trio: pip install 'akernel[trio]'")
        info, path, created = self._connection_info()
        # Where ipykernel keeps it, and where libraries and %connect_info look.
        self.config.IPKernelApp.connection_file = os.path.abspath(path)
        made_key = False if created else self._settle_key(info, path)
        # Clients only find what the kernel chose if the file says it.
        rewrite = created or made_key or info.chooses_ports()
        try:
            sockets = bind_kernel_sockets(info)
        except ConnectionError_ as e:
            raise UsageError(str(e)) from None
        try:
            try:
                if rewrite:
                    info.write(path)
                kernel = Kernel(
                    info,
                    sockets,
                    backend=self.backend,
                    config=self.config,
                    startup=StartupCode(config=self.config),
                    # A file of its own has a new key: no earlier kernel used it.
                    replay_guard_file=None if created else _replay_guard_file(info.key),
                    connection_file=os.path.abspath(path),
                    # A restart reuses a file it was given: keep a crash journal.
                    journal=not created,
                )
            except ConnectionError_ as e:
                raise UsageError(str(e)) from None
            except TraitError as e:
                raise UsageError(f"bad configuration value: {e}") from None
            except BaseException:
                sockets.close()
                raise
            if created:
                from .embed import connect_hint

                print(
                    f"akernel: connect with: {connect_hint(path, info.uses_curve)}", file=sys.stderr
                )
            if info.uses_curve:
                log.info("CurveZMQ: every socket is encrypted")
            elif warning := info.unencrypted_warning():
                log.warning(warning)
            anyio.run(kernel.serve, backend=self.backend)
        finally:
            if created:
                Path(path).unlink(missing_ok=True)

    def _settle_key(self, info, path: str) -> bool:
        """Refuse an empty key unless allowed; make one if there is none.
        Whether a key was made (the file must then say so)."""
        from .wire import new_id

        if "key" in info.absent:
            info.key = new_id()
            log.info("connection file %s has no key: signing with a new one, written to it", path)
            return True
        if not info.key:
            if not self.allow_unsigned:
                raise UsageError(
                    f"connection file {path} has an empty key, so anyone who can reach its"
                    " ports could run code; give it a key, or accept this with --allow-unsigned"
                    " (LaunchApp.allow_unsigned)"
                )
            log.warning(
                "connection file %s has an empty key: messages are not signed, and anyone"
                " who can reach the ports can run code (LaunchApp.allow_unsigned)",
                path,
            )
        return False

    def _connection_info(self):
        import zmq
        from jupyter_core.paths import jupyter_runtime_dir

        from .transport import ConnectionError_, ConnectionInfo
        from .transport.connection import default_ip
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
        info.ip = self.ip or default_ip(self.transport, path)
        if self.curve:
            if not zmq.has("curve"):
                raise UsageError("--curve needs a libzmq built with CurveZMQ support")
            info.make_curve_keys()
        return info, path, True


def _replay_guard_file(key: str) -> Path | None:
    """Where kernels started with this key remember the messages they ran."""
    if not key:
        return None
    from jupyter_core.paths import jupyter_runtime_dir

    from .transport.replay import guard_file

    runtime = Path(jupyter_runtime_dir())
    runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
    return guard_file(runtime, key.encode())


def _check_launch_args(argv: list[str], aliases: dict, flags: dict) -> tuple[list[str], list[str]]:
    """Reject what traitlets would only warn about, with a one-line message.
    Return the arguments for traitlets, without the ignored ones, and a
    warning for each ignored one."""
    kept: list[str] = []
    warnings: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        name, has_value, _ = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name in IGNORED_FLAGS and not has_value:
            warnings.append(f"ignoring {arg}: {IGNORED_FLAGS[name]}")
            continue
        if arg.startswith("-") and name in IGNORED_OPTIONS:
            if not has_value:
                if i >= len(argv):
                    raise UsageError(f"option {arg} needs a value")
                arg = f"{arg} {argv[i]}"
                i += 1
            warnings.append(f"ignoring {arg}: {IGNORED_OPTIONS[name]}")
            continue
        kept.append(arg)
        if not arg.startswith("-") or arg == "-":
            continue
        if _CLASS_TRAIT.match(arg):
            if "=" not in arg:
                if i >= len(argv):
                    raise UsageError(f"option {arg} needs a value")
                kept.append(argv[i])
                i += 1
            continue
        if name in ("h", "help", "help-all", "version"):
            continue
        if name in flags and name in aliases:
            # --matplotlib alone, or --matplotlib=inline, as in IPython.
            continue
        if name in flags:
            if has_value:
                raise UsageError(f"flag --{name} takes no value")
            continue
        if name in aliases:
            if not has_value:
                if i >= len(argv) or (argv[i].startswith("-") and argv[i] != "-"):
                    raise UsageError(f"option {arg} needs a value")
                kept.append(argv[i])
                i += 1
            continue
        raise UsageError(f"unknown option: {arg}")
    return kept, warnings


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
