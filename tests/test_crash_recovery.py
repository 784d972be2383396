"""A kernel that dies is restarted on the same connection file and says how its
predecessor died; ``%recover`` brings the variables back.

Both backends, real kernel processes. Deaths are restarted by jupyter_client's
own restarter (``AsyncIOLoopKernelManager`` with auto-restart, as
jupyter_server runs it), polling every half second; the test's clients stay
connected across the restart, as a frontend's do.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.ioloop import AsyncIOLoopKernelManager
from jupyter_client.session import Session
from traitlets.config import Config

from .conftest import kernel_name
from .utils import TIMEOUT

pytestmark = pytest.mark.timeout(120)

CGROUP_V1_MEMORY = Path("/sys/fs/cgroup/memory")


class RestartingKernel:
    """A kernel under jupyter_client's restarter, and a client connected to it."""

    def __init__(self, km: AsyncIOLoopKernelManager, kc: AsyncKernelClient) -> None:
        self.km = km
        self.kc = kc
        self.restarts = 0
        km.add_restart_callback(self._restarting, "restart")

    @classmethod
    async def start(cls, backend: str) -> RestartingKernel:
        config = Config()
        # Poll often; a kernel alive for a second counts as started, so the
        # restart keeps its ports (and a crash right after start does not).
        config.KernelRestarter.time_to_dead = 0.5
        config.KernelRestarter.stable_start_time = 1.0
        for attempt in range(3):
            km = AsyncIOLoopKernelManager(kernel_name=kernel_name(backend), config=config)
            km.autorestart = False  # until it is up: a port clash at start is the harness's
            await km.start_kernel()
            kc = km.client()
            kc.start_channels()
            try:
                await kc.wait_for_ready(timeout=TIMEOUT)
            except RuntimeError:
                # jupyter_client's free-port race with the other test worker: again.
                kc.stop_channels()
                await km.shutdown_kernel(now=True)
                if attempt == 2:
                    raise
                continue
            km.autorestart = True
            km.start_restarter()
            return cls(km, kc)
        raise AssertionError("unreachable")

    def _restarting(self) -> None:
        self.restarts += 1

    @property
    def pid(self) -> int | None:
        """The kernel's pid (None while the restarter is between two kernels)."""
        provisioner = self.km.provisioner
        process = getattr(provisioner, "process", None)
        return None if process is None else process.pid

    async def client(self) -> AsyncKernelClient:
        """Another client of the same kernel (a second frontend, with a session
        of its own: a shared one would give both the same socket identity)."""
        own = Session(key=self.km.session.key, signature_scheme=self.km.session.signature_scheme)
        kc = self.km.client(session=own)
        kc.start_channels()
        await kc.wait_for_ready(timeout=TIMEOUT)
        return kc

    async def die(self, death: str | Callable[[], None]) -> None:
        """End the kernel by ``death`` (a cell's code, or a function killing it)
        and wait until the restarter has brought a new one up."""
        pid, restarts = self.pid, self.restarts
        if callable(death):
            death()
        else:
            self.kc.execute(death)
        deadline = time.monotonic() + TIMEOUT
        while self.restarts == restarts or self.pid in (pid, None) or not await self.km.is_alive():
            assert time.monotonic() < deadline, "the restarter did not restart the kernel"
            await asyncio.sleep(0.1)
        await self.kc.wait_for_ready(timeout=TIMEOUT)

    async def stop(self) -> None:
        self.kc.stop_channels()
        if self.km.has_kernel:
            await self.km.shutdown_kernel(now=False)
        await self.km.cleanup_resources()


async def run(kc: AsyncKernelClient, code: str) -> tuple[str, str, str]:
    """(status, stdout, stderr) of a cell."""
    streams = {"stdout": "", "stderr": ""}

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            streams[msg["content"]["name"]] += msg["content"]["text"]

    reply = await kc.execute_interactive(code, timeout=TIMEOUT, output_hook=hook)
    return reply["content"]["status"], streams["stdout"], streams["stderr"]


def scenario(backend: str, body: Callable[[RestartingKernel], Awaitable[None]]) -> None:
    """Run ``body`` with a restarting kernel, in an asyncio loop of the test's own
    (the restarter's loop; the kernel runs on ``backend``)."""

    async def main() -> None:
        kernel = await RestartingKernel.start(backend)
        try:
            await body(kernel)
        finally:
            await kernel.stop()

    asyncio.run(main())


CELLS = ["base = 40", "1 / 0", "total = base + 2"]


async def check_recover(kc: AsyncKernelClient, completed: int = 2) -> None:
    """``%recover`` re-runs the cells of CELLS that completed (and any other
    ``completed`` ones after them), not the failed one."""
    listed = (await run(kc, "%recover --list"))[1]
    assert "base = 40" in listed and "total = base + 2" in listed, listed
    assert "1 / 0" not in listed, "a cell that failed is not replayed"
    status, out, _ = await run(kc, "%recover")
    assert status == "ok" and f"recovered {completed} cell(s)" in out, out
    assert (await run(kc, "print(base, total)"))[1] == "40 42\n"


