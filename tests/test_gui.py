"""GUI event loops (``%gui qt``, ``%gui tk``, ``%matplotlib qt``/``tk``) on both backends.

The kernels show their windows on a virtual X server (Xvfb) started here;
screenshots of it are saved as PNG files under ``$AKERNEL_TEST_ARTIFACTS``
(default: a directory of pytest's temporary ones). One kernel per backend
and toolkit serves most tests; the launch and shutdown test starts its own.
Child processes without a kernel check that a toolkit's wait ends for work
the loop gets without I/O (a callback's event, a signal). The hooks into
asyncio's and trio's waits are tested in this process too, without a GUI:
what they call, and that they put the loop back exactly.
"""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import numpy as np
import psutil
import pytest
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import KernelManager

from akernel.gui import GuiUnavailable, enable
from akernel.gui.display import require_display
from akernel.gui.loops import AsyncioHook, TrioHook, hook_running_loop

from .conftest import start_kernel, stop_kernel
from .utils import (
    TIMEOUT,
    execute,
    get_reply,
    iopub_until_idle,
    run_ok,
    stream_text,
    user_value,
    wait_for_stream,
)

# -- the virtual display and the screenshots ---------------------------------------


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``$AKERNEL_TEST_ARTIFACTS``, or a pytest temporary directory."""
    given = os.environ.get("AKERNEL_TEST_ARTIFACTS")
    path = Path(given) if given else tmp_path_factory.mktemp("gui-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def x_display(artifacts: Path) -> Iterator[str]:
    """A virtual X server of this module's own (Debian's xvfb); its DISPLAY."""
    if shutil.which("Xvfb") is None:
        pytest.skip("needs Xvfb (Debian's xvfb; nox -s tests installs it)")
    read_fd, write_fd = os.pipe()
    with open(artifacts / "xvfb.log", "ab") as log:
        # -displayfd: the server picks a free display number and writes it here.
        server = subprocess.Popen(
            [
                "Xvfb",
                "-displayfd",
                str(write_fd),
                "-screen",
                "0",
                "1280x1024x24",
                "-nolisten",
                "tcp",
            ],
            pass_fds=(write_fd,),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    os.close(write_fd)
    try:
        readable, _, _ = select.select([read_fd], [], [], TIMEOUT)
        number = os.read(read_fd, 64).decode().strip() if readable else ""
        assert number, f"Xvfb gave no display number (see {artifacts / 'xvfb.log'})"
        yield f":{number}"
    finally:
        os.close(read_fd)
        server.terminate()
        try:
            server.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


SCREENSHOT = """
import sys
from importlib import import_module
from akernel.gui.qt import choose_binding

