"""Code that runs before a kernel serves its first request.

The same start-up code as IPython's terminal and ipykernel run, with the same
options, read from the same config sections (``c.InteractiveShellApp``, and
``c.IPKernelApp`` as ipykernel's application is one):

* ``''`` in ``sys.path``, so that modules in the working directory (after a
  ``%cd`` too) can be imported;

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
from copy import deepcopy
from typing import Any

from IPython.core.profiledir import ProfileDir
from IPython.core.shellapp import InteractiveShellApp
from traitlets.config import Config, LoggingConfigurable

from .shell import AkernelShell


class StartupCode(InteractiveShellApp, LoggingConfigurable):
    """Runs the configured start-up code in a kernel's shell."""

    def __init__(self, *, profile_dir: ProfileDir | None = None, **kwargs: Any) -> None:
        """``profile_dir``: whose ``startup/`` to run (the shell's by default)."""
        config = kwargs.get("config")
        if config is not None and "IPKernelApp" in config:
            kwargs["config"] = _with_kernel_app_section(config)
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
        self.init_path()
        self.init_gui_pylab()
        self.init_extensions()
        self.init_code()

    def exit(self, status: int = 0) -> None:
        # Only called when ``interact`` is false, which a kernel never is.
        sys.exit(status)


def _with_kernel_app_section(config: Config) -> Config:
    """``config`` with what its ``IPKernelApp`` section says about start-up
    code (``exec_lines``, ``extensions``, ``matplotlib``...) applied to
    StartupCode, above ``InteractiveShellApp``, as it is in ipykernel.
    The section's other settings (the connection file...) are not ours."""
    names = set(InteractiveShellApp.class_trait_names(config=True))
    section = config.IPKernelApp
    ours = {name: deepcopy(value) for name, value in section.items() if name in names}
    if not ours:
        return config
    merged = deepcopy(config)
    merged.StartupCode.merge(Config(ours))
    return merged
