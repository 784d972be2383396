"""``get_ipython().kernel``: the kernel object libraries written for ipykernel reach for."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .shell import AkernelShell


class KernelHandle:
    """``get_ipython().kernel``: what libraries written for ipykernel look up.

    ipywidgets' ``Output`` widget, for one, needs a kernel object and the
    request being handled to capture output into the widget.
    """

    def __init__(self, shell: AkernelShell) -> None:
        self._shell = shell

    # The kernel's task group for work that outlives a cell (set by the kernel).
    task_group: Any = None

    def get_parent(self, channel: str = "shell") -> dict[str, Any]:
        return self._shell.get_parent()

    @property
    def comm_manager(self) -> Any:
        import comm

        return comm.get_comm_manager()
