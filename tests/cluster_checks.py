"""What every launcher must give: akernel engines that register, compute and stop.

One set of checks for a cluster of akernel engines, whatever started them
(mpiexec, ssh or Slurm): the engines register with distinct ids and run
akernel on the asked backend; ``apply``, ``map`` and ``%px`` compute on them;
with MPI, each engine is one rank, ``mpi_rank``/``mpi_size`` are defined and
an mpi4py allreduce through ``%px`` adds every rank; then
``Client.shutdown(block=True)`` gets every reply, and no engine process, nor
any process that started one, is left.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import ipyparallel as ipp
import psutil
from ipyparallel.cluster.launcher import find_launcher_class
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

# Engines start one by one on a 2-core machine, and through ssh or Slurm.
REGISTER_TIMEOUT = 120
STOP_TIMEOUT = 60
# In the environment of every process an engine launcher starts.
MARKER = "AKERNEL_CLUSTER_CHECK"


def _engine_command_line() -> list[str]:
    import psutil

    return psutil.Process().cmdline()


def _px(client: ipp.Client, line: str) -> None:
    """Run the ``%px`` magic, as a user would in IPython, on all the engines."""
    # activate() registers %px with the running IPython: one for the call, so
    # that no other test of this process finds it.
    shell = InteractiveShell.instance()
    try:
        view = client[:]
        view.block = True
        view.activate()
        shell.run_line_magic("px", line)
    finally:
        InteractiveShell.clear_instance()


def processes_marked(marker: str) -> list[psutil.Process]:
    """Processes, other than this one, whose environment carries ``marker``."""
    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if process.environ().get(MARKER) == marker:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def _wait_none_marked(marker: str, timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while (left := processes_marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def check_cluster(
    profile_dir: Path,
    config: Config,
    engines: str,
    n: int,
    backend: str,
    *,
    mpi: bool = False,
) -> dict[str, Any]:
    """Start a controller and ``n`` engines with ``engines`` (a launcher name such as
    ``"mpi"``) and ``config``, run the checks, stop everything; what was seen.

    Every process the engine launcher starts (``mpiexec``, ``ssh``, the engines and
    their nannies...) carries a marker in its environment; none may be left.
    """
    marker = uuid.uuid4().hex
    launcher_class = find_launcher_class(engines, "engine")
    launcher_config = config[launcher_class.__name__]
    launcher_config.environment = {**launcher_config.get("environment", {}), MARKER: marker}
    cluster = ipp.Cluster(
        n=n, engines=engines, config=config, profile_dir=str(profile_dir), log_level=30
    )
    try:
        client = cluster.start_and_connect_sync()
        try:
            return _check_engines(client, marker, n, backend, mpi)
        finally:
            client.close()
    finally:
        cluster.stop_cluster_sync()
        left = _wait_none_marked(marker, STOP_TIMEOUT)
        _kill(left)  # so that a failed check leaves nothing either
        assert not left, f"left running: {[(p.pid, p.name()) for p in left]}"


def _check_engines(
    client: ipp.Client, marker: str, n: int, backend: str, mpi: bool
) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    client.wait_for_engines(n, timeout=REGISTER_TIMEOUT)
    seen["ids"] = sorted(client.ids)
    assert len(set(client.ids)) == n, client.ids

    for argv in client[:].apply_sync(_engine_command_line):
        assert "akernel.engine" in " ".join(argv), argv
    pids = client[:].apply_sync(os.getpid)
    assert len(set(pids)) == n, pids
    marked = processes_marked(marker)
    # The marker reached the engines (or "none left" below would prove nothing).
    assert set(pids) <= {p.pid for p in marked}, (pids, marked)
    seen["processes"] = sorted({p.name() for p in marked})

    # The engine runs akernel on the asked backend (a cell runs inside its loop).
    view = client[:]
    view.execute("import sniffio; _library = sniffio.current_async_library()", block=True)
    assert view["_library"] == [backend] * n, view["_library"]

    assert client[:].map_sync(lambda x: x * x, range(4 * n)) == [x * x for x in range(4 * n)]
    balanced = client.load_balanced_view()
    assert balanced.map_sync(lambda x: x + 1, range(4 * n)) == list(range(1, 4 * n + 1))

    _px(client, "_hello = f'hello from {__import__(\"os\").getpid()}'")
    assert sorted(view["_hello"]) == sorted(f"hello from {pid}" for pid in pids)

    if mpi:
        ranks = view["mpi_rank"]
        assert sorted(ranks) == list(range(n)), ranks
        assert view["mpi_size"] == [n] * n
        # The engine id is the MPI rank (ipengine's --mpi does the same).
        by_id = dict(zip(client.ids, ranks, strict=True))
        assert all(engine_id == rank for engine_id, rank in by_id.items()), by_id
        _px(client, "_total = MPI.COMM_WORLD.allreduce(mpi_rank + 1)")
        seen["allreduce"] = view["_total"]
        assert seen["allreduce"] == [n * (n + 1) // 2] * n
        printed = view.execute("print(mpi_rank, mpi_size)", block=True)
        assert sorted(printed.stdout) == sorted(f"{r} {n}\n" for r in range(n))

    done = threading.Event()

    def shutdown() -> None:
        client.shutdown(block=True)
        done.set()

    # Client.shutdown has no timeout: a lost reply is a thread still waiting.
    threading.Thread(target=shutdown, daemon=True).start()
    assert done.wait(STOP_TIMEOUT), "a shutdown_reply never arrived"
    seen["shutdown_replies"] = n
    return seen


def summary(seen: dict[str, Any]) -> str:
    """One line of what a check saw, for the session's output."""
    return "; ".join(f"{key}: {value}" for key, value in seen.items()) + "; none left"


def _kill(processes: list[psutil.Process]) -> None:
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=10)


__all__ = ["check_cluster", "processes_marked", "summary"]
