"""A kernel that segfaults in JupyterLab, on both backends: the server restarts it, the
next cell shows how its predecessor died, and ``%recover`` brings its variables back.

jupyter_server's restarter notices the dead kernel and starts a new one on the same
connection file; JupyterLab says so in its "Kernel Restarting" dialog. The new kernel
reads the journal its predecessor kept beside that file (docs/robustness.md, "When the
kernel dies"). tests/test_crash_recovery.py checks the same at the protocol level.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .lab import UI_TIMEOUT_MS, Notebook

pytestmark = pytest.mark.timeout(300)

CRASH = "import ctypes; ctypes.string_at(0)"
# The event loop each kernelspec runs on, as the report names it.
BACKENDS = {"akernel": "asyncio", "akernel-trio": "trio"}
# faulthandler's stack, most recent call first: from ctypes down to the cell's only line.
STACK = re.compile(
    r"Python stack at the crash \(most recent call first\):\n"
    r'\s+File "[^"]*ctypes[^"]*", line \d+ in string_at\n'
    r"(?:.*\n)*?"
    r'\s+File "[^"]*", line 1 in <module>\n%recover'
)
# The restarter polls every 3 s and may take a few tries on a busy machine.
RESTART_TIMEOUT_MS = 2 * UI_TIMEOUT_MS


def test_segfault_is_reported_and_recovered(notebook: Notebook) -> None:
    with notebook.step("cells before the crash"):
        defined = notebook.run("answer = 42")
        assert notebook.wait_done(defined) == 1
        expect(notebook.outputs(defined)).to_have_count(0)
        failed = notebook.run("1/0")
        expect(notebook.outputs(failed)).to_contain_text("ZeroDivisionError")

    with notebook.step("segfault"):
        notebook.submit(CRASH)
        # JupyterLab learns from the server that the kernel died and is being restarted.
        dialog = notebook.page.locator(".jp-Dialog", has_text="appears to have died")
        expect(dialog).to_be_visible(timeout=RESTART_TIMEOUT_MS)
        expect(dialog).to_contain_text("Kernel Restarting")
        expect(dialog).to_contain_text(f"The kernel for {notebook.name} appears to have died")
        dialog.locator(".jp-mod-accept").click()
        expect(dialog).to_have_count(0)
        notebook.wait_idle()

    with notebook.step("report"):
        after = notebook.run("print('after')")
        # A new kernel: its first cell.
        assert notebook.wait_done(after) == 1
        # The report comes first, on stderr; then the cell's own output.
        outputs = notebook.outputs(after)
        expect(outputs).to_have_count(2)
        report = outputs.nth(0)
        expect(report).to_have_attribute("data-mime-type", "application/vnd.jupyter.stderr")
        backend = BACKENDS[notebook.kernel]
        expect(report).to_contain_text(
            re.compile(rf"^The previous kernel \(pid \d+, {backend}\) died: SIGSEGV \(Segmentation")
        )
        expect(report).to_contain_text(f"It was running cell [3]:\n    {CRASH}")
        expect(report).to_contain_text(STACK)
        expect(report).to_contain_text("%recover re-runs the 1 cell that completed without error")
        expect(outputs.nth(1)).to_have_attribute("data-mime-type", "application/vnd.jupyter.stdout")
        expect(outputs.nth(1)).to_have_text("after")

    with notebook.step("recover"):
        listed = notebook.run("%recover --list")
        # Only the cell that completed: not the one that failed, nor the one that crashed.
        expect(notebook.outputs(listed)).to_have_text(["[1] answer = 42"])
        # A replayed crash would kill the kernel again; a replayed 1/0 would stop the replay.
        recovered = notebook.run("%recover")
        expect(notebook.outputs(recovered)).to_have_text(
            ["re-running cell [1]\nrecovered 1 cell(s)"]
        )
        check = notebook.run("print(answer)")
        # The report was shown once: nothing on stderr any more.
        expect(notebook.outputs(check)).to_have_text(["42"])
        info = notebook.run("%crashinfo")
        expect(notebook.outputs(info)).to_contain_text("SIGSEGV (Segmentation fault)")
