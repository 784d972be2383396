"""Start-up code, run before the first request as IPython and ipykernel run
it: ``$PYTHONSTARTUP``, the profile's ``startup/`` files, ``exec_lines``,
``exec_files`` and ``extensions`` (``c.InteractiveShellApp``), on both
backends. Engines also run ``-c`` and ``-s``: see test_engine.py.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.blocking import BlockingKernelClient

from .conftest import start_kernel, stop_kernel
from .utils import user_value


def _kernel(backend: str, ipython_dir: Path, *args: str, **env: str):
    environ = {name: value for name, value in os.environ.items() if name != "PYTHONSTARTUP"}
    environ.update(IPYTHONDIR=str(ipython_dir), **env)
    return start_kernel(backend, env=environ, extra_arguments=list(args))


@pytest.fixture
def started(backend: str, tmp_path: Path) -> Iterator[BlockingKernelClient]:
    ipython_dir = tmp_path / "ipython"
    startup = ipython_dir / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "10-second.ipy").write_text("order.append('startup 10')\n%load_ext autoreload\n")
    (startup / "00-first.py").write_text("order.append('startup 00')\n")
    python_startup = tmp_path / "pythonstartup.py"
    python_startup.write_text("order = ['PYTHONSTARTUP']\n")
    exec_file = tmp_path / "exec_file.py"
    exec_file.write_text("order.append('exec_files')\n")
    km, kc = _kernel(
        backend,
        ipython_dir,
        "--InteractiveShellApp.exec_lines=order.append('exec_lines')",
        f"--InteractiveShellApp.exec_files={exec_file}",
        "--InteractiveShellApp.extensions=storemagic",
        PYTHONSTARTUP=str(python_startup),
    )
    try:
        yield kc
    finally:
        stop_kernel(km, kc)


def test_startup_code_runs_in_order(started: BlockingKernelClient) -> None:
    assert user_value(started, "order") == str(
        ["PYTHONSTARTUP", "startup 00", "startup 10", "exec_lines", "exec_files"]
    )


def test_startup_extensions_and_magics(started: BlockingKernelClient) -> None:
    # %load_ext in a .ipy start-up file, and an extension from the config.
    loaded = user_value(started, "sorted(get_ipython().extension_manager.loaded)")
    assert "autoreload" in loaded
    assert "storemagic" in loaded


def test_startup_names_are_hidden_from_who(started: BlockingKernelClient) -> None:
    assert user_value(started, "'order' in get_ipython().user_ns_hidden") == "True"
    assert user_value(started, "get_ipython().run_line_magic('who_ls', '')") == "[]"


def test_a_broken_startup_file_does_not_stop_the_kernel(backend: str, tmp_path: Path) -> None:
    ipython_dir = tmp_path / "ipython"
    startup = ipython_dir / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-broken.py").write_text("raise RuntimeError('broken start-up file')\n")
    km, kc = _kernel(backend, ipython_dir, "--InteractiveShellApp.exec_lines=after = 'ran'")
    try:
        assert user_value(kc, "after") == "'ran'"
        assert user_value(kc, "1 + 1") == "2"
    finally:
        stop_kernel(km, kc)


def test_engine_mpi_start_up_defines_what_ipengine_does(monkeypatch):
    """``--mpi`` runs code that defines the names ipengine's does (``mpi_rank``,
    ``mpi_size``, ``MPI``), so ``%px print(mpi_rank)`` works on either engine."""
    import types

    from ipyparallel.engine.app import DEFAULT_MPI_INIT

    from akernel.engine.app import EngineApp

    world = types.SimpleNamespace(Get_rank=lambda: 3, Get_size=lambda: 4)
    mpi = types.SimpleNamespace(COMM_WORLD=world)
    package = types.ModuleType("mpi4py")
    package.MPI = mpi  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mpi4py", package)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", mpi)

    def names(code: str) -> dict:
        namespace: dict = {}
        exec(code, namespace)
        namespace.pop("__builtins__")
        return namespace

    ours = names(EngineApp().init_mpi)
    assert ours == names(DEFAULT_MPI_INIT)
    assert ours["mpi_rank"] == 3 and ours["mpi_size"] == 4
