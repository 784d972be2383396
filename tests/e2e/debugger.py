"""JupyterLab's visual debugger, driven through its UI (see test_debugger.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lab import Notebook

if TYPE_CHECKING:
    from playwright.sync_api import Locator


class Debugger:
    """JupyterLab's visual debugger on one notebook, driven through its UI: the
    notebook toolbar's bug toggle, the breakpoint gutter of a cell's editor, and
    the debugger sidebar's Variables, Callstack and Breakpoints panels.

    The selectors are JupyterLab 4's own class names and command ids, which
    do not change with the interface language.
    """

    def __init__(self, notebook: Notebook) -> None:
        self.notebook = notebook
        self.page = notebook.page
        notebook.reports["debugger sidebar as shown"] = self.describe

    # -- locators ---------------------------------------------------------
    @property
    def toggle(self) -> Locator:
        """The bug button of the notebook toolbar; ``aria-pressed`` says if it is on."""
        return self.notebook.toolbar_item("debugger-icon").locator("jp-button.jp-DebuggerBugButton")

    @property
    def sidebar(self) -> Locator:
        return self.page.locator("#jp-debugger-sidebar")

    def variable(self, name: str) -> Locator:
        """The value shown for variable ``name`` in the Variables panel's tree."""
        tree = self.sidebar.locator(".jp-DebuggerVariables-body:not(.lm-mod-hidden)")
        names = self.page.locator(".jp-DebuggerVariables-name").get_by_text(name, exact=True)
        item = tree.locator("jp-tree-item").filter(has=names)
        return item.locator(".jp-DebuggerVariables-detail").first

    @property
    def frames(self) -> Locator:
        """The Callstack panel's frames, innermost first."""
        return self.sidebar.locator(".jp-DebuggerCallstack-body li.jp-DebuggerCallstackFrame")

    def button(self, command: str) -> Locator:
        """A Callstack toolbar button by its command: ``continue``, ``next``, ``stepIn``…"""
        return self.sidebar.locator(f'jp-button[data-command="debugger:{command}"]')

    @property
    def breakpoints(self) -> Locator:
        """The line numbers listed in the Breakpoints panel (as the kernel confirmed them)."""
        return self.sidebar.locator(".jp-DebuggerBreakpoint .jp-DebuggerBreakpoint-line")

    @staticmethod
    def highlighted_line(cell: Locator) -> Locator:
        """The line of ``cell`` where execution is stopped."""
        return cell.locator(".cm-line.jp-DebuggerEditor-highlight")

    @staticmethod
    def line_number(cell: Locator, line: int) -> Locator:
        # The gutter keeps a hidden element to measure its width: skip it.
        numbers = cell.locator(".cm-lineNumbers .cm-gutterElement").filter(visible=True)
        return numbers.get_by_text(str(line), exact=True)

    @staticmethod
    def breakpoint_markers(cell: Locator) -> Locator:
        """The red dots of ``cell``'s breakpoint gutter."""
        elements = cell.locator(".cm-breakpoint-gutter .cm-gutterElement").filter(visible=True)
        return elements.filter(has=cell.page.locator(".cm-breakpoint-icon"))

    # -- actions ----------------------------------------------------------
    def enable(self) -> None:
        """Switch the debugger on with the bug button; wait for its sidebar."""
        from playwright.sync_api import expect

        expect(
            self.toggle, "the bug button is disabled: the kernel does not offer the debugger"
        ).to_have_attribute("aria-disabled", "false")
        self.toggle.click()
        expect(self.toggle).to_have_attribute("aria-pressed", "true")
        expect(self.sidebar).to_be_visible()

    def disable(self) -> None:
        from playwright.sync_api import expect

        self.toggle.click()
        expect(self.toggle).to_have_attribute("aria-pressed", "false")

    def toggle_breakpoint(self, cell: Locator, line: int) -> None:
        """Click the breakpoint gutter, left of the line numbers, beside ``line``.

        (In JupyterLab 4.6 a click on the line number itself sets nothing.)
        """
        number = self.line_number(cell, line).bounding_box()
        gutter = cell.locator(".cm-gutter.cm-breakpoint-gutter")
        box = gutter.bounding_box()
        assert number and box, "the cell's gutters are not on screen"
        gutter.click(
            position={
                "x": box["width"] / 2,
                "y": number["y"] + number["height"] / 2 - box["y"],
            }
        )

    def marked_lines(self, cell: Locator) -> list[int]:
        """The line numbers beside which ``cell``'s gutter shows a breakpoint dot."""
        lines = []
        for marker in self.breakpoint_markers(cell).all():
            box = marker.bounding_box()
            assert box, "a breakpoint dot is not on screen"
            middle = box["y"] + box["height"] / 2
            for number in (
                cell.locator(".cm-lineNumbers .cm-gutterElement").filter(visible=True).all()
            ):
                row = number.bounding_box()
                if row and row["y"] <= middle < row["y"] + row["height"]:
                    lines.append(int(number.inner_text()))
        return lines

    # -- diagnostics ------------------------------------------------------
    def describe(self) -> str:
        """The sidebar's panels as text, for failure messages."""
        if not self.sidebar.is_visible():
            return "(not shown)"
        panels = {
            "variables": ".jp-DebuggerVariables",
            "callstack": ".jp-DebuggerCallstack",
            "breakpoints": ".jp-DebuggerBreakpoints",
        }
        lines = []
        for title, selector in panels.items():
            text = " ".join(self.sidebar.locator(selector).all_inner_texts())
            lines.append(f"{title}: {' '.join(text.split())}")
        return "\n".join(lines)
