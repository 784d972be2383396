"""The magics every IPython kernel has on top of IPython's own.

A kernel has no terminal: pagers become ``page`` payloads, an editor becomes
an ``edit_magic`` payload the frontend acts on, and the connection details a
second client needs are printed. Same names, arguments and payloads as
ipykernel's, so frontends and users find what they know.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from IPython.core import page
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magics import CodeMagics
from IPython.core.magics.code import MacroToEdit
from IPython.display import Javascript, display
from IPython.utils import openpy
from IPython.utils.process import arg_split

from ..channels import current_request

# GUI names that need no event loop in the kernel: the figure lives in the
# frontend (inline images, widgets, nbagg's comm) or in a browser (webagg).
# Event loops themselves (qt, tk) are akernel/gui's.
LOOPLESS_GUIS = frozenset({None, "inline", "nbagg", "notebook", "webagg", "ipympl", "widget"})

# ANSI "cursor home, erase screen, erase scrollback": what ``clear`` prints
# for an xterm, written directly so that no terminal database is needed.
CLEAR_SCREEN = "\x1b[H\x1b[2J\x1b[3J"


def connection_details(shell: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The kernel's connection info (as in its file) and its file, if known.

    The shell's traitlets parent is the kernel, which holds the info; the
    launcher records the file as ``IPKernelApp.connection_file``, where
    ipykernel keeps it.
    """
    info = getattr(getattr(shell, "parent", None), "info", None)
    data = info.to_dict() if info is not None and hasattr(info, "to_dict") else None
    path = None
    config = shell.config
    if "IPKernelApp" in config and config.IPKernelApp.get("connection_file"):
        path = str(config.IPKernelApp.connection_file)
    return data, path


