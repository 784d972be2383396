"""Widget callbacks on a kernel subshell while a cell blocks, in JupyterLab, on both backends.

akernel advertises ``"kernel subshells"``; JupyterLab (4.4+), with its
default ``commsOverSubshells: "perCommTarget"``, then creates a subshell for
each comm target and sends the widgets' ``comm_msg`` on it. A slider moved
while a ``time.sleep`` cell runs on the main shell therefore reaches its
observer at once, in the subshell's thread, instead of after the sleep. The
lab server runs with JupyterLab's default for that setting (lab.py does not
set it).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from .lab import UI_TIMEOUT_MS, Notebook

if TYPE_CHECKING:
    from playwright.sync_api import Locator

pytestmark = pytest.mark.timeout(300)

# Far longer than moving the slider takes, so the cell is surely still
# sleeping when the observer runs; the test interrupts it, so this costs nothing.
SLEEP_SECONDS = 60
# Long enough to see the observer's output even when it only comes after the
# sleep (a kernel without subshells): the test then fails on what the page
# shows at that moment, which says why, rather than on a timeout.
OBSERVER_TIMEOUT_MS = SLEEP_SECONDS * 1000 + UI_TIMEOUT_MS

WIDGETS = """\
import ipywidgets as w
slider = w.IntSlider(value=3)
out = w.Output()
seen = []
def observe(change):
    seen.append(change["new"])
    with out:
        print(f"observer saw {change['new']}")
slider.observe(observe, names="value")
display(slider, out)"""


def printed_lines(cell: Locator) -> list[str]:
    """The lines ``cell`` has printed to stdout so far (not its traceback, which
    quotes the source)."""
    stdout = cell.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stdout"]')
    return "\n".join(stdout.all_inner_texts()).splitlines()


def test_widget_observer_prints_while_a_cell_sleeps(notebook: Notebook) -> None:
    with notebook.step("widgets"):
        widgets = notebook.insert(WIDGETS)
        notebook.execute_last()
        notebook.wait_done(widgets)
        slider = widgets.locator(".widget-slider")
        handle = slider.locator(".noUi-handle")
        readout = slider.locator(".widget-readout")
        expect(handle).to_be_visible()
        expect(readout).to_have_text("3")
        # The Output widget's area, where the observer's prints are shown.
        observed = widgets.locator(".widget-output")
        expect(observed).to_have_count(1)

    with notebook.step("sleep"):
        sleeper = notebook.submit(
            f'import time; print("sleeping"); time.sleep({SLEEP_SECONDS}); print("slept")'
        )
        # The kernel prints before it sleeps: the main shell is now blocked.
        expect(notebook.outputs(sleeper).first).to_have_text("sleeping")
        expect(notebook.prompt(sleeper)).to_have_text("[*]:")

    with notebook.step("move slider"):
        handle.focus()
        for _ in range(3):
            notebook.page.keyboard.press("ArrowRight")
        expect(readout).to_have_text("6")
        expect(observed).to_contain_text("observer saw 6", timeout=OBSERVER_TIMEOUT_MS)
        # Read at the moment the observer's output is seen: the cell still sleeps.
        sleeper_printed = printed_lines(sleeper)
        sleeper_prompt = notebook.prompt(sleeper).inner_text().strip()
        assert sleeper_printed == ["sleeping"] and sleeper_prompt == "[*]:", (
            "the observer's output appeared only after the sleeping cell had finished"
            f" (its prompt {sleeper_prompt!r}, its printed lines {sleeper_printed!r}):"
            " the comm message waited for the main shell instead of running on a subshell"
        )
        moves = [int(v) for v in re.findall(r"observer saw (\d+)", observed.inner_text())]
        # Each key press may or may not be its own update; their order holds.
        assert moves == sorted(moves) and set(moves) <= {4, 5, 6}, f"observed {moves}"

    with notebook.step("interrupt"):
        notebook.interrupt()
        expect(notebook.outputs(sleeper).last).to_contain_text("KeyboardInterrupt")
        notebook.wait_done(sleeper)
        assert printed_lines(sleeper) == ["sleeping"]

    with notebook.step("after"):
        check = notebook.run("print(slider.value, seen)")
        expect(notebook.outputs(check)).to_have_text(f"6 {moves}")
        # The observer still answers now that the main shell is idle again.
        handle.focus()
        notebook.page.keyboard.press("ArrowRight")
        expect(readout).to_have_text("7")
        expect(observed).to_contain_text("observer saw 7")
