"""Process-wide state the kernel changes, put back at stop only where it is still the kernel's.

A kernel sets a few process-wide things while it serves: ``sys.stdout`` and
``sys.stderr``, signal handlers, ``pdb.set_trace``, an asyncio loop's task
factory; IPython's shell sets more when it is created (``sys.ps1``,
``sys.modules["__main__"]``, ``builtins.display``, ``PAGER`` and friends in
``os.environ``, a warnings filter). In an embedded kernel the process is the
host application's, and it may change the same things meanwhile (configure
logging, install its own handler): at stop, each value is put back to what
it was before the kernel only if it still is the one the kernel (or IPython)
set. What the host set since stays.
"""

from __future__ import annotations

import builtins
import os
import sys
import warnings
from collections.abc import Callable, MutableMapping
from typing import Any

_MISSING = object()

Namespace = MutableMapping[str, Any]


class ProcessState:
    """Records changes to process-wide values; :meth:`restore` undoes those
    that nobody changed since."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def set(self, namespace: Namespace, key: str, value: Any) -> None:
        """Set ``namespace[key]`` (e.g. ``vars(sys)["stdout"]``), to be undone at stop."""
        previous = namespace.get(key, _MISSING)
        namespace[key] = value
        self._record(namespace, key, previous, value, same=_identical)

    def watch(self) -> Callable[[], None]:
        """Snapshot what IPython's shell changes when it is created; call the
        returned function once it is, to record those changes."""
        snapshots = [
            (vars(sys), dict(vars(sys)), _identical, True),
            (vars(builtins), dict(vars(builtins)), _identical, True),
            # Modules imported meanwhile stay: only replaced entries are put back.
            (sys.modules, dict(sys.modules), _identical, False),
            (os.environ, dict(os.environ), _equal, True),
        ]
        filters = list(warnings.filters)

        def record_changes() -> None:
            for namespace, before, same, additions in snapshots:
                for key, value in list(namespace.items()):
                    previous = before.get(key, _MISSING)
                    if previous is _MISSING and not additions:
                        continue
                    if previous is _MISSING or not same(previous, value):
                        self._record(namespace, key, previous, value, same)
            added = [entry for entry in warnings.filters if entry not in filters]
            self._undo.append(lambda: _remove_filters(added))

        return record_changes

    def _record(
        self,
        namespace: Namespace,
        key: str,
        previous: Any,
        ours: Any,
        same: Callable[[Any, Any], bool],
    ) -> None:
        def undo() -> None:
            current = namespace.get(key, _MISSING)
            if current is _MISSING or not same(current, ours):
                return  # changed by someone else since: theirs now
            if previous is _MISSING:
                del namespace[key]
            else:
                namespace[key] = previous

        self._undo.append(undo)

    def restore(self) -> None:
        """Put back what is still ours, latest change first."""
        while self._undo:
            self._undo.pop()()


def _identical(a: Any, b: Any) -> bool:
    return a is b


def _equal(a: Any, b: Any) -> bool:
    return a == b


def _remove_filters(added: list[Any]) -> None:
    for entry in added:
        try:
            warnings.filters.remove(entry)
        except ValueError:
            pass  # removed by someone else already
    # The warnings module caches decisions made under the filters.
    mutated = getattr(warnings, "_filters_mutated", None)
    if mutated is not None:
        mutated()
