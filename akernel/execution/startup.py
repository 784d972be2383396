"""Code that runs before a kernel serves its first request.

The same start-up code as IPython's terminal and ipykernel run, with the same
options, read from the same config section (``c.InteractiveShellApp``):

* ``$PYTHONSTARTUP`` and the profile's ``startup/*.py`` and ``*.ipy`` files;
* ``exec_lines`` and ``exec_files``;
* ``extensions`` (and IPython's default ``storemagic``);
* ``matplotlib``/``pylab`` integration;
* ``code_to_run`` and ``file_to_run`` (an engine's ``-c`` and ``-s``).

IPython's ``InteractiveShellApp`` does the work; this class gives it what an
application would (a log, the profile, the shell).
"""

from __future__ import annotations

import sys
from typing import Any

from IPython.core.profiledir import ProfileDir
from IPython.core.shellapp import InteractiveShellApp
from traitlets.config import LoggingConfigurable

from .shell import AkernelShell


class StartupCode(InteractiveShellApp, LoggingConfigurable):
    """Runs the configured start-up code in a kernel's shell."""

    def __init__(self, *, profile_dir: ProfileDir | None = None, **kwargs: Any) -> None:
        """``profile_dir``: whose ``startup/`` to run (the shell's by default)."""
        super().__init__(**kwargs)
        self._profile_dir = profile_dir
        # What InteractiveShellApp expects of the application it is mixed into.
        self.extra_args: list[str] = []

    @property
    def profile_dir(self) -> ProfileDir:
        return self._profile_dir or self.shell.profile_dir

    @property
    def ipython_dir(self) -> str:
        return self.shell.ipython_dir

    def run(self, shell: AkernelShell) -> None:
        """Run it all in ``shell``, in IPython's order. Errors are shown (and
        logged) and the kernel goes on, as ipykernel does."""
        self.shell = shell
        self.init_gui_pylab()
        self.init_extensions()
        self.init_code()

    def exit(self, status: int = 0) -> None:
        # Only called when ``interact`` is false, which a kernel never is.
        sys.exit(status)
