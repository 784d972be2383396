"""The execution layer: IPython's shell and the request handlers that use it."""

from .apply import ApplyHandlers, EngineIdentity
from .background import BackgroundTasks, running_task_group_or_none, set_running
from .cell_tasks import CellTaskExit, CellTasks
from .comms import install_comms, uninstall_comms
from .control import ControlHandlers
from .handlers import ShellHandlers
from .history import batch_history_writes
from .info import kernel_info
from .interrupt import InterruptController
from .io import OutputRouter, OutStream
from .shell import AkernelShell, release_shell
from .startup import StartupCode
from .threads import propagate_context_to_threads

__all__ = [
    "AkernelShell",
    "ApplyHandlers",
    "BackgroundTasks",
    "CellTaskExit",
    "CellTasks",
    "ControlHandlers",
    "EngineIdentity",
    "InterruptController",
    "OutStream",
    "OutputRouter",
    "ShellHandlers",
    "StartupCode",
    "batch_history_writes",
    "install_comms",
    "kernel_info",
    "propagate_context_to_threads",
    "release_shell",
    "running_task_group_or_none",
    "set_running",
    "uninstall_comms",
]
