"""ipykernel's kernel magics and payloads, on both backends: ``%connect_info``,
``%clear``, ``%less``/``%more``, ``%man``, ``%edit``, ``%autosave``,
``%qtconsole``; one ``set_next_input`` payload per cell; ``exit(keep_kernel=True)``;
matplotlib's loop-less interactive backends and clear ``%gui`` refusals
(GUI loops themselves: tests/test_gui.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import KernelManager
from jupyter_core.paths import jupyter_runtime_dir

from .conftest import start_kernel, stop_kernel
from .utils import TIMEOUT, execute, run_ok, stream_text, user_value


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def usage_error(kc: BlockingKernelClient, code: str) -> str:
    """Run ``code``, which must fail with a UsageError; its message. IPython
    shows a UsageError as one line on stderr, without a traceback."""
    reply, outputs = execute(kc, code)
    content = reply["content"]
    assert content["status"] == "error", content
    assert content["ename"] == "UsageError", content
    assert f"UsageError: {content['evalue']}" in stream_text(outputs, "stderr")
    return content["evalue"]


def payloads(kc: BlockingKernelClient, code: str) -> list[dict]:
    reply, _ = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply["content"]["payload"]


# -- %connect_info ------------------------------------------------------------


def test_connect_info(kernel: tuple[KernelManager, BlockingKernelClient], kc) -> None:
    km, _ = kernel
    text = stream_text(run_ok(kc, "%connect_info"))
    printed, _, advice = text.partition("\n\n")
    info = json.loads(printed)
    expected = json.loads(Path(km.connection_file).read_text())
    for name in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port", "key"):
        assert info[name] == expected[name], name
    assert info["transport"] == "tcp"
    # A file in the runtime directory is found by its name alone.
    path = Path(km.connection_file).absolute()
    shown = path.name if path.parent == Path(jupyter_runtime_dir()) else str(path)
    assert f"    $> jupyter <app> --existing {shown}\n" in advice


# -- pagers and the terminal ------------------------------------------------


def test_less_and_more_page_a_file(kc: BlockingKernelClient, tmp_path: Path) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("first line\nsecond line\n")
    for magic in ("less", "more"):
        [page] = payloads(kc, f"%{magic} {text_file}")
        assert page["source"] == "page"
        assert page["data"]["text/plain"] == "first line\nsecond line\n"
        assert page["start"] == 0


def test_less_highlights_python(kc: BlockingKernelClient, tmp_path: Path) -> None:
    source = tmp_path / "module_shown.py"
    source.write_text("def shown(x):\n    return x + 1\n")
    [page] = payloads(kc, f"%less {source}")
    text = page["data"]["text/plain"]
    assert "\x1b[" in text
    assert strip_ansi(text) == "def shown(x):\n    return x + 1\n"


def test_less_missing_file_is_a_clear_error(kc: BlockingKernelClient, tmp_path: Path) -> None:
    missing = tmp_path / "absent.txt"
    assert f"no such file: {missing}" in usage_error(kc, f"%less {missing}")
    assert "needs a file name" in usage_error(kc, "%more")


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_man_pages_a_manual(kc: BlockingKernelClient) -> None:
    [page] = payloads(kc, "%man ls")
    text = page["data"]["text/plain"]
    assert page["source"] == "page"
    assert "list directory contents" in text
    # col -b took out man's overstrike bold.
    assert "\b" not in text


def test_clear_clears_the_terminal(kc: BlockingKernelClient) -> None:
    assert stream_text(run_ok(kc, "%clear")) == "\x1b[H\x1b[2J\x1b[3J"


# -- %edit --------------------------------------------------------------------


def test_edit_sends_an_edit_magic_payload(kc: BlockingKernelClient, tmp_path: Path) -> None:
    target = tmp_path / "edited.py"
    target.write_text("x = 1\n")
    assert payloads(kc, f"%edit -n 7 {target}") == [
        {"source": "edit_magic", "filename": str(target.resolve()), "line_number": 7}
    ]
    # %ed is the same magic; a relative name is sent as an absolute path.
    run_ok(kc, f"import os; os.chdir({str(tmp_path)!r})")
    [payload] = payloads(kc, "%ed edited.py")
    assert payload["filename"] == str(target.resolve())


def test_edit_of_an_object_opens_its_source(kc: BlockingKernelClient) -> None:
    [payload] = payloads(kc, "import json\n%edit json.dumps")
    assert payload["source"] == "edit_magic"
    assert payload["filename"].endswith(os.path.join("json", "__init__.py"))
    assert payload["line_number"] > 1


# -- %autosave, %qtconsole --------------------------------------------------


def test_autosave(kc: BlockingKernelClient) -> None:
    outputs = run_ok(kc, "%autosave 60")
    [display] = [m["content"] for m in outputs if m["msg_type"] == "display_data"]
    assert display["data"] == {
        "application/javascript": "IPython.notebook.set_autosave_interval(60000)"
    }
    assert stream_text(outputs) == "Autosaving every 60 seconds\n"
    assert stream_text(run_ok(kc, "%autosave 0")) == "Autosave disabled\n"
    assert "whole number of seconds" in usage_error(kc, "%autosave often")


def test_qtconsole_without_qtconsole_is_a_clear_error(kc: BlockingKernelClient) -> None:
    if user_value(kc, "__import__('importlib.util').util.find_spec('qtconsole') is None") != "True":
        pytest.skip("qtconsole is installed")
    assert "pip install qtconsole" in usage_error(kc, "%qtconsole")


def test_qtconsole_starts_a_console_on_this_kernel(backend: str, tmp_path: Path) -> None:
    """What %qtconsole runs: ``qtconsoleapp.main()`` with ``--existing`` and the
    kernel's connection file, plus the magic's arguments. A stand-in
    ``qtconsole`` package records its command line (Qt cannot open a window
    here)."""
    package = tmp_path / "site" / "qtconsole"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    record = tmp_path / "argv.json"
    (package / "qtconsoleapp.py").write_text(
        "import json, sys\n"
        f"def main():\n    open({str(record)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(package.parent), *sys.path]))
    km, kc = start_kernel(backend, env=env)
    try:
        run_ok(kc, "%qtconsole --style=monokai")
        deadline = time.monotonic() + TIMEOUT
        while not record.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert json.loads(record.read_text()) == [
            "--existing",
            os.path.abspath(km.connection_file),
            "--style=monokai",
        ]
    finally:
        stop_kernel(km, kc)


# -- payloads -----------------------------------------------------------------


def test_set_next_input_twice_gives_one_payload(kc: BlockingKernelClient) -> None:
    assert payloads(kc, "get_ipython().set_next_input('a')\nget_ipython().set_next_input('b')") == [
        {"source": "set_next_input", "text": "b", "replace": False}
    ]


def test_exit_ends_the_kernel(fresh_kernel: tuple[KernelManager, BlockingKernelClient]) -> None:
    """``exit()`` in a cell: the reply (with its ask_exit payload), then the kernel
    process ends, as ipykernel's does."""
    km, kc = fresh_kernel
    reply, _ = execute(kc, "exit()")
    assert reply["content"]["status"] == "ok"
    assert reply["content"]["payload"] == [{"source": "ask_exit", "keepkernel": False}]
    process = km.provisioner.process
    deadline = time.monotonic() + TIMEOUT
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() == 0