@magics_class
class KernelMagics(Magics):
    """``%edit``, ``%clear``, ``%less``/``%more``, ``%man``, ``%connect_info``,
    ``%autosave``, ``%qtconsole``, ``%gui`` and ``%subshell``, as a kernel has them."""

    @line_magic
    def edit(self, parameter_s: str = "", last_call: list[str] | None = None) -> None:
        """Open a file, an object's source or history lines in the frontend's editor.

        Usage: ``%edit [-n LINE] [-p] [-r] [target]``, with targets as in
        IPython's ``%edit`` (a file, an object, history ranges). The frontend
        gets an ``edit_magic`` payload with the file's absolute path and line;
        nothing is run when the editor closes (the kernel cannot know when).
        """
        opts, args = self.parse_options(parameter_s, "prn:")
        try:
            filename, lineno, _ = CodeMagics._find_edit_target(
                self.shell, args, opts, last_call or ["", ""]
            )
        except MacroToEdit:
            print("Macro editing is not available in a kernel.")
            return
        if filename is None:
            # _find_edit_target has already said why (e.g. an unknown object).
            return
        # The client may run elsewhere in the file system than the kernel.
        payload = {
            "source": "edit_magic",
            "filename": str(Path(filename).resolve()),
            # -n arrives as text; frontends want the number.
            "line_number": int(lineno) if str(lineno).isdigit() else lineno,
        }
        self.shell.payload_manager.write_payload(payload)

    @line_magic
    def clear(self, arg_s: str = "") -> None:
        """Clear the terminal of a console frontend."""
        sys.stdout.write(CLEAR_SCREEN)
        sys.stdout.flush()

    @line_magic
    def less(self, arg_s: str = "") -> None:
        """Show a file in the frontend's pager; ``.py`` files are highlighted."""
        path = arg_s.strip()
        if not path:
            raise UsageError("%less needs a file name: %less FILE")
        try:
            if path.endswith(".py"):
                text = self.shell.pycolorize(openpy.read_py_file(path, skip_encoding_cookie=False))
            else:
                text = Path(path).read_text()
        except FileNotFoundError:
            raise UsageError(f"no such file: {path}") from None
        except IsADirectoryError:
            raise UsageError(f"{path} is a directory, not a file") from None
        except (OSError, UnicodeDecodeError, SyntaxError) as e:
            raise UsageError(f"cannot read {path}: {e}") from None
        page.page(text)

    more = line_magic("more")(less)

    @line_magic
    def man(self, arg_s: str = "") -> None:
        """Show a command's manual page in the frontend's pager."""
        if not arg_s.strip():
            raise UsageError("%man needs a command name: %man CMD")
        if os.name != "posix":
            raise UsageError("%man needs a POSIX system with man installed")
        # col -b removes the overstrikes man uses for bold text.
        text = self.shell.getoutput(f"man {arg_s} | col -b", split=False)
        page.page(text)

    @line_magic
    def connect_info(self, arg_s: str = "") -> None:
        """Print how another client (a console, a second notebook) connects to
        this kernel: the connection info, and the command that uses its file."""
        data, path = connection_details(self.shell)
        if data is None:
            raise UsageError("this kernel's connection info is not known")
        print(json.dumps(data, indent=2) + "\n")
        if path is None:
            print(
                "Paste the above JSON into a file, and connect with:\n"
                "    $> jupyter <app> --existing <file>"
            )
            return
        from jupyter_core.paths import jupyter_runtime_dir

        # Files in the runtime directory are found by name alone.
        if Path(path).parent == Path(jupyter_runtime_dir()):
            path = Path(path).name
        print(
            "Paste the above JSON into a file, and connect with:\n"
            "    $> jupyter <app> --existing <file>\n"
            "or, if you are local, you can connect with just:\n"
            f"    $> jupyter <app> --existing {path}\n"
            "or even just:\n"
            "    $> jupyter <app> --existing\n"
            "if this is the most recent Jupyter kernel you have started."
        )

    @line_magic
    def qtconsole(self, arg_s: str = "") -> subprocess.Popen | None:
        """Open a Qt console connected to this kernel (extra arguments go to it)."""
        if find_spec("qtconsole") is None:
            raise UsageError("%qtconsole needs the Qt console: pip install qtconsole")
        _, path = connection_details(self.shell)
        if path is None:
            raise UsageError("%qtconsole needs this kernel's connection file, which is not known")
        argv = arg_split(arg_s, os.name == "posix")
        # A session of its own: interrupting the kernel must not reach the console.
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from qtconsole import qtconsoleapp; qtconsoleapp.main()",
                "--existing",
                path,
                *argv,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    @line_magic
    def autosave(self, arg_s: str = "") -> None:
        """Set the classic Notebook's autosave interval in seconds (0 disables it)."""
        try:
            interval = int(arg_s)
        except ValueError:
            raise UsageError(f"%autosave needs a whole number of seconds, got {arg_s!r}") from None
        display(
            Javascript(f"IPython.notebook.set_autosave_interval({1000 * interval})"),
            include=["application/javascript"],
        )
        print(f"Autosaving every {interval} seconds" if interval else "Autosave disabled")

    @line_magic
    def gui(self, parameter_s: str = "") -> None:
        """Enable a GUI event loop (``%gui qt``, ``%gui tk``: docs/gui.md), or
        switch it off (``%gui`` alone, or a loop-less name).

        IPython's own ``%gui`` logs failures to the kernel's log, where the
        user never sees them; here they are the cell's error.
        """
        _, arg = self.parse_options(parameter_s, "")
        self.shell.enable_gui(arg.strip() or None)

    @line_magic
    def subshell(self, arg_s: str = "") -> None:
        """Say which kernel subshell runs this cell (None: the parent shell), and
        list the kernel's subshells; in ipykernel's format."""
        manager = getattr(self.shell.kernel, "subshells", None)
        if manager is None:
            print("This kernel has no subshells")
            return
        request = current_request.get()
        subshell_id = request.header.get("subshell_id") if request is not None else None
        print(f"subshell id: {subshell_id}")
        print(f"thread id: {threading.current_thread().ident}")
        print(f"main thread id: {threading.main_thread().ident}")
        print(f"pid: {os.getpid()}")
        print(f"thread count: {threading.active_count()}")
        print(f"subshell list: {manager.ids()}")
