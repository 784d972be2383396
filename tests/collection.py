"""Test directories collected only when named on pytest's command line.

``tests/e2e`` and ``tests/launchers`` need parts the main suite does not
install (a browser; sshd and Slurm): their conftests use this hook, so that
``pytest`` alone leaves them out and ``pytest tests/e2e`` runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def collected_only_when_named(here: Path) -> Callable[[Path, Any], bool | None]:
    """A ``pytest_ignore_collect`` hook for a conftest in ``here``: the tests there
    are collected only when a path given to pytest is ``here`` or inside it (they
    need parts the main suite does not install)."""

    def named_on_command_line(config: Any) -> bool:
        for arg in config.args:
            path = Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
            if path == here or here in path.parents:
                return True
        return False

    def pytest_ignore_collect(collection_path: Path, config: Any) -> bool | None:
        if collection_path.suffix == ".py" and not named_on_command_line(config):
            return True
        return None

    return pytest_ignore_collect