widgets = import_module(choose_binding(None) + ".QtWidgets")
app = widgets.QApplication(["screenshot"])
sys.exit(0 if app.primaryScreen().grabWindow(0).save(sys.argv[1]) else 1)
"""


def screenshot(display: str, path: Path) -> np.ndarray:
    """The whole screen of ``display``, saved as a PNG at ``path`` (by Qt, in a
    process of its own): its RGB pixels, height x width x 3."""
    import matplotlib.image

    subprocess.run(
        [sys.executable, "-c", SCREENSHOT, str(path)],
        env=gui_environment(display),
        capture_output=True,
        check=True,
        timeout=TIMEOUT,
    )
    pixels = matplotlib.image.imread(path)
    return (pixels[:, :, :3] * 255).round().astype(np.uint8)


# -- the toolkits, as cells see them ------------------------------------------------


@dataclass(frozen=True)
class Toolkit:
    """How cells drive one toolkit: ``{w}`` is a window, ``{call}`` a callable."""

    name: str  # for %gui and %matplotlib
    imports: str
    call_soon: str  # a statement: call {call} once, from the toolkit's event loop
    new_window: str  # a statement: open a window, {w}
    is_mapped: str  # an expression: whether window {w} is mapped (on screen)
    canvas_box: str  # an expression: screen x, y, width, height of figure fig's canvas


QT = Toolkit(
    name="qt",
    # matplotlib's qt_compat picks the binding akernel imported.
    imports="from matplotlib.backends.qt_compat import QtCore, QtWidgets",
    call_soon="QtCore.QTimer.singleShot(0, {call})",
    new_window="{w} = QtWidgets.QLabel('akernel'); {w}.resize(240, 120); {w}.show()",
    is_mapped="{w}.isVisible() and {w}.windowHandle() is not None"
    " and {w}.windowHandle().isExposed()",
    canvas_box="(lambda c, p: (p.x(), p.y(), c.width(), c.height()))"
    "(fig.canvas, fig.canvas.mapToGlobal(QtCore.QPoint(0, 0)))",
)
TK = Toolkit(
    name="tk",
    # A root for timers, withdrawn: not in the screenshots.
    imports="import tkinter\n"
    "_gui_tk = globals().get('_gui_tk') or tkinter.Tk()\n"
    "_gui_tk.withdraw()",
    call_soon="_gui_tk.after(0, {call})",
    new_window="{w} = tkinter.Toplevel(_gui_tk); tkinter.Label({w}, text='akernel').pack()",
    is_mapped="bool({w}.winfo_ismapped() and {w}.winfo_viewable())",
    canvas_box="(lambda c: (c.winfo_rootx(), c.winfo_rooty(), c.winfo_width(), c.winfo_height()))"
    "(fig.canvas.get_tk_widget())",
)
TOOLKITS = {"qt": QT, "tk": TK}


def gui_environment(display: str) -> dict[str, str]:
    """The kernel's environment: the virtual display, Qt on X (not offscreen)."""
    env = dict(os.environ, DISPLAY=display)
    for name in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "MPLBACKEND", "QT_API"):
        env.pop(name, None)
    return env


class GuiKernel:
    """A kernel with a display, started when first needed and again if a test ended it."""

    def __init__(self, backend: str, toolkit: Toolkit, display: str) -> None:
        self.backend, self.toolkit, self.display = backend, toolkit, display
        self.km: KernelManager | None = None
        self.kc: BlockingKernelClient | None = None

    def client(self) -> BlockingKernelClient:
        if self.km is None or not self.km.is_alive():
            self.stop()
            self.km, self.kc = start_kernel(self.backend, env=gui_environment(self.display))
        assert self.kc is not None
        drain(self.kc)
        return self.kc

    def stop(self) -> None:
        if self.km is not None and self.kc is not None:
            stop_kernel(self.km, self.kc)
        self.km = self.kc = None


def drain(kc: BlockingKernelClient) -> None:
    """Forget what earlier tests left on IOPub and shell."""
    while True:
        try:
            kc.get_iopub_msg(timeout=0.05)
        except Exception:
            break
    while kc.shell_channel.msg_ready():
        kc.get_shell_msg(timeout=1)


@pytest.fixture(scope="module", params=sorted(TOOLKITS))
def toolkit(request: pytest.FixtureRequest) -> Toolkit:
    return TOOLKITS[request.param]


@pytest.fixture(scope="module")
def gui_kernel(backend: str, toolkit: Toolkit, x_display: str) -> Iterator[GuiKernel]:
    kernel = GuiKernel(backend, toolkit, x_display)
    try:
        yield kernel
    finally:
        kernel.stop()


@pytest.fixture
def kc(gui_kernel: GuiKernel) -> BlockingKernelClient:
    """A client of the toolkit's kernel, with the toolkit's event loop enabled."""
    client = gui_kernel.client()
    run_ok(client, f"%gui {gui_kernel.toolkit.name}\n{gui_kernel.toolkit.imports}")
    return client


