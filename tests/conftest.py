"""Shared fixtures: real kernel processes started through jupyter_client.

Kernelspecs for both backends are written to a private JUPYTER_PATH that
points at this interpreter, and IPython's history goes to a private
IPYTHONDIR, so tests never touch the user's Jupyter or IPython setup.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

BACKENDS = ["asyncio", "trio"]

_tmp = Path(tempfile.mkdtemp(prefix="akernel-tests-"))
_kernels = _tmp / "jupyter" / "kernels"
for _backend in BACKENDS:
    _name = "akernel-test" if _backend == "asyncio" else f"akernel-test-{_backend}"
    for _mode in ("signal", "message"):
        _dir = _kernels / (_name if _mode == "signal" else f"{_name}-message")
        _dir.mkdir(parents=True, exist_ok=True)
        (_dir / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [
                        sys.executable,
                        "-m",
                        "akernel",
                        "launch",
                        "-f",
                        "{connection_file}",
                        "--backend",
                        _backend,
                    ],
                    "display_name": f"akernel test ({_backend}, {_mode})",
                    "language": "python",
                    "interrupt_mode": _mode,
                    # Used only by managers asking for transport encryption
                    # (tests/test_curve.py): the default manager ignores it.
                    "metadata": {"supported_encryption": ["curve"]},
                }
            )
        )
os.environ["JUPYTER_PATH"] = os.pathsep.join(
    [str(_tmp / "jupyter"), *filter(None, [os.environ.get("JUPYTER_PATH")])]
)
os.environ["IPYTHONDIR"] = str(_tmp / "ipython")
os.environ["JUPYTER_RUNTIME_DIR"] = str(_tmp / "runtime")
os.environ.pop("MPLBACKEND", None)
# No test kernel opens windows on the developer's screen: tests/test_gui.py gives its
# kernels a virtual display of their own.
for _name in ("DISPLAY", "WAYLAND_DISPLAY"):
    os.environ.pop(_name, None)


def kernel_name(backend: str, interrupt_mode: str = "signal") -> str:
    """Name of the test kernelspec for ``backend`` and ``interrupt_mode``."""
    name = "akernel-test" if backend == "asyncio" else f"akernel-test-{backend}"
    return name if interrupt_mode == "signal" else f"{name}-message"


T = TypeVar("T")


def retry_port_clash(start: Callable[[], T], attempts: int = 3) -> T:
    """``start()`` a kernel through jupyter_client, again if it died at once.

    jupyter_client picks free ports, closes them and writes them to the
    connection file; until the kernel binds them, a kernel started meanwhile
    by the other test worker can take one, and the new kernel then exits
    ("port ... is already in use"). That is the test harness's race, not the
    kernel's: try again with new ports.
    """
    for attempt in range(attempts):
        try:
            return start()
        except RuntimeError as e:
            if "died" not in str(e) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def start_kernel(
    backend: str, interrupt_mode: str = "signal", **kwargs
) -> tuple[KernelManager, BlockingKernelClient]:
    return retry_port_clash(
        lambda: start_new_kernel(
            kernel_name=kernel_name(backend, interrupt_mode), startup_timeout=30, **kwargs
        )
    )


def stop_kernel(km: KernelManager, kc: BlockingKernelClient) -> None:
    kc.stop_channels()
    if km.has_kernel:
        km.shutdown_kernel(now=False)
    km.cleanup_resources()


@pytest.fixture(params=BACKENDS, scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def kernel(backend: str) -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    """A kernel shared by the tests of one module, per backend."""
    km, kc = start_kernel(backend)
    try:
        yield km, kc
    finally:
        stop_kernel(km, kc)


@pytest.fixture
def kc(kernel: tuple[KernelManager, BlockingKernelClient]) -> BlockingKernelClient:
    _, client = kernel
    # Drop what earlier tests left on IOPub (and replies they did not read) so
    # each test sees its own traffic.
    while True:
        try:
            client.get_iopub_msg(timeout=0.05)
        except Exception:
            break
    while client.shell_channel.msg_ready():
        client.get_shell_msg(timeout=1)
    return client


@pytest.fixture
def fresh_kernel(backend: str) -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    """A kernel of one's own, for tests that shut down, restart or break it."""
    km, kc = start_kernel(backend)
    try:
        yield km, kc
    finally:
        stop_kernel(km, kc)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options of tests/test_fuzz.py: how many cases, from which seed."""
    group = parser.getgroup("akernel fuzz")
    group.addoption(
        "--fuzz-cases",
        type=int,
        default=None,
        help="cases per fuzz test (default: each test's own, sized for CI)",
    )
    group.addoption(
        "--fuzz-seed",
        type=int,
        default=None,
        help="seed of the fuzz tests (default: a fixed one; failures print theirs)",
    )


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory: ipc socket paths are limited to about 100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ak-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# Test files by measured duration, slowest first (a 2-core machine): xdist's
# ``loadfile`` queue otherwise takes files with few tests last, and a slow one
# there keeps one worker busy while the other idles.
SLOW_FIRST = [
    "tests/test_engine_shutdown.py",
    "tests/test_engine.py",
    "tests/test_history_sharing.py",
    "tests/test_process_life.py",
    "tests/test_fuzz.py",
    "tests/test_embed_containment.py",
    "tests/test_crash_recovery.py",
    "tests/test_console.py",
    "tests/test_notebooks.py",
    "tests/test_iopub_flow.py",
    "tests/test_docs_examples.py",
    "tests/test_lifecycle.py",
    "tests/test_curve.py",
    "tests/test_debugger.py",
    "tests/test_mpi_cluster.py",
]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow files first, the rest by test count (the order inside a file is kept)."""

    def file_of(item: pytest.Item) -> str:
        return item.nodeid.split("::")[0]

    counts = Counter(file_of(item) for item in items)
    rank = {name: n for n, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda i: (rank.get(file_of(i), len(rank)), -counts[file_of(i)], file_of(i)))
