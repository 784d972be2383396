"""Fixtures for the browser test: a JupyterLab server, Chromium, one notebook per kernel.

This directory is collected only when a path inside it is named on the
command line (``nox -s e2e`` runs ``pytest tests/e2e``), so the unit test
suite (``nox -s tests``, which does not install JupyterLab nor Playwright)
leaves it out. The browser is Debian's Chromium at ``/usr/bin/chromium``,
driven by Playwright; nothing is downloaded. If it is missing the tests fail
and say how to install it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ..collection import collected_only_when_named
from .lab import UI_TIMEOUT_MS, LabServer, Notebook

if TYPE_CHECKING:
    from playwright.sync_api import Browser

HERE = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KERNELS = ["akernel", "akernel-trio"]


pytest_ignore_collect = collected_only_when_named(HERE)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium, launched by Playwright with a fresh profile."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: the browser test needs Debian's chromium package"
            " (apt-get install -y chromium; .ci/run installs it)",
            pytrace=False,
        )
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def e2e_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the server's files, its log and failure screenshots go (kept by pytest)."""
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def lab(browser: Browser, e2e_dir: Path) -> Iterator[LabServer]:
    """A running JupyterLab server with both akernel kernelspecs available."""
    server = LabServer(e2e_dir)
    try:
        server.start()
        specs = server.api("kernelspecs")["kernelspecs"]
        missing = [name for name in KERNELS if name not in specs]
        assert not missing, (
            f"kernelspecs {missing} not found by JupyterLab (found {sorted(specs)});"
            " nox -s e2e registers them with akernel install --sys-prefix"
        )
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module", params=KERNELS)
def notebook(
    request: pytest.FixtureRequest, browser: Browser, lab: LabServer, e2e_dir: Path
) -> Iterator[Notebook]:
    """A new notebook for one kernel, open in its own browser context."""
    import nbformat

    kernel = request.param
    spec = lab.api(f"kernelspecs/{kernel}")["spec"]
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": kernel,
        "display_name": spec["display_name"],
        "language": spec["language"],
    }
    nb.cells.append(nbformat.v4.new_code_cell(""))
    name = f"{kernel}.ipynb"
    nbformat.write(nb, lab.root / name)

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    shots = e2e_dir / "screenshots"
    shots.mkdir(exist_ok=True)
    driver = Notebook(context.new_page(), lab, name, kernel, spec["display_name"], shots)
    try:
        with driver.step("open"):
            driver.open()
        yield driver
    finally:
        context.close()
        # Free the kernel now rather than when the server stops.
        for session in lab.api("sessions"):
            if session["path"] == name:
                lab.api(f"sessions/{session['id']}", method="DELETE")