def wait_true(kc: BlockingKernelClient, expression: str, what: str) -> None:
    """Evaluate ``expression`` in the kernel until it is true (the kernel idles in between)."""
    deadline = time.monotonic() + TIMEOUT
    while user_value(kc, expression) != "True":
        assert time.monotonic() < deadline, f"{what}: {expression} still false"
        time.sleep(0.05)


def token() -> str:
    return f"gui-{uuid.uuid4().hex[:10]}"


def wait_for_printed(kc: BlockingKernelClient, text: str) -> None:
    """Read IOPub, with no request pending, until a stream output contains ``text``."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{text!r} was never printed"
        try:
            msg = kc.get_iopub_msg(timeout=remaining)
        except Exception:
            continue
        if msg["msg_type"] == "stream" and text in msg["content"]["text"]:
            return


# -- in a kernel, on a display ---------------------------------------------------------


def test_matplotlib_figure_is_shown_and_painted(
    kc: BlockingKernelClient, gui_kernel: GuiKernel, artifacts: Path
) -> None:
    """``%matplotlib qt``/``tk``: a plot's window is mapped, drawn by the toolkit's
    loop while the kernel idles, and painted on the screen."""
    tk = gui_kernel.toolkit
    run_ok(
        kc,
        f"%matplotlib {tk.name}\n"
        "import matplotlib.pyplot as plt\n"
        "fig, ax = plt.subplots(figsize=(4, 3))\n"
        "draws = []\n"
        "fig.canvas.mpl_connect('draw_event', lambda event: draws.append(1))\n"
        "ax.plot([0, 1, 2], [0, 2, 1], linewidth=8, color='#1f77b4')",
    )
    window = "fig.canvas.manager.window"
    wait_true(kc, tk.is_mapped.format(w=window), "the figure's window is not mapped")
    # Drawn through a timer of the toolkit's (draw_idle), after the cell ended.
    wait_true(kc, "len(draws) > 0", "the figure was never drawn")
    x, y, width, height = eval(user_value(kc, tk.canvas_box))
    assert width > 100 and height > 100
    shot = artifacts / f"matplotlib-{tk.name}-{gui_kernel.backend}.png"
    deadline = time.monotonic() + TIMEOUT
    while True:
        canvas = screenshot(gui_kernel.display, shot)[y : y + height, x : x + width]
        white = np.all(canvas > 240, axis=-1).mean()
        line = np.all(np.abs(canvas.astype(int) - (0x1F, 0x77, 0xB4)) < 24, axis=-1).sum()
        if white > 0.3 and line > 50:
            break
        assert time.monotonic() < deadline, f"the canvas never showed the plot: see {shot}"
        time.sleep(0.1)
    run_ok(kc, "plt.close('all')")


def test_timer_fires_while_the_kernel_idles(
    kc: BlockingKernelClient, gui_kernel: GuiKernel
) -> None:
    """A toolkit timer set by a cell fires after the cell, with no request pending;
    what it prints reaches the frontend."""
    text = token()
    call = f"lambda: print({text!r}, flush=True)"
    run_ok(kc, gui_kernel.toolkit.call_soon.format(call=call))
    wait_for_printed(kc, text)


def test_window_opens_while_the_kernel_idles(
    kc: BlockingKernelClient, gui_kernel: GuiKernel
) -> None:
    run_ok(kc, gui_kernel.toolkit.new_window.format(w="plain_window"))
    wait_true(kc, gui_kernel.toolkit.is_mapped.format(w="plain_window"), "window not mapped")


def test_kernel_serves_while_the_gui_runs(kc: BlockingKernelClient, gui_kernel: GuiKernel) -> None:
    """Control and shell requests, output of an awaiting cell, an awaited event
    set by a GUI callback, and interrupts of an awaiting and of a sleeping cell."""
    reply = get_reply(kc, kc.kernel_info(), channel="shell")
    assert reply["content"]["status"] == "ok"
    msg = kc.session.msg("kernel_info_request", {})
    kc.control_channel.send(msg)
    assert get_reply(kc, msg["header"]["msg_id"], channel="control")["content"]["status"] == "ok"

    # Top-level await, with output while it awaits, ended by a GUI callback.
    call = "done.set"
    printed = stream_text(
        run_ok(
            kc,
            "import anyio\n"
            "done = anyio.Event()\n"
            "for i in range(3):\n"
            "    print('tick', i, flush=True)\n"
            "    await anyio.sleep(0.01)\n"
            f"{gui_kernel.toolkit.call_soon.format(call=call)}\n"
            "await done.wait()\n"
            "print('set by the GUI')",
        )
    )
    assert printed == "tick 0\ntick 1\ntick 2\nset by the GUI\n"

    for cell in ("await anyio.sleep(600)", "import time\ntime.sleep(600)"):
        msg_id = kc.execute(f"print('waiting', flush=True)\n{cell}")
        wait_for_stream(kc, msg_id, "waiting")
        # The shell answers while the cell awaits (the GUI runs meanwhile).
        if "anyio" in cell:
            info = get_reply(kc, kc.kernel_info())
            assert info["content"]["status"] == "ok"
        gui_kernel.km.interrupt_kernel()
        reply = get_reply(kc, msg_id)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        iopub_until_idle(kc, msg_id)
    assert user_value(kc, "__import__('akernel.gui').gui.enabled()") == repr(
        gui_kernel.toolkit.name
    )


def test_comm_message_handled_while_the_gui_runs(kc: BlockingKernelClient) -> None:
    target = token()
    run_ok(
        kc,
        "import comm\n"
        "def _echo(c, open_msg):\n"
        "    c.on_msg(lambda msg: c.send({'echo': msg['content']['data']['n']}))\n"
        f"comm.get_comm_manager().register_target({target!r}, _echo)",
    )
    comm_id = uuid.uuid4().hex
    for msg_type, content in (
        ("comm_open", {"comm_id": comm_id, "target_name": target, "data": {}}),
        ("comm_msg", {"comm_id": comm_id, "data": {"n": 17}}),
    ):
        msg = kc.session.msg(msg_type, content)
        kc.shell_channel.send(msg)
        received = iopub_until_idle(kc, msg["header"]["msg_id"])
    echoes = [m["content"]["data"] for m in received if m["msg_type"] == "comm_msg"]
    assert echoes == [{"echo": 17}]


HOOK_STATE = (
    # Whether the kernel's loop is hooked (akernel.gui.loops): asyncio's selector
    # has its own select, trio's I/O manager its own epoll object.
    "(lambda loop: 'select' in vars(loop._selector))(__import__('asyncio').get_running_loop())"
    " if __import__('sniffio').current_async_library() == 'asyncio' else"
    " type(__import__('trio')._core._run.GLOBAL_RUN_CONTEXT.runner.io_manager._epoll).__name__"
    " != 'epoll'"
)


def test_gui_off_and_on_again(kc: BlockingKernelClient, gui_kernel: GuiKernel) -> None:
    """``%gui`` alone gives the loop its own wait back: toolkit events wait
    until the GUI is enabled again, then they are handled."""
    assert user_value(kc, HOOK_STATE) == "True"
    run_ok(kc, "%gui")
    assert user_value(kc, HOOK_STATE) == "False"
    assert user_value(kc, "__import__('akernel.gui').gui.enabled()") == "None"
    text = token()
    run_ok(kc, gui_kernel.toolkit.call_soon.format(call=f"lambda: print({text!r}, flush=True)"))
    # Round trips, each with the kernel idle in its wait in between: the
    # toolkit's timer cannot fire, nothing runs the toolkit's loop.
    for _ in range(5):
        outputs = run_ok(kc, "pass")
        assert text not in stream_text(outputs)
    drained = []
    while True:
        try:
            drained.append(kc.get_iopub_msg(timeout=0.2))
        except Exception:
            break
    assert text not in stream_text(drained)
    run_ok(kc, f"%gui {gui_kernel.toolkit.name}")
    wait_for_printed(kc, text)
    assert user_value(kc, HOOK_STATE) == "True"


def test_unsupported_toolkits_are_refused_in_the_cell(kc: BlockingKernelClient) -> None:
    for gui, says in (("wx", "wxPython"), ("gtk3", "GTK 3"), ("osx", "macOS (Cocoa)")):
        reply, outputs = execute(kc, f"%gui {gui}")
        content = reply["content"]
        assert content["status"] == "error" and content["ename"] == "UsageError", content
        assert f"{says} event loop integration is not supported" in content["evalue"]
        assert "%gui qt" in content["evalue"] and "%gui tk" in content["evalue"]
        # IPython shows a UsageError as one line on stderr.
        assert content["evalue"] in stream_text(outputs, "stderr")
    # What was enabled before stays enabled.
    assert user_value(kc, HOOK_STATE) == "True"


def test_launched_with_gui_then_shut_down_with_a_window_open(
    backend: str, toolkit: Toolkit, x_display: str
) -> None:
    """``--gui qt``/``tk`` at launch (IPython's start-up option, as a kernelspec's
    argv can give it) enables the loop before the first request; the kernel
    process then ends cleanly with a window open, leaving no process behind."""
    km, kc = start_kernel(
        backend, env=gui_environment(x_display), extra_arguments=["--gui", toolkit.name]
    )
    try:
        enabled = user_value(kc, "__import__('akernel.gui').gui.enabled()")
        assert enabled == repr(toolkit.name)
        run_ok(kc, f"{toolkit.imports}\n{toolkit.new_window.format(w='last_window')}")
        wait_true(kc, toolkit.is_mapped.format(w="last_window"), "window not mapped")
        process = km.provisioner.process
        kernel = psutil.Process(process.pid)
        family = [kernel, *kernel.children(recursive=True)]
        kc.shutdown()
        assert process.wait(TIMEOUT) == 0
        for member in family:
            assert not member.is_running() or member.status() == psutil.STATUS_ZOMBIE, member
    finally:
        stop_kernel(km, kc)


WAKE_UP = """
import signal
import sys
import threading
import time