@pytest.mark.parametrize(
    ("death", "expected"),
    [
        ("import ctypes\nctypes.string_at(0)", "SIGSEGV (Segmentation fault)"),
        ("import os\nos.abort()", "SIGABRT (Aborted)"),
    ],
    ids=["segfault", "abort"],
)
def test_fatal_signal_report_and_recover(backend: str, death: str, expected: str) -> None:
    async def body(kernel: RestartingKernel) -> None:
        kc = kernel.kc
        for code in CELLS:
            await run(kc, code)
        dead_pid = kernel.pid
        await kernel.die(death)
        status, out, err = await run(kc, "print('first cell')")
        assert status == "ok" and out == "first cell\n"
        assert f"The previous kernel (pid {dead_pid}, {backend}) died: {expected}." in err, err
        # The cell that was running, with its execution count, and the stack
        # at the crash ending in the user's line of that cell.
        assert "It was running cell [4]:" in err, err
        assert f"    {death.splitlines()[0]}" in err, err
        stack = err.split("Python stack at the crash (most recent call first):\n", 1)[1]
        frames = [line for line in stack.splitlines() if line.startswith("    File ")]
        assert frames, err
        assert frames[-1].endswith(", line 2 in <module>"), frames
        assert "re-runs the 2 cells that completed without error" in err
        # Shown once; %crashinfo shows it again.
        assert (await run(kc, "print('second')"))[2] == ""
        assert expected in (await run(kc, "%crashinfo"))[1]
        await check_recover(kc)

    scenario(backend, body)


def test_sigkill_after_allocating_memory(backend: str) -> None:
    async def body(kernel: RestartingKernel) -> None:
        kc = kernel.kc
        for code in CELLS:
            await run(kc, code)
        # A sample of the memory lands in the journal every second.
        await run(kc, "blob = b'x' * (400 << 20)\nimport time\ntime.sleep(1.5)")
        pid = kernel.pid
        assert pid is not None
        await kernel.die(lambda: os.kill(pid, signal.SIGKILL))
        err = (await run(kc, "pass"))[2]
        assert "died: killed without a trace (SIGKILL or power loss)." in err, err
        # The last sample saw the allocation (the machine has far more memory).
        sampled = err.split("Its memory at the last sample (every second): ", 1)[1]
        assert float(sampled.split(" GB", 1)[0]) >= 0.4, err
        assert "It was running cell" not in err, "no cell ran when it was killed"
        await check_recover(kc, completed=3)

    scenario(backend, body)


def _memory_cgroup(name: str, limit: int) -> Path:
    """A cgroup (v1) with a memory limit and no swap, to run a kernel in."""
    group = CGROUP_V1_MEMORY / name
    group.mkdir()
    (group / "memory.limit_in_bytes").write_text(str(limit))
    swap = group / "memory.memsw.limit_in_bytes"
    if swap.exists():
        swap.write_text(str(limit))
    return group


def test_out_of_memory_kill_in_a_cgroup(backend: str) -> None:
    """The kernel is moved into a memory cgroup and grows until the kernel's
    out-of-memory killer ends it: the report says so, with the cgroup's limit."""
    assert (CGROUP_V1_MEMORY / "cgroup.procs").exists(), "needs the cgroup v1 memory controller"
    limit = 400 << 20
    group = _memory_cgroup(f"akernel-test-{os.getpid()}-{backend}", limit)

    async def body(kernel: RestartingKernel) -> None:
        kc = kernel.kc
        await run(kc, "base = 40")
        (group / "cgroup.procs").write_text(str(kernel.pid))
        # Memory charged before the move stays with the old group: the limit
        # counts what the cell allocates. Quickly to 80%, then slowly, so the
        # last sample before the kill is close to the limit.
        grow = (
            "import time\nchunks = [b'x' * (320 << 20)]\n"
            "while True:\n    chunks.append(b'x' * (4 << 20))\n    time.sleep(0.05)"
        )
        await kernel.die(grow)
        err = (await run(kc, "pass"))[2]
        assert "died: killed without a trace" in err, err
        assert "It was probably out of memory: " in err and "(cgroup limit)." in err, err
        assert "of 0.4 GB (cgroup limit)" in err, err
        assert "It was running cell [2]:" in err and "    import time" in err, err
        assert (await run(kc, "print(base)"))[1] == "", "nothing replayed yet"

    try:
        scenario(backend, body)
    finally:
        group.rmdir()