def test_exit_keep_kernel(kc: BlockingKernelClient) -> None:
    assert payloads(kc, "exit(keep_kernel=True)") == [{"source": "ask_exit", "keepkernel": True}]
    # The kernel is still there, and exit_now was not set.
    assert user_value(kc, "get_ipython().exit_now") == "False"
    assert payloads(kc, "quit(keep_kernel=True)") == [{"source": "ask_exit", "keepkernel": True}]


# -- matplotlib and GUI event loops -----------------------------------------


def resolved_backend(kc: BlockingKernelClient) -> str:
    """The backend module pyplot uses in the kernel (aliases such as
    'notebook' resolved), without its ``matplotlib.backends.backend_`` prefix."""
    name = eval(
        user_value(
            kc, "__import__('matplotlib.pyplot').pyplot._get_backend_mod().FigureCanvas.__module__"
        )
    )
    return name.removeprefix("matplotlib.backends.backend_")


def forget_gui_choice(kc: BlockingKernelClient) -> None:
    # IPython keeps the first GUI chosen for the session (ipykernel too): each
    # test starts from none.
    run_ok(kc, "%matplotlib inline\nget_ipython().pylab_gui_select = None")


@pytest.fixture
def restore_inline(kc: BlockingKernelClient):
    forget_gui_choice(kc)
    yield kc
    forget_gui_choice(kc)


@pytest.mark.parametrize(
    ("code", "backend_name"),
    [
        ("%matplotlib notebook", "nbagg"),
        ("%matplotlib nbagg", "nbagg"),
        ("%matplotlib webagg", "webagg"),
    ],
)
def test_loopless_matplotlib_backends(restore_inline, code: str, backend_name: str) -> None:
    kc = restore_inline
    run_ok(kc, code)
    assert resolved_backend(kc) == backend_name


def test_matplotlib_use_nbagg(fresh_kernel) -> None:
    """The usual order in a notebook: choose the backend, then import pyplot
    (whose import asks the shell for the backend's 'GUI')."""
    _, kc = fresh_kernel
    run_ok(kc, "import matplotlib\nmatplotlib.use('nbagg')\nimport matplotlib.pyplot as plt")
    assert resolved_backend(kc) == "nbagg"
    outputs = run_ok(kc, "plt.plot([1, 2, 3])")
    assert "error" not in [m["msg_type"] for m in outputs]


@pytest.mark.parametrize(
    ("gui", "toolkit"), [("gtk3", "GTK 3"), ("osx", "macOS (Cocoa)"), ("wx", "wxPython")]
)
def test_unsupported_gui_loops_are_refused_in_the_cell(
    restore_inline, gui: str, toolkit: str
) -> None:
    kc = restore_inline
    message = usage_error(kc, f"%gui {gui}")
    assert f"{toolkit} event loop integration is not supported" in message
    for working in ("%gui qt", "%gui tk", "inline", "widget", "notebook", "webagg"):
        assert working in message
    # %gui alone (no loop) is fine.
    run_ok(kc, "%gui")


@pytest.mark.parametrize("gui", ["qt", "tk"])
def test_gui_loops_need_a_display(restore_inline, gui: str) -> None:
    """The test kernels have no display (conftest.py): Qt and Tk are refused
    in the cell, before Qt could end the process (tests/test_gui.py has one)."""
    kc = restore_inline
    assert f"%gui {gui} needs a display" in usage_error(kc, f"%gui {gui}")
    run_ok(kc, "%gui")


def test_refused_matplotlib_gui_does_not_stick(restore_inline) -> None:
    """``%matplotlib qt`` on a desktop: IPython records 'qt' as the session's
    GUI, matplotlib loads its Qt backend, then the shell is asked for Qt's
    loop and refuses. (Headless, as here, matplotlib refuses first.) A later
    ``%matplotlib notebook`` must not be turned back into 'qt'."""
    kc = restore_inline
    run_ok(kc, "get_ipython().pylab_gui_select = 'qt'")
    assert "needs a display" in usage_error(kc, "%gui qt")
    run_ok(kc, "%matplotlib notebook")
    assert resolved_backend(kc) == "nbagg"
