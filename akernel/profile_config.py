"""Configuration files, found where every IPython kernel finds them.

An IPython kernel reads its profile's ``ipython_config.py`` (shared with the
terminal) and then ``ipython_kernel_config.py`` (kernels only), from the
profile directory first, then from ``sys.prefix/etc/ipython`` and the
system's IPython config directories. akernel does the same, then reads
``akernel_config.py`` (the profile's, then the Jupyter config path's), so
that settings meant for akernel alone win. Command-line options win over all.

The profile is ``--profile NAME`` (``profile_NAME`` in the IPython directory,
``$IPYTHONDIR`` or ``~/.ipython``) or ``--profile-dir DIR``; ``default`` when
neither is given, created if missing, as IPython does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from traitlets.config import Application, Config

# Loaded in this order: later files override earlier ones.
IPYTHON_CONFIG_FILES = ("ipython_config", "ipython_kernel_config")
AKERNEL_CONFIG_FILE = "akernel_config"


class ProfileError(Exception):
    """The requested profile cannot be used (a one-line reason)."""


def resolve_profile_dir(config: Config, profile: str, ipython_dir: str) -> str:
    """The profile directory to use: ``ProfileDir.location`` from ``config``
    (``--profile-dir``) if set, else the profile named ``profile`` in
    ``ipython_dir`` (the default IPython directory if empty)."""
    from IPython.core.profiledir import ProfileDir, ProfileDirError
    from IPython.paths import get_ipython_dir

    location = config.ProfileDir.get("location") if "ProfileDir" in config else None
    if location:
        path = Path(os.path.expanduser(str(location))).absolute()
        if not path.is_dir():
            raise ProfileError(f"profile directory not found: {path}")
        return str(path)
    base = os.path.expanduser(ipython_dir) if ipython_dir else get_ipython_dir()
    name = profile or "default"
    try:
        return ProfileDir.find_profile_dir_by_name(base, name).location
    except ProfileDirError:
        pass
    if name != "default":
        raise ProfileError(
            f"profile {name!r} not found in {base} (create it with: ipython profile create {name})"
        )
    try:
        return ProfileDir.create_profile_dir_by_name(base, name).location
    except (ProfileDirError, OSError) as e:
        raise ProfileError(f"cannot create the default profile in {base}: {e}") from None


def ipython_config_paths(profile_dir: str) -> list[str]:
    """Where IPython looks for its config files, first taking priority."""
    from IPython.core.application import ENV_CONFIG_DIRS, SYSTEM_CONFIG_DIRS

    return [profile_dir, *ENV_CONFIG_DIRS, *SYSTEM_CONFIG_DIRS]


def load_config_files(
    app: Application,
    profile_dir: str,
    *,
    jupyter_paths: Sequence[str],
    extra_config_file: str = "",
) -> None:
    """Load every config file a kernel of ``profile_dir`` reads into
    ``app.config``, lowest priority first. A file that fails is logged and
    skipped, as traitlets does: one broken setting does not stop the kernel."""
    paths = ipython_config_paths(profile_dir)
    for name in IPYTHON_CONFIG_FILES:
        app.load_config_file(name, path=paths)
    if extra_config_file:
        path = Path(os.path.expanduser(extra_config_file)).absolute()
        if not path.is_file():
            raise ProfileError(f"config file not found: {path}")
        app.load_config_file(path.stem, path=[str(path.parent)])
    app.load_config_file(AKERNEL_CONFIG_FILE, path=[profile_dir, *jupyter_paths])