import anyio
from akernel import gui

backend, toolkit, cause = sys.argv[1:4]


async def main():
    gui.enable(toolkit)
    event = anyio.Event()
    if toolkit == "tk":
        import tkinter
        root = tkinter.Tk()
    if cause == "callback":
        if toolkit == "qt":
            core = next(m for name, m in sys.modules.items() if name.endswith(".QtCore"))
            core.QTimer.singleShot(0, event.set)
        else:
            root.after(0, event.set)
    else:
        signal.signal(signal.SIGUSR1, lambda signum, frame: event.set())
        main_thread = threading.get_ident()

        def send():
            time.sleep(0.2)  # the toolkit is waiting by then (if not, no harm)
            signal.pthread_kill(main_thread, signal.SIGUSR1)

        threading.Thread(target=send).start()
    # No timer in this loop: if the toolkit's wait did not end, it would wait for ever.
    await event.wait()
    gui.disable()
    print("set")


anyio.run(main, backend=backend)
"""


@pytest.mark.parametrize("cause", ["callback", "signal"])
def test_toolkit_wait_ends_for_the_loop(
    backend: str, toolkit: Toolkit, x_display: str, cause: str
) -> None:
    """The toolkit's wait ends when the event loop has work it did not get through
    its fd: an event set by a toolkit callback (a button's), or by a signal's
    handler (an interrupt: the handler runs only once the toolkit returns)."""
    result = subprocess.run(
        [sys.executable, "-c", WAKE_UP, backend, toolkit.name, cause],
        env=gui_environment(x_display),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0 and result.stdout == "set\n", result.stderr


QT_CANNOT_START = """
import sys
import anyio
from akernel import gui


async def main():
    try:
        gui.enable("qt")
    except gui.GuiUnavailable as error:
        print(error)
    print("enabled:", gui.enabled())


anyio.run(main, backend=sys.argv[1])
"""


def test_qt_that_cannot_start_is_refused_and_the_process_lives(
    backend: str, x_display: str
) -> None:
    """Qt ends its process when its platform plugin cannot start: akernel finds
    out in a child process first, and refuses with Qt's own words."""
    env = dict(gui_environment(x_display), QT_QPA_PLATFORM="no-such-platform")
    result = subprocess.run(
        [sys.executable, "-c", QT_CANNOT_START, backend],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert "cannot start in this kernel" in result.stdout
    assert "no-such-platform" in result.stdout
    assert result.stdout.endswith("enabled: None\n")


# -- the hooks, in this process, without a GUI ------------------------------------------


def select_wait(calls: list[tuple[int, float | None]]) -> Callable[..., None]:
    """A stand-in for a toolkit's wait: block in select() on the fd, as a toolkit would."""

    def wait(fd: int, timeout: float | None, ready: Callable[[], bool]) -> None:
        calls.append((fd, timeout))
        if not ready():
            select.select([fd], [], [], timeout)

    return wait


def hooked_state(hook: Any) -> Any:
    """What a hook changes in the running loop (compared before and after)."""
    if isinstance(hook, AsyncioHook):
        return dict(vars(hook._selector)), signal.set_wakeup_fd(signal.set_wakeup_fd(-1))
    return hook._io_manager._epoll


def test_hook_waits_and_is_undone_exactly(backend: str) -> None:
    """The hook calls the wait with the loop's fd and timeout; the loop wakes on
    its fd (another thread's call) and its timers; uninstalled, the loop is as
    it was, and its own wait runs again."""

    async def main() -> None:
        hook = hook_running_loop()
        before = hooked_state(hook)
        calls: list[tuple[int, float | None]] = []
        hook.install(select_wait(calls))
        try:
            assert hooked_state(hook) != before
            await anyio.sleep(0.05)  # a timer: a wait with a timeout
            assert any(timeout is not None and 0 < timeout <= 0.05 for _, timeout in calls)
            # A wake-up from another thread ends the wait on the loop's fd.
            with anyio.fail_after(TIMEOUT):
                await anyio.to_thread.run_sync(lambda: None)
            fds = {fd for fd, _ in calls}
            assert len(fds) == 1
        finally:
            hook.uninstall()
        assert hooked_state(hook) == before
        count = len(calls)
        await anyio.sleep(0.01)
        assert len(calls) == count

    anyio.run(main, backend=backend)


def test_work_made_by_a_gui_callback_ends_the_wait(backend: str) -> None:
    """A GUI callback that sets an event gives the loop work without waking its
    fd: the wait's ``ready()`` says so, and the toolkit ends its wait."""

    async def main() -> None:
        hook = hook_running_loop()
        event = anyio.Event()
        seen: list[tuple[bool, bool]] = []

        def wait(fd: int, timeout: float | None, ready: Callable[[], bool]) -> None:
            before = ready()
            event.set()  # what a button's callback could do
            seen.append((before, ready()))

        hook.install(wait)
        try:
            with anyio.fail_after(TIMEOUT):
                await event.wait()
        finally:
            hook.uninstall()
        assert seen[0] == (False, True)

    anyio.run(main, backend=backend)


class FakeToolkit:
    """A toolkit for the switch's tests: waits in select() on the fd, or fails."""

    def __init__(self, name: str, fail: bool = False) -> None:
        self.name, self.fail, self.waits = name, fail, 0

    def wait(self, fd: int, timeout: float | None, ready: Callable[[], bool]) -> None:
        self.waits += 1
        if self.fail:
            raise RuntimeError("the toolkit broke")
        if not ready():
            select.select([fd], [], [], timeout)


@pytest.fixture
def fake_toolkits(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """``akernel.gui`` with fake toolkits, and its state put back afterwards."""
    from akernel.gui import switch

    made: dict[str, Any] = {}

    def new_toolkit(name: str) -> Any:
        if name in made and isinstance(made[name], BaseException):
            raise made[name]
        made.setdefault(name, FakeToolkit(name))
        return made[name]

    monkeypatch.setattr(switch, "_new_toolkit", new_toolkit)
    monkeypatch.setattr(switch, "_toolkits", {})
    monkeypatch.setattr(switch, "_active", None)
    yield made
    switch.disable()


def test_switching_toolkits_and_a_failed_switch(backend: str, fake_toolkits: dict) -> None:
    """qt then tk: one hook at a time; a toolkit that cannot start leaves the
    previous one on; off leaves the loop as it was."""
    from akernel.gui import disable, enabled

    async def main() -> None:
        hook = hook_running_loop()
        before = hooked_state(hook)
        enable("qt")
        enable("qt")  # again: nothing changes
        await anyio.sleep(0.01)
        assert enabled() == "qt" and fake_toolkits["qt"].waits > 0
        enable("tk")
        await anyio.sleep(0.01)
        assert enabled() == "tk" and fake_toolkits["tk"].waits > 0
        fake_toolkits["qt5"] = GuiUnavailable("no display")
        with pytest.raises(GuiUnavailable, match="no display"):
            enable("qt5")
        waits = fake_toolkits["tk"].waits
        await anyio.sleep(0.01)
        assert enabled() == "tk" and fake_toolkits["tk"].waits > waits
        disable()
        assert enabled() is None and hooked_state(hook) == before

    anyio.run(main, backend=backend)


def test_a_failing_toolkit_is_switched_off(backend: str, fake_toolkits: dict) -> None:
    """A toolkit whose wait raises is switched off; the event loop goes on."""
    from akernel.gui import enabled

    async def main() -> None:
        hook = hook_running_loop()
        before = hooked_state(hook)
        fake_toolkits["tk"] = FakeToolkit("tk", fail=True)
        enable("tk")
        await anyio.sleep(0.01)
        await anyio.sleep(0.01)
        assert fake_toolkits["tk"].waits == 1
        assert enabled() is None and hooked_state(hook) == before

    anyio.run(main, backend=backend)


def test_uvloop_is_refused() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> str:
        with pytest.raises(GuiUnavailable) as refused:
            hook_running_loop("asyncio")
        return str(refused.value)

    assert "uvloop" in uvloop.run(main())


def test_unknown_trio_io_managers_and_guest_runs_are_refused() -> None:
    kqueue = SimpleNamespace(io_manager=SimpleNamespace(_kqueue=object()), runq=[])
    with pytest.raises(GuiUnavailable, match="epoll I/O manager"):
        TrioHook(kqueue)
    guest = SimpleNamespace(is_guest=True, io_manager=None, runq=[])
    with pytest.raises(GuiUnavailable, match="guest"):
        TrioHook(guest)


def test_gui_needs_the_main_thread() -> None:
    failures: list[BaseException] = []

    def in_thread() -> None:
        try:
            asyncio.run(_hook_here())
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(TIMEOUT)
    assert len(failures) == 1 and "main thread" in str(failures[0])


async def _hook_here() -> None:
    hook_running_loop()


def test_names_checked_before_anything_is_touched() -> None:
    with pytest.raises(GuiUnavailable, match="no such GUI event loop"):
        enable("qtt")
    with pytest.raises(GuiUnavailable, match="top-level await works"):
        enable("asyncio")


def test_no_display_is_said_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    if sys.platform in ("win32", "darwin"):
        pytest.skip("always a display there")
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    for toolkit in ("qt", "tk"):
        with pytest.raises(GuiUnavailable, match="DISPLAY is not set"):
            require_display(toolkit)
    monkeypatch.setenv("DISPLAY", ":1999")
    with pytest.raises(GuiUnavailable, match="cannot connect to the X display"):
        require_display("tk")
