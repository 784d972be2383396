"""IPython's input history, written out in batches."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import anyio.abc

if TYPE_CHECKING:
    from .shell import AkernelShell


def batch_history_writes(shell: AkernelShell, tg: anyio.abc.TaskGroup, interval: float) -> None:
    """Write the shell's history to its database every ``interval`` seconds, from
    a task in ``tg``, instead of after every cell.

    IPython commits every cell to sqlite from its saving thread, which holds
    the cache lock the next cell needs: a stall per cell. (Not used when
    ``HistoryManager.db_cache_size`` is configured: that is the user's choice.)
    """
    history = shell.history_manager
    if history is None or not history.enabled or history.save_flag is None:
        return
    history.db_cache_size = 1 << 30

    # IPython stops its saving thread before a fork (``!cmd``) and starts it
    # again only when a cell fills the cache, which never happens here.
    restart = getattr(history, "_restart_thread_if_stopped", lambda: None)

    async def save_periodically() -> None:
        while True:
            await anyio.sleep(interval)
            if not (history.db_input_cache or history.db_output_cache):
                continue
            if history.save_flag is None:
                restart()
            flag = history.save_flag
            if flag is not None:
                flag.set()

    tg.start_soon(save_periodically)
