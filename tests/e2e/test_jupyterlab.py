"""akernel in JupyterLab, in a real headless browser, on both backends.

Each test types code into a new cell of the same notebook and runs it with
Shift+Enter, the way a person would, and checks what the page shows. The
``notebook`` fixture is parametrized by kernelspec (``akernel`` for asyncio,
``akernel-trio`` for trio), so every step runs once per backend.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .lab import UI_TIMEOUT_MS, Notebook

pytestmark = pytest.mark.timeout(300)
# The event loop each kernelspec runs on, as top-level ``await`` sees it.
BACKENDS = {"akernel": "asyncio", "akernel-trio": "trio"}


def test_print(notebook: Notebook) -> None:
    with notebook.step("print"):
        sessions = notebook.server.api("sessions")
        kernels = [s["kernel"]["name"] for s in sessions if s["path"] == notebook.name]
        assert kernels == [notebook.kernel], f"the notebook's sessions run {kernels}"
        cell = notebook.run('print("hello from akernel")')
        expect(notebook.outputs(cell)).to_have_text("hello from akernel")


def test_backend(notebook: Notebook) -> None:
    with notebook.step("backend"):
        cell = notebook.run(
            "import anyio, sniffio; await anyio.sleep(0); print(sniffio.current_async_library())"
        )
        expect(notebook.outputs(cell)).to_have_text(BACKENDS[notebook.kernel])


def test_html(notebook: Notebook) -> None:
    with notebook.step("html"):
        cell = notebook.run("""from IPython.display import HTML; HTML("<b id='rich'>rich</b>")""")
        expect(cell.locator(".jp-OutputArea-output b#rich")).to_have_text("rich")


def test_matplotlib(notebook: Notebook) -> None:
    with notebook.step("matplotlib"):
        cell = notebook.run("import matplotlib.pyplot as plt; plt.plot([1,2,3]); plt.show()")
        image = notebook.outputs(cell).locator("img")
        expect(image).to_have_count(1)
        expect(image).to_have_attribute("src", re.compile(r"^(data:image/png;base64,|blob:)"))
        # The browser decoded it: a real picture, not a broken image.
        notebook.page.wait_for_function(
            "image => image.complete && image.naturalWidth > 0",
            arg=image.element_handle(),
            timeout=UI_TIMEOUT_MS,
        )


def test_widget(notebook: Notebook) -> None:
    with notebook.step("widget"):
        cell = notebook.run(
            "import ipywidgets as w; s = w.IntSlider(value=3); seen = [];"
            ' s.observe(lambda ch: seen.append(ch["new"]), names="value"); s'
        )
        slider = cell.locator(".widget-slider")
        handle = slider.locator(".noUi-handle")
        readout = slider.locator(".widget-readout")
        expect(handle).to_be_visible()
        expect(readout).to_have_text("3")

        handle.focus()
        for _ in range(3):
            notebook.page.keyboard.press("ArrowRight")
        expect(readout).to_have_text("6")

        check = notebook.run("print(s.value, seen)")
        output = notebook.outputs(check)
        expect(output).to_have_text(re.compile(r"^6 \[[\d, ]*6\]\s*$"))
        seen = output.inner_text().strip().split(" ", 1)[1]
        moves = [int(v) for v in seen.strip("[]").split(",")]
        # Each key press may or may not be its own update; their order holds.
        assert moves == sorted(moves) and set(moves) <= {4, 5, 6}, f"seen == {seen}"


def test_tqdm_auto_widget_bar(notebook: Notebook) -> None:
    with notebook.step("tqdm"):
        # tqdm.auto recognises a Jupyter kernel: a widget progress bar, not text on stderr.
        cell = notebook.run("from tqdm.auto import tqdm; total = sum(1 for _ in tqdm(range(40)))")
        expect(cell.locator(".widget-hprogress")).to_have_count(1)
        expect(notebook.outputs(cell)).to_contain_text("40/40")
        stderr = cell.locator('[data-mime-type="application/vnd.jupyter.stderr"]')
        expect(stderr).to_have_count(0)


def test_connect_info(notebook: Notebook) -> None:
    with notebook.step("connect_info"):
        cell = notebook.run("%connect_info")
        output = notebook.outputs(cell)
        expect(output).to_contain_text('"shell_port"')
        expect(output).to_contain_text("--existing")
        expect(output).to_contain_text('"key"')


def test_interrupt(notebook: Notebook) -> None:
    with notebook.step("interrupt"):
        # The printed line shows that the cell is running, so the interrupt
        # reaches the sleep rather than a kernel still starting the cell.
        cell = notebook.submit('import time; print("sleeping"); time.sleep(60)')
        expect(notebook.outputs(cell).first).to_have_text("sleeping")
        notebook.interrupt()
        expect(notebook.outputs(cell).last).to_contain_text("KeyboardInterrupt")
        notebook.wait_done(cell)

        after = notebook.run('print("after the interrupt")')
        expect(notebook.outputs(after)).to_have_text("after the interrupt")


def test_restart(notebook: Notebook) -> None:
    with notebook.step("restart"):
        before = notebook.run("defined_before_restart = 42; defined_before_restart")
        expect(notebook.outputs(before)).to_have_text("42")

        notebook.restart()
        notebook.wait_idle()

        cell = notebook.submit("defined_before_restart")
        count = notebook.wait_done(cell)
        assert count == 1, f"the first cell after the restart has execution count {count}"
        expect(notebook.outputs(cell)).to_contain_text(
            "NameError: name 'defined_before_restart' is not defined"
        )
