"""A private JupyterLab server and a driver for one notebook page in it.

The server runs as a subprocess with its config, data and runtime
directories in a temporary directory, so the user's Jupyter setup is never
read nor written; ``JUPYTER_PATH`` points at this environment's
``share/jupyter`` so the akernel kernelspecs and the ipywidgets lab extension
installed there are found. Its output, which includes every kernel's stderr,
goes to a log file quoted in failure messages.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page, Response

# Generous: the machine may be busy with other test runs.
STARTUP_TIMEOUT = 120.0
UI_TIMEOUT_MS = 60_000
LOG_TAIL_LINES = 60

# Lab settings that keep the page quiet and deterministic: no news or update
# notifications, every cell in the DOM (no windowing), no automatic brackets
# while typing.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/codemirror-extension/plugin": {"defaultConfig": {"autoClosingBrackets": False}},
}


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a text file, or a note if it cannot be read."""
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(text.splitlines()[-lines:])


def describe_safely(report: Callable[[], str]) -> str:
    """What ``report`` says, or why it could not say it (the page may be gone)."""
    try:
        return report()
    except Exception as e:
        return f"<cannot read the page: {e}>"


class LabServer:
    """A ``jupyter lab`` subprocess serving ``root`` on a free loopback port."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "notebooks"
        self.log_path = base / "jupyter-server.log"
        self.token = secrets.token_hex(24)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def environment(self) -> dict[str, str]:
        """The server's environment: isolated Jupyter dirs, this venv's share/jupyter."""
        env = dict(os.environ)
        jupyter = self.base / "jupyter"
        env.update(
            JUPYTER_CONFIG_DIR=str(jupyter / "config"),
            JUPYTER_DATA_DIR=str(jupyter / "data"),
            JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"),
            JUPYTER_PATH=str(Path(sys.prefix) / "share" / "jupyter"),
            IPYTHONDIR=str(self.base / "ipython"),
            MPLCONFIGDIR=str(self.base / "matplotlib"),
            PYTHONUNBUFFERED="1",
        )
        # The kernels must pick matplotlib's inline backend, as in a user's setup.
        env.pop("MPLBACKEND", None)
        return env

    def write_settings(self) -> None:
        settings = self.base / "jupyter" / "config" / "lab" / "user-settings"
        for plugin, values in LAB_SETTINGS.items():
            path = settings / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))

    def start(self) -> None:
        """Start the server and wait until its REST API answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.write_settings()
        argv = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--port-retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--ServerApp.open_browser=False",
            # CI and containers run as root; the server refuses that unless told.
            "--ServerApp.allow_root=True",
            # No look-ups of extensions on the network.
            "--LabApp.extension_manager=readonly",
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv,
                env=self.environment(),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Out of the terminal's process group: Ctrl-C on pytest must not
                # reach the server, which would wait for a confirmation.
                start_new_session=True,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"jupyter lab exited with code {self.process.returncode} before answering;"
                    f" log {self.log_path}:\n{tail(self.log_path)}"
                )
            try:
                self.api("status")
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.5)
        raise AssertionError(
            f"jupyter lab did not answer on {self.url} within {STARTUP_TIMEOUT:.0f} s;"
            f" log {self.log_path}:\n{tail(self.log_path)}"
        )

    def stop(self) -> None:
        """Stop the server, which shuts its kernels down; kill it if it takes over 20 s.

        A killed server leaves no kernel behind either: akernel exits when
        the process that started it is gone.
        """
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def api(self, path: str, method: str = "GET") -> Any:
        """Call ``/api/<path>`` with the token; return the decoded JSON, if any."""
        request = urllib.request.Request(
            f"{self.url}/api/{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def page_url(self, notebook: str) -> str:
        return f"{self.url}/lab/tree/{notebook}?token={self.token}"


class Notebook:
    """One notebook open in JupyterLab, driven through the UI like a person would.

    Code is typed into the last cell and run with Shift+Enter; the kernel is
    interrupted and restarted from the toolbar and the Kernel menu.
    """

    def __init__(
        self, page: Page, server: LabServer, name: str, kernel: str, display_name: str, shots: Path
    ):
        self.page = page
        self.server = server
        self.name = name
        self.kernel = kernel
        self.display_name = display_name
        self.shots = shots
        self.console: list[str] = []
        # More of the page to describe when a step fails (the debugger's panels).
        self.reports: dict[str, Callable[[], str]] = {}
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))

    def _on_console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.console.append(f"{message.type}: {message.text}")

    # -- locators ---------------------------------------------------------
    @property
    def panel(self) -> Locator:
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")

    @property
    def cells(self) -> Locator:
        return self.panel.locator(".jp-Notebook .jp-Cell")

    def toolbar_item(self, name: str) -> Locator:
        return self.panel.locator(f'.jp-Toolbar-item[data-jp-item-name="{name}"]')

    @staticmethod
    def outputs(cell: Locator) -> Locator:
        return cell.locator(".jp-OutputArea-output")

    @staticmethod
    def prompt(cell: Locator) -> Locator:
        return cell.locator(".jp-InputPrompt")

    # -- actions ----------------------------------------------------------
    def open(self) -> None:
        """Load the notebook page and wait until its kernel has started and is idle."""
        from playwright.sync_api import expect

        self.page.goto(self.server.page_url(self.name))
        kernel_name = self.toolbar_item("kernelName").filter(has_text=self.display_name)
        dialog = self.page.locator(".jp-Dialog").first
        # The kernelspec is in the notebook's metadata, so Lab should not ask
        # which kernel to start; if it does anyway, take its proposal.
        expect(kernel_name.or_(dialog).first).to_be_visible()
        if dialog.is_visible():
            dialog.locator(".jp-mod-accept").click()
        expect(kernel_name).to_be_visible()
        self.wait_idle()

    def wait_idle(self) -> None:
        """Wait until the toolbar's kernel status shows an idle, connected kernel."""
        from playwright.sync_api import expect

        status = self.panel.locator(".jp-Notebook-ExecutionIndicator")
        expect(status).to_have_attribute("data-status", "idle")

    @property
    def last_cell(self) -> Locator:
        """The cell that is last now (stays that cell when more are added)."""
        return self.cells.nth(self.cells.count() - 1)

    def submit(self, code: str) -> Locator:
        """Type ``code`` into the last cell, press Shift+Enter; return that cell."""
        from playwright.sync_api import expect

        cell = self.last_cell
        editor = cell.locator(".cm-content")
        editor.click()
        self.page.keyboard.press("Control+a")
        self.page.keyboard.press("Delete")
        self.page.keyboard.type(code)
        expect(editor).to_have_text(code)
        self.execute_last()
        return cell

    def insert(self, code: str) -> Locator:
        """Replace the last cell's text with ``code`` in one insertion, as a paste
        does, and return the cell. Typing line by line would let the editor
        indent each new line on its own, mangling multi-line code."""
        from playwright.sync_api import expect

        cell = self.last_cell
        editor = cell.locator(".cm-content")
        editor.click()
        self.page.keyboard.press("Control+a")
        self.page.keyboard.press("Delete")
        self.page.keyboard.insert_text(code)
        expect(editor.locator(".cm-line")).to_have_text(code.split("\n"))
        return cell

    def execute_last(self) -> None:
        """Run the last cell with Shift+Enter in its editor; return once the
        notebook has appended the new, empty cell that running the last one adds."""
        from playwright.sync_api import expect

        count = self.cells.count()
        self.cells.nth(count - 1).locator(".cm-content").focus()
        self.page.keyboard.press("Shift+Enter")
        expect(self.cells).to_have_count(count + 1)

    def wait_done(self, cell: Locator) -> int:
        """Wait until ``cell`` has finished running; return its execution count."""
        from playwright.sync_api import expect

        prompt = self.prompt(cell)
        expect(prompt).to_have_text(re.compile(r"^\[\d+\]:$"))
        return int(prompt.inner_text().strip()[1:-2])

    def run(self, code: str) -> Locator:
        """Run ``code`` in a new cell and wait until it has finished."""
        cell = self.submit(code)
        self.wait_done(cell)
        return cell

    def output_text(self, cell: Locator) -> str:
        return "\n".join(self.outputs(cell).all_inner_texts())

    def interrupt(self) -> None:
        """Click the toolbar's interrupt button (the square "stop" icon)."""
        self.toolbar_item("interrupt").locator("jp-button").click()

    def restart(self) -> None:
        """Kernel menu → Restart Kernel…, then confirm in the dialog."""
        self.page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Kernel$")).click()
        self.page.locator('.lm-Menu-item[data-command="kernelmenu:restart"]').click()
        accept = self.page.locator(".jp-Dialog .jp-mod-accept", has_text="Restart")

        def restarted(response: Response) -> bool:
            path = response.url.split("?")[0]
            return response.request.method == "POST" and path.endswith("/restart")

        # Code run after this can only reach the new kernel: the server has
        # answered the restart request, so the old one is gone.
        with self.page.expect_response(restarted, timeout=UI_TIMEOUT_MS) as answer:
            accept.click()
        assert answer.value.ok, f"the server answered the restart with {answer.value.status}"

    # -- diagnostics ------------------------------------------------------
    def transcript(self) -> str:
        """Each cell's prompt, source and output text, as the page shows them."""
        parts = []
        try:
            for cell in self.cells.all():
                prompt = self.prompt(cell).inner_text(timeout=2000).strip()
                source = cell.locator(".cm-content").inner_text(timeout=2000)
                parts.append(f"{prompt} {source}\n{self.output_text(cell)}".rstrip())
        except Exception as e:
            parts.append(f"<cannot read the notebook: {e}>")
        return "\n".join(parts)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Run one step; on failure, add a screenshot, the page's cells and the log."""
        try:
            yield
        except Exception as e:
            shot = self.shots / f"{self.kernel}-{name}.png"
            try:
                self.page.screenshot(path=str(shot), full_page=True)
                where = str(shot)
            except Exception as err:
                where = f"<no screenshot: {err}>"
            console = "\n".join(self.console[-20:]) or "(none)"
            reports = "".join(
                f"--- {title} ---\n{describe_safely(report)}\n"
                for title, report in self.reports.items()
            )
            raise AssertionError(
                f"{self.kernel}: step {name!r} failed: {e}\n"
                f"screenshot: {where}\n"
                f"--- notebook as shown ---\n{self.transcript()}\n"
                f"{reports}"
                f"--- browser console errors and warnings ---\n{console}\n"
                f"--- jupyter server log {self.server.log_path} (kernel stderr included) ---\n"
                f"{tail(self.server.log_path)}"
            ) from e
