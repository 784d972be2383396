"""IPython's input history, written out in batches."""

from __future__ import annotations

import anyio
import anyio.abc

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

    async def save_periodically() -> None:
        while True:
            await anyio.sleep(interval)
            # The saving thread is stopped around fork (``!cmd``) and
            # restarted by the next input, so its flag can be missing.
            flag = history.save_flag
            if flag is not None and (history.db_input_cache or history.db_output_cache):
                flag.set()

    tg.start_soon(save_periodically)
