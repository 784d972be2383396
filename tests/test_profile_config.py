"""Configuration as every IPython kernel reads it, on both backends: the
profile's ``ipython_config.py``, ``ipython_kernel_config.py`` and
``akernel_config.py`` (``--profile``, ``--profile-dir``), command-line options
over files, ``%config`` on the shell's configurables, and ``''`` in
``sys.path``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.blocking import BlockingKernelClient

from .conftest import start_kernel, stop_kernel
from .utils import execute, run_ok, user_value

PLOT = "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 2, 3])\nplt.show()"


def kernel_with(backend: str, ipython_dir: Path, *args: str):
    env = {name: value for name, value in os.environ.items() if name != "PYTHONSTARTUP"}
    env["IPYTHONDIR"] = str(ipython_dir)
    env.pop("MPLBACKEND", None)
    return start_kernel(backend, env=env, extra_arguments=list(args))


def image_types(outputs: list[dict]) -> set[str]:
    return {
        mime
        for m in outputs
        if m["msg_type"] == "display_data"
        for mime in m["content"]["data"]
        if mime.startswith("image/")
    }


def results(outputs: list[dict]) -> list[str]:
    return [
        m["content"]["data"]["text/plain"] for m in outputs if m["msg_type"] == "execute_result"
    ]


@pytest.fixture(scope="module")
def profile_kernel(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BlockingKernelClient]:
    """A kernel of the named profile ``work``, whose three config files each
    set something, some of them the same thing."""
    ipython_dir = tmp_path_factory.mktemp("ipython")
    profile = ipython_dir / "profile_work"
    profile.mkdir()
    (profile / "ipython_config.py").write_text(
        "c = get_config()\n"
        "c.InlineBackend.figure_formats = {'svg'}\n"
        "c.InteractiveShell.ast_node_interactivity = 'none'\n"
        "c.InteractiveShellApp.exec_lines = ['from_ipython_config = 1']\n"
    )
    (profile / "ipython_kernel_config.py").write_text(
        "c = get_config()\n"
        "c.InteractiveShell.ast_node_interactivity = 'all'\n"
        "c.IPKernelApp.exec_lines = ['from_kernel_config = 2']\n"
        "c.PlainTextFormatter.max_seq_length = 5\n"
    )
    (profile / "akernel_config.py").write_text(
        "c = get_config()\nc.PlainTextFormatter.max_seq_length = 7\n"
    )
    # The default profile, which must not be read.
    default = ipython_dir / "profile_default"
    default.mkdir()
    (default / "ipython_kernel_config.py").write_text(
        "c = get_config()\nc.IPKernelApp.exec_lines = ['from_default_profile = 1']\n"
    )
    km, kc = kernel_with(backend, ipython_dir, "--profile", "work")
    try:
        yield kc
    finally:
        stop_kernel(km, kc)


def test_kernel_config_overrides_ipython_config(profile_kernel: BlockingKernelClient) -> None:
    # 'all' from ipython_kernel_config.py, over 'none' from ipython_config.py.
    reply, outputs = execute(profile_kernel, "1 + 1\n2 + 2")
    assert reply["content"]["status"] == "ok"
    assert results(outputs) == ["2", "4"]


def test_inline_backend_config(profile_kernel: BlockingKernelClient) -> None:
    outputs = run_ok(profile_kernel, PLOT)
    assert image_types(outputs) == {"image/svg+xml"}


def test_kernel_app_exec_lines(profile_kernel: BlockingKernelClient) -> None:
    # IPKernelApp.exec_lines wins over InteractiveShellApp.exec_lines, as in
    # ipykernel, whose application is an InteractiveShellApp.
    assert user_value(profile_kernel, "'from_kernel_config' in dir()") == "True"
    assert user_value(profile_kernel, "'from_ipython_config' in dir()") == "False"
    assert user_value(profile_kernel, "'from_default_profile' in dir()") == "False"


def test_akernel_config_comes_last(profile_kernel: BlockingKernelClient) -> None:
    assert user_value(profile_kernel, "list(range(20))") == "[0, 1, 2, 3, 4, 5, 6, ...]"


def test_the_shell_uses_the_profile(profile_kernel: BlockingKernelClient) -> None:
    location = user_value(profile_kernel, "get_ipython().profile_dir.location")
    assert location.strip("'").endswith("profile_work")
    # History goes to that profile's database.
    database = user_value(profile_kernel, "get_ipython().history_manager.hist_file")
    assert "profile_work" in database


def test_config_magic_on_the_shell(profile_kernel: BlockingKernelClient) -> None:
    kc = profile_kernel
    run_ok(kc, "%config InteractiveShell.ast_node_interactivity = 'last_expr'")
    assert results(run_ok(kc, "1 + 1\n2 + 2")) == ["4"]
    run_ok(kc, "%config InteractiveShell.ast_node_interactivity = 'all'")
    run_ok(kc, "%config InlineBackend.figure_formats = ['png']")
    assert image_types(run_ok(kc, PLOT)) == {"image/png"}
    listing = "".join(
        m["content"]["text"] for m in run_ok(kc, "%config") if m["msg_type"] == "stream"
    )
    assert "    InlineBackend\n" in listing
    shell_class = user_value(kc, "type(get_ipython()).__name__").strip("'")
    assert f"    {shell_class}\n" in listing


@pytest.fixture
def profile_dir_kernel(backend: str, tmp_path: Path) -> Iterator[BlockingKernelClient]:
    """A kernel given ``--profile-dir`` and an option that overrides its config."""
    profile = tmp_path / "anywhere"
    (profile / "startup").mkdir(parents=True)
    (profile / "startup" / "00-mark.py").write_text("started_from = 'anywhere'\n")
    (profile / "ipython_kernel_config.py").write_text(
        "c = get_config()\nc.InteractiveShell.ast_node_interactivity = 'all'\n"
    )
    km, kc = kernel_with(
        backend,
        tmp_path / "ipython",
        f"--profile-dir={profile}",
        "--InteractiveShell.ast_node_interactivity=none",
        "--IPKernelApp.exec_lines=from_command_line = 3",
    )
    try:
        yield kc
    finally:
        stop_kernel(km, kc)


def test_profile_dir_and_command_line(profile_dir_kernel: BlockingKernelClient) -> None:
    kc = profile_dir_kernel
    assert user_value(kc, "started_from") == "'anywhere'"
    assert user_value(kc, "from_command_line") == "3"
    # The command line wins over the file.
    reply, outputs = execute(kc, "1 + 1")
    assert reply["content"]["status"] == "ok"
    assert results(outputs) == []


def test_import_from_the_working_directory(profile_dir_kernel, tmp_path: Path) -> None:
    kc = profile_dir_kernel
    there = tmp_path / "somewhere"
    there.mkdir()
    (there / "module_there.py").write_text("VALUE = 'found'\n")
    assert user_value(kc, "'' in __import__('sys').path") == "True"
    run_ok(kc, f"%cd {there}")
    run_ok(kc, "import module_there")
    assert user_value(kc, "module_there.VALUE") == "'found'"
