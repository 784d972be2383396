"""JupyterLab's visual debugger on akernel, in a real headless browser, on both backends.

A person's debugging session, click by click: switch the debugger on with the
notebook toolbar's bug button, click the gutter beside a line of a function to
set a breakpoint, run the cell, read the function's arguments in the Variables
panel, step over a line, continue to the end, switch the debugger off and run
code again. Each step checks what the page shows (the red dot, the highlighted
line, the frame and line in the Callstack panel, the values, the output), all
of which JupyterLab builds from the kernel's DAP replies and events.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .debugger import Debugger
from .lab import Notebook

pytestmark = pytest.mark.timeout(300)

CODE = """\
def add(a, b):
    total = a + b
    return total

result = add(2, 3)
print("done", result)"""
BREAKPOINT_LINE = 2


def test_breakpoint_step_continue(notebook: Notebook) -> None:
    debugger = Debugger(notebook)
    lines = CODE.split("\n")

    def expect_stopped_at(cell_line: int) -> None:
        """The editor highlights ``cell_line`` and the Callstack's innermost frame is there."""
        expect(debugger.highlighted_line(cell)).to_have_text(lines[cell_line - 1])
        frame = debugger.frames.first
        expect(frame.locator(".jp-DebuggerCallstackFrame-name")).to_have_text("add")
        expect(frame.locator(".jp-DebuggerCallstackFrame-location")).to_have_text(
            re.compile(rf":{cell_line}$")
        )

    with notebook.step("enable the debugger"):
        debugger.enable()

    with notebook.step("set a breakpoint"):
        cell = notebook.insert(CODE)
        debugger.toggle_breakpoint(cell, BREAKPOINT_LINE)
        expect(debugger.breakpoint_markers(cell)).to_have_count(1)
        assert debugger.marked_lines(cell) == [BREAKPOINT_LINE]
        # The panel lists the breakpoints the kernel's setBreakpoints reply confirmed.
        expect(debugger.breakpoints).to_have_text([str(BREAKPOINT_LINE)])

    with notebook.step("stop at the breakpoint"):
        notebook.execute_last()
        expect_stopped_at(BREAKPOINT_LINE)
        # The caller's frame is below, stopped at the call.
        expect(debugger.frames.nth(1).locator(".jp-DebuggerCallstackFrame-location")).to_have_text(
            re.compile(r":5$")
        )
        expect(debugger.variable("a")).to_have_text("2")
        expect(debugger.variable("b")).to_have_text("3")
        expect(debugger.variable("total")).to_have_count(0)
        # The cell is still running and has printed nothing yet.
        expect(notebook.prompt(cell)).to_have_text("[*]:")
        expect(notebook.outputs(cell)).to_have_count(0)

    with notebook.step("step over"):
        debugger.button("next").click()
        expect_stopped_at(BREAKPOINT_LINE + 1)
        expect(debugger.variable("total")).to_have_text("5")
        expect(debugger.variable("a")).to_have_text("2")
        expect(notebook.outputs(cell)).to_have_count(0)

    with notebook.step("continue"):
        debugger.button("continue").click()
        notebook.wait_done(cell)
        expect(notebook.outputs(cell)).to_have_text("done 5")
        notebook.wait_idle()
        expect(debugger.highlighted_line(cell)).to_have_count(0)
        expect(debugger.frames).to_have_count(0)

    with notebook.step("disable the debugger"):
        debugger.disable()
        # add() still has the breakpoint in the editor, but nothing stops any more.
        after = notebook.run("print('after', add(4, 5))")
        expect(notebook.outputs(after)).to_have_text("after 9")
        notebook.wait_idle()