def test_crash_during_capture(backend: str) -> None:
    """A cell under ``%%capture`` crashes; the next kernel's first cell is a
    ``%%capture`` too: the report is shown (not captured) and capture works."""

    async def body(kernel: RestartingKernel) -> None:
        kc = kernel.kc
        await run(kc, "base = 40")
        await kernel.die("%%capture captured\nprint('hidden')\nimport ctypes\nctypes.string_at(0)")
        status, out, err = await run(kc, "%%capture first\nprint('inside')")
        assert status == "ok" and out == ""
        assert "died: SIGSEGV" in err, err
        assert "It was running cell [2]:\n    %%capture captured\n" in err, err
        # The body's line (line 3 of the body, which %%capture runs as a cell),
        # IPython's frames between it and the magic's line collapsed.
        stack = err.split("most recent call first):\n", 1)[1].splitlines()
        frames = [line.strip() for line in stack if line.startswith("    ")]
        assert frames[1].endswith(", line 3 in <module>"), frames
        assert frames[2].endswith("frames of IPython and the kernel)"), frames
        assert frames[3].endswith(", line 1 in <module>"), frames
        status, out, _ = await run(kc, "print(repr(first.stdout), 'report' in first.stderr)")
        assert out == "'inside\\n' False\n", out
        assert "recovered 1 cell(s)" in (await run(kc, "%recover"))[1]
        assert (await run(kc, "print(base)"))[1] == "40\n"

    scenario(backend, body)


def test_crash_while_another_client_is_connected(backend: str) -> None:
    """Two frontends on one kernel: cells of both are recovered; the report goes
    to the first cell of the new kernel, whoever runs it, and both see it."""

    async def body(kernel: RestartingKernel) -> None:
        first = kernel.kc
        second = await kernel.client()
        try:
            await run(first, "base = 40")
            await run(second, "total = base + 2")
            dead_pid = kernel.pid
            await kernel.die("import ctypes\nctypes.string_at(0)")
            await second.wait_for_ready(timeout=TIMEOUT)
            # Drop what the first client's IOPub got meanwhile (statuses of the start).
            while await first.iopub_channel.msg_ready():
                await first.get_iopub_msg(timeout=1)
            status, _, err = await run(second, "print('from the second')")
            assert status == "ok" and f"(pid {dead_pid}, {backend}) died: SIGSEGV" in err, err
            # The first client saw the same report on IOPub (broadcast to all).
            seen = ""
            deadline = time.monotonic() + TIMEOUT
            while "died: SIGSEGV" not in seen:
                assert time.monotonic() < deadline, seen
                msg = await first.get_iopub_msg(timeout=TIMEOUT)
                if msg["msg_type"] == "stream":
                    seen += msg["content"]["text"]
            assert (await run(first, "pass"))[2] == "", "the report is shown once"
            await run(first, "%recover")
            assert (await run(second, "print(base, total)"))[1] == "40 42\n"
        finally:
            second.stop_channels()

    scenario(backend, body)


def test_recover_replays_awaiting_cells_and_a_second_death(backend: str) -> None:
    """Cells with top-level ``await`` replay; a kernel that dies after ``%recover``
    leaves the replayed cells (not ``%recover`` itself) to the next one."""

    async def body(kernel: RestartingKernel) -> None:
        kc = kernel.kc
        await run(kc, "base = 40")
        await run(kc, "import anyio\nawait anyio.sleep(0)\nawaited = base + 1")
        await kernel.die("import os\nos.abort()")
        status, out, _ = await run(kc, "%recover")
        assert status == "ok" and "recovered 2 cell(s)" in out, out
        await run(kc, "later = awaited + 1")
        pid = kernel.pid
        assert pid is not None
        await kernel.die(lambda: os.kill(pid, signal.SIGKILL))
        listed = (await run(kc, "%recover --list"))[1]
        assert "%recover" not in listed, listed
        assert [line.split("]")[0] for line in listed.splitlines()] == ["[1", "[2", "[2"], listed
        assert "recovered 3 cell(s)" in (await run(kc, "%recover"))[1]
        assert (await run(kc, "print(base, awaited, later)"))[1] == "40 41 42\n"

    scenario(backend, body)


def test_clean_restart_reports_nothing(backend: str) -> None:
    async def body(kernel: RestartingKernel) -> None:
        await run(kernel.kc, "value = 1")
        await kernel.km.restart_kernel(now=False)
        await kernel.kc.wait_for_ready(timeout=TIMEOUT)
        assert (await run(kernel.kc, "print('fresh')"))[2] == ""
        assert "ended cleanly" in (await run(kernel.kc, "%crashinfo"))[1]

    scenario(backend, body)


def test_journal_is_private_and_goes_with_the_kernel(backend: str) -> None:
    async def body(kernel: RestartingKernel) -> None:
        await run(kernel.kc, "secret = 'x'")
        stem = Path(kernel.km.connection_file).with_suffix("")
        journal = stem.with_name(stem.name + ".akernel-journal")
        assert journal.exists()
        assert journal.stat().st_mode & 0o777 == 0o600
        await kernel.km.shutdown_kernel(now=False)
        assert not journal.exists(), "a final shutdown leaves no journal behind"

    scenario(backend, body)
