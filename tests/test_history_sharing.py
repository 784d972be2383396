"""Many kernels, asyncio and trio mixed, sharing one IPython profile's history.sqlite.

IPython took a database it could not lock within sqlite's busy timeout (5 s)
for a corrupt one and renamed it to ``history-corrupt-*.sqlite``; every other
process on the old file then failed with "attempt to write a readonly
database", and history was lost. Here another process holds the database
longer than that (as a commit stalled on a slow disk does) while kernels run
cells, answer history requests and start; kernels start and stop around it.
Afterwards the file must be the same one, hold every cell of every kernel,
and no kernel may have reported an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import AsyncKernelManager

from .conftest import BACKENDS, kernel_name
from .utils import run_ok

TIMEOUT = 60  # a kernel may wait out the held database (LOCK_SECONDS) at any step
LOCK_SECONDS = 7.0  # longer than sqlite3's default busy timeout of 5 s
FIRST_WAVE = 28  # kernels running when the database gets held
SECOND_WAVE = 14  # kernels starting while it is held
CELLS = 200  # cells per kernel before, and again after, the database is held


@dataclass
class Kernel:
    """One kernel process and what the test saw of it."""

    backend: str
    tag: str
    stderr: Path
    ipc: Path  # the prefix of its ipc socket files
    km: AsyncKernelManager | None = None
    kc: AsyncKernelClient | None = None
    stored: list[str] = field(default_factory=list)  # cells run with store_history
    complaints: list[str] = field(default_factory=list)  # stderr streams, errors


async def start(kernel: Kernel, env: dict[str, str]) -> None:
    kernel.km = AsyncKernelManager(
        kernel_name=kernel_name(kernel.backend), transport="ipc", ip=str(kernel.ipc)
    )
    with open(kernel.stderr, "w") as err:
        await kernel.km.start_kernel(env=env, stdout=err, stderr=err)
    kernel.kc = kernel.km.client()
    kernel.kc.start_channels()
    await kernel.kc.wait_for_ready(timeout=TIMEOUT)


async def stop(kernel: Kernel) -> None:
    if kernel.kc is not None:
        kernel.kc.stop_channels()
    if kernel.km is not None and kernel.km.has_kernel:
        await kernel.km.shutdown_kernel(now=False)
        await kernel.km.cleanup_resources()


async def until_idle(kernel: Kernel, msg_id: str) -> None:
    """Read IOPub up to the idle of ``msg_id``, keeping anything that looks like a complaint."""
    while True:
        msg = await kernel.kc.get_iopub_msg(timeout=TIMEOUT)
        content = msg["content"]
        if msg["msg_type"] == "error" or (
            msg["msg_type"] == "stream" and content["name"] == "stderr"
        ):
            kernel.complaints.append(str(content))
        elif msg["msg_type"] == "stream" and "history" in content["text"].lower():
            kernel.complaints.append(str(content))
        if (
            msg["msg_type"] == "status"
            and content["execution_state"] == "idle"
            and msg["parent_header"].get("msg_id") == msg_id
        ):
            return


async def reply_to(kernel: Kernel, msg_id: str) -> dict:
    while True:
        reply = await kernel.kc.get_shell_msg(timeout=TIMEOUT)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"]


async def run_cells(kernel: Kernel, count: int) -> None:
    for _ in range(count):
        code = f"cell_{len(kernel.stored)} = {len(kernel.stored)}  # {kernel.tag}"
        msg_id = kernel.kc.execute(code, store_history=True)
        reply = await reply_to(kernel, msg_id)
        await until_idle(kernel, msg_id)
        assert reply["status"] == "ok", reply
        kernel.stored.append(code)


async def tail(kernel: Kernel, n: int) -> list[str]:
    """The sources of the last ``n`` cells, as a history_request returns them."""
    msg_id = kernel.kc.history(hist_access_type="tail", n=n, raw=True, output=False)
    reply = await reply_to(kernel, msg_id)
    await until_idle(kernel, msg_id)
    assert reply["status"] == "ok", reply
    return [source for _, _, source in reply["history"]]


async def shared_profile_scenario(ipython_dir: Path, logs: Path) -> list[Kernel]:
    env = {**os.environ, "IPYTHONDIR": str(ipython_dir)}
    database = ipython_dir / "profile_default" / "history.sqlite"
    run = uuid.uuid4().hex[:6]
    kernels = [
        Kernel(BACKENDS[i % 2], f"{run}-k{i}", logs / f"k{i}.stderr", logs / f"k{i}")
        for i in range(FIRST_WAVE + SECOND_WAVE)
    ]
    first, second = kernels[:FIRST_WAVE], kernels[FIRST_WAVE:]
    try:
        await asyncio.gather(*(start(k, env) for k in first))
        await asyncio.gather(*(run_cells(k, CELLS) for k in first))

        # Another process holds the database: a commit stalled on a slow disk.
        holder = sqlite3.connect(database, isolation_level=None, timeout=TIMEOUT)
        holder.execute("BEGIN EXCLUSIVE")

        async def release_later() -> None:
            try:
                await asyncio.sleep(LOCK_SECONDS)
            finally:
                holder.rollback()
                holder.close()

        released = asyncio.create_task(release_later())
        # Cells go on, history is asked for, new kernels start, meanwhile.
        running, asking = first[::2], first[1::2]
        try:
            _, tails, _ = await asyncio.gather(
                asyncio.gather(*(run_cells(k, CELLS) for k in running)),
                asyncio.gather(*(tail(k, 3) for k in asking)),
                asyncio.gather(*(start(k, env) for k in second)),
            )
        finally:
            await released
        for kernel, sources in zip(asking, tails, strict=True):
            assert sources == kernel.stored[-3:], (kernel.tag, sources)

        # Churn: kernels leave while the others keep working.
        await asyncio.gather(*(stop(k) for k in first[:2]))
        busy = first[2:] + second
        await asyncio.gather(*(run_cells(k, CELLS) for k in busy))
        for kernel in busy:
            assert await tail(kernel, 2) == kernel.stored[-2:], kernel.tag
    finally:
        await asyncio.gather(*(stop(k) for k in kernels), return_exceptions=True)
    return kernels


def test_many_kernels_share_one_history_database(tmp_path: Path) -> None:
    ipython_dir, logs = tmp_path / "ipython", tmp_path / "logs"
    logs.mkdir()
    kernels = asyncio.run(asyncio.wait_for(shared_profile_scenario(ipython_dir, logs), timeout=240))

    profile = ipython_dir / "profile_default"
    assert sorted(p.name for p in profile.glob("history*")) == ["history.sqlite"]
    with contextlib.closing(sqlite3.connect(profile / "history.sqlite")) as db:
        for kernel in kernels:
            rows = db.execute(
                "SELECT session, source_raw FROM history WHERE source_raw LIKE ?"
                " ORDER BY session, line",
                (f"% # {kernel.tag}",),
            ).fetchall()
            assert [source for _, source in rows] == kernel.stored, kernel.tag
            # One session per kernel, closed at shutdown with its count of cells.
            (session,) = {session for session, _ in rows}
            end, count = db.execute(
                "SELECT end, num_cmds FROM sessions WHERE session = ?", (session,)
            ).fetchone()
            assert end is not None and count == len(kernel.stored), kernel.tag
    for kernel in kernels:
        assert kernel.complaints == [], kernel.tag
        lines = kernel.stderr.read_text().splitlines()
        assert [line for line in lines if "WARNING" in line or "ERROR" in line] == [], kernel.tag
        assert not any("Traceback" in line or "sqlite" in line for line in lines), kernel.tag


def test_history_reaches_the_database_while_the_kernel_runs(kc: BlockingKernelClient) -> None:
    """Cells are written within seconds, not only at shutdown (a kernel that is
    killed keeps its history), also after a shell command: IPython stops its
    saving thread before forking."""
    marker = uuid.uuid4().hex
    run_ok(kc, "!true")
    run_ok(kc, f"after_a_fork = 1  # {marker}")
    database = Path(os.environ["IPYTHONDIR"]) / "profile_default" / "history.sqlite"
    deadline = time.monotonic() + TIMEOUT
    while True:
        with contextlib.closing(sqlite3.connect(database, timeout=TIMEOUT)) as db:
            rows = db.execute(
                "SELECT source_raw FROM history WHERE source_raw LIKE ?", (f"% # {marker}",)
            ).fetchall()
        if rows:
            break
        assert time.monotonic() < deadline, "the cell never reached the history database"
        time.sleep(0.1)
