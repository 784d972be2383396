"""The notebooks in ``tests/notebooks`` give the same outputs on akernel and ipykernel.

Each notebook runs with nbclient in a fresh kernel of its own: once on
ipykernel (the reference) and once per akernel backend. For every code cell
two things are compared after normalisation:

``outputs``
    what nbclient stored in the notebook, i.e. what a user sees;
``messages``
    the IOPub messages whose parent is the cell's execute request, in the
    order they arrived (busy/idle and the echo of the code left out). This
    also shows ``update_display_data``, ``clear_output``, display ids, comm
    traffic, and output that arrived after the cell had finished
    (``"late": true``), which nbclient does not store anywhere.

Values that legitimately differ from run to run or between implementations
are normalised; see ``Normaliser``. Where akernel differs from ipykernel on
purpose, the reference is adjusted by a documented function in
``DELIBERATE_DIFFERENCES`` before the comparison, so the difference itself is
tested.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import functools
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import BACKENDS, kernel_name, retry_port_clash

NOTEBOOKS = Path(__file__).parent / "notebooks"
NOTEBOOK_NAMES = sorted(path.stem for path in NOTEBOOKS.glob("*.ipynb"))

# Seconds a cell may run; kernel start-up gets as long.
CELL_TIMEOUT = 60

# ipykernel, launched with this very interpreter. A kernelspec of its own in
# the private JUPYTER_PATH set up by conftest, so neither a user-level
# ``python3`` spec nor another interpreter's can stand in for it.
IPYKERNEL = "ipykernel-test"
_spec_dir = Path(os.environ["JUPYTER_PATH"].split(os.pathsep)[0]) / "kernels" / IPYKERNEL
_spec_dir.mkdir(parents=True, exist_ok=True)
(_spec_dir / "kernel.json").write_text(
    json.dumps(
        {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "ipykernel (reference for akernel tests)",
            "language": "python",
        }
    )
)

# Messages that say nothing about a cell's output.
IGNORED_MESSAGES = {"status", "execute_input"}


# -- running notebooks ---------------------------------------------------------


@dataclass
class Run:
    """A notebook executed by nbclient, with every IOPub message it read."""

    notebook: nbformat.NotebookNode
    # (message, whether it arrived after its cell had gone idle)
    messages: list[tuple[dict, bool]] = field(default_factory=list)
    cell_of_msg_id: dict[str, str] = field(default_factory=dict)


def execute_notebook(name: str, kernel: str) -> Run:
    """Run notebook ``name`` on a fresh ``kernel`` and record its IOPub traffic
    (again if the kernel died at once: jupyter_client's port race, see
    ``retry_port_clash``)."""
    return retry_port_clash(lambda: _execute_once(name, kernel))


def _execute_once(name: str, kernel: str) -> Run:
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    run = Run(notebook)
    idle: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="akernel-nb-") as cwd:
        client = NotebookClient(
            notebook,
            kernel_name=kernel,
            timeout=CELL_TIMEOUT,
            startup_timeout=CELL_TIMEOUT,
            # Errors in untagged cells show up in the comparison rather than
            # stopping the notebook; ``reference_problems`` keeps them out of
            # the reference.
            allow_errors=True,
            record_timing=False,
            resources={"metadata": {"path": cwd}},
        )

        def record_iopub(notebook: nbformat.NotebookNode) -> None:
            channel = client.kc.iopub_channel
            get_msg = channel.get_msg

            async def recording_get_msg(*args: Any, **kwargs: Any) -> dict:
                msg = await get_msg(*args, **kwargs)
                parent = msg["parent_header"].get("msg_id")
                run.messages.append((msg, parent in idle))
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    idle.add(parent)
                return msg

            channel.get_msg = recording_get_msg

        def record_msg_id(cell: nbformat.NotebookNode, execute_reply: dict, **_: Any) -> None:
            run.cell_of_msg_id[execute_reply["parent_header"]["msg_id"]] = cell.id

        client.on_notebook_start = record_iopub
        client.on_cell_executed = record_msg_id
        # ipykernel does not capture file descriptors 1 and 2 when it finds
        # itself under pytest; both kernels get the environment of a user's.
        env = {key: value for key, value in os.environ.items() if key != "PYTEST_CURRENT_TEST"}
        client.execute(env=env)
    return run


# -- normalisation -------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
_TIMING = re.compile(r"^(CPU times|Wall time): .*$", re.MULTILINE)
# A cell's file name: IPython's ``<ipython-input-N-hash>`` (akernel) or the
# name of a temporary file ipykernel gives each cell for its debugger.
_CELL_FILE = re.compile(
    r"<ipython-input-\d+-[0-9a-f]+>|"
    + re.escape(os.path.join(tempfile.gettempdir(), "ipykernel_"))
    + r"\d+/\d+\.py"
)
# Display ids, widget model ids and comm ids: uuid4 hex, random per run.
_RANDOM_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")
# jupyter_client's message ids, ``<session>_<pid>_<n>``: an Output widget's state
# holds the id of the request whose output it captures.
_CLIENT_MSG_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{8}-[0-9a-f]{24}_\d+_\d+")


class Normaliser:
    """Turns a run's outputs and messages into comparable data.

    - ANSI colour codes are dropped;
    - memory addresses (``0x7f...``) become ``0x?``;
    - ``%time`` measurements become ``<elapsed>``;
    - the file name a cell is compiled under (a temporary file named after
      the cell's hash) becomes ``<cell>``;
    - random 32-digit hex ids (display ids, widget model and comm ids) and
      jupyter_client's message ids (in an Output widget's state) become
      ``<id-N>``, N counting distinct ids in order of appearance in the run, so
      which output refers to which id is still compared;
    - image data is checked to decode to an image of its MIME type, then
      replaced by the MIME type: the pixels are the plotting library's
      business;
    - consecutive stream outputs (or messages) of the same name are merged:
      how a kernel chunks a stream is not part of the protocol.

    Execution counts are kept: both kernels count the same executions.
    """

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def text(self, text: str) -> str:
        text = _ANSI.sub("", text)
        text = _ADDRESS.sub("0x?", text)
        text = _TIMING.sub(r"\1: <elapsed>", text)
        text = _CELL_FILE.sub("<cell>", text)
        text = _CLIENT_MSG_ID.sub(self._id, text)
        return _RANDOM_ID.sub(self._id, text)

    def _id(self, match: re.Match) -> str:
        return self.ids.setdefault(match.group(), f"<id-{len(self.ids) + 1}>")

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

    def bundle(self, data: dict[str, Any]) -> dict[str, Any]:
        """A MIME bundle, images replaced by their type."""
        return {
            mime: image_placeholder(mime, content) if mime.startswith("image/") else content
            for mime, content in data.items()
        }

    def output(self, output: dict[str, Any]) -> dict[str, Any]:
        output = dict(output)
        if "data" in output:
            output["data"] = self.bundle(output["data"])
        return self.value(output)

    def outputs(self, outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return merge_streams([self.output(o) for o in outputs], "output_type")

    def messages(self, messages: list[tuple[dict, bool]]) -> list[dict[str, Any]]:
        normalised = []
        for msg, late in messages:
            kind = msg["msg_type"]
            if kind in IGNORED_MESSAGES:
                continue
            entry = {"msg_type": kind, **self.output(msg["content"])}
            if late:
                entry["late"] = True
            normalised.append(entry)
        return merge_streams(normalised, "msg_type")


_IMAGE_SIGNATURES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}


def image_placeholder(mime: str, content: Any) -> str:
    """``<image/png>`` for valid base64 PNG data (etc.), else a description of the fault."""
    if not isinstance(content, str):
        return f"<{mime}: not a string>"
    try:
        raw = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        return f"<{mime}: not base64>"
    if not raw.startswith(_IMAGE_SIGNATURES.get(mime, b"")):
        return f"<{mime}: not a {mime} image>"
    return f"<{mime}>"


def merge_streams(items: list[dict[str, Any]], kind_key: str) -> list[dict[str, Any]]:
    """Consecutive stream items of the same name (and lateness) as one."""
    merged: list[dict[str, Any]] = []
    for item in items:
        previous = merged[-1] if merged else None
        if (
            previous is not None
            and item[kind_key] == previous[kind_key] == "stream"
            and item["name"] == previous["name"]
            and item.get("late") == previous.get("late")
        ):
            merged[-1] = {**previous, "text": previous["text"] + item["text"]}
        else:
            merged.append(item)
    return merged


def summarise(run: Run) -> dict[str, Any]:
    """Per code cell id: execution count, outputs, messages; plus the widget state."""
    normaliser = Normaliser()
    by_cell: dict[str, list[tuple[dict, bool]]] = {}
    for msg, late in run.messages:
        cell = run.cell_of_msg_id.get(msg["parent_header"].get("msg_id"))
        if cell is not None:
            by_cell.setdefault(cell, []).append((msg, late))
    summary: dict[str, Any] = {}
    for cell in run.notebook.cells:
        if cell.cell_type != "code":
            continue
        summary[cell.id] = {
            "execution_count": cell.execution_count,
            "outputs": normaliser.outputs(cell.outputs),
            "messages": normaliser.messages(by_cell.get(cell.id, [])),
        }
    widgets = run.notebook.metadata.get("widgets", {})
    state = widgets.get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    summary["widget state"] = normaliser.value(state)
    return summary


# -- deliberate differences ----------------------------------------------------


_BLANK_CONTEXT_LINE = re.compile(r"^ +\d+ ?\n", re.MULTILINE)


def _tracebacks_hide_blank_lines(summary: dict[str, Any]) -> None:
    """Blank source lines are left out of the context shown in tracebacks.

    IPython shows a frame's context with stack_data, which hides blank lines
    (as in the IPython terminal), when it can read the frame's source. Both
    kernels name each cell after a temporary file (the name JupyterLab's
    debugger computes); akernel writes the file when the cell first runs,
    ipykernel only while debugging: IPython, not finding the file, falls back
    to a plain window of lines around the failing one, blank lines included.
    """
    for cell in summary.values():
        if not isinstance(cell, dict) or "outputs" not in cell:
            continue
        for item in (*cell["outputs"], *cell["messages"]):
            if "traceback" in item:
                item["traceback"] = [_BLANK_CONTEXT_LINE.sub("", t) for t in item["traceback"]]


def _late_thread_output_goes_to_its_cell(summary: dict[str, Any]) -> None:
    """Output a thread writes after its cell finished keeps that cell as parent.

    akernel publishes the output of a thread with the request that was being
    executed when the thread was started (context variables are copied into
    the thread). ipykernel publishes it with whatever request it is handling
    when the text is flushed: here the next cell, in whose output the text
    shows up.

    So akernel's late output reaches the starting cell after that cell has
    gone idle. JupyterLab keeps listening to a cell's request until the cell
    runs again and shows it there; nbclient stops listening once a request is
    idle and drops it. So on akernel the text is in neither cell's
    ``outputs``; it is in the ``messages`` of the starting cell, marked late.
    """
    late_text = "late thread output\n"
    start, join = summary["start-late-thread"], summary["join-late-thread"]
    for view in ("outputs", "messages"):
        first = join[view][0]
        # What ipykernel does: the text opens the joining cell's stdout.
        assert first["name"] == "stdout" and first["text"].startswith(late_text), (
            f"ipykernel no longer shows late thread output in the running cell: {join[view]}"
        )
        first["text"] = first["text"][len(late_text) :]
    start["messages"].append(
        {"msg_type": "stream", "name": "stdout", "text": late_text, "late": True}
    )


def _streams_in_program_order(cell_id: str, *names: str) -> Callable[[dict[str, Any]], None]:
    """Streams ``names`` of ``cell_id`` appear in this order, as the cell writes them.

    akernel keeps the order of writes across stdout and stderr. ipykernel
    buffers each stream on its own, so without flushes their relative order
    in its output depends on timing (on a loaded machine it has put the
    traceback of ``caught-error`` before the line printed ahead of it).
    """

    def adjust(summary: dict[str, Any]) -> None:
        for view in ("outputs", "messages"):
            items = summary[cell_id][view]
            streams = [item for item in items if item.get("name") in names]
            streams.sort(key=lambda item: names.index(item["name"]))
            ordered = iter(streams)
            items[:] = [next(ordered) if item.get("name") in names else item for item in items]

    return adjust


def _sorted_lines(cell_id: str) -> Callable[[dict[str, Any]], None]:
    """Compare the stdout lines of ``cell_id`` regardless of order.

    Neither kernel orders output written to a file descriptor (by a child
    process or C code) relative to ``print`` in the same cell: the former is
    read from a pipe by another thread, and either may be published first.
    What is checked is that every line arrives, in that cell.
    """

    def adjust(summary: dict[str, Any]) -> None:
        for view in ("outputs", "messages"):
            for item in summary[cell_id][view]:
                if item.get("name") == "stdout":
                    item["text"] = "".join(sorted(item["text"].splitlines(keepends=True)))

    adjust.__doc__ = _sorted_lines.__doc__
    return adjust


_PROGRESS_RATE = re.compile(r"\d+(?:\.\d+)?(?=(?:it/s|s/it))")
_PROGRESS_CLOCK = re.compile(r"\b\d\d:\d\d\b")


def _progress_timings(summary: dict[str, Any]) -> None:
    """Progress bars' rates and clocks (``554.36it/s``, ``00:00``) become
    ``<rate>``/``<mm:ss>``: they measure the machine, not the kernel."""

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            if "it/s" not in value and "s/it" not in value:
                return value
            return _PROGRESS_CLOCK.sub("<mm:ss>", _PROGRESS_RATE.sub("<rate>", value))
        if isinstance(value, dict):
            return {key: scrub(item) for key, item in value.items()}
        if isinstance(value, list):
            return [scrub(item) for item in value]
        return value

    for key, value in summary.items():
        summary[key] = scrub(value)


# Per notebook ("*": every notebook): functions applied to both summaries
# (``ORDER_INSENSITIVE``) or to the reference only (``DELIBERATE_DIFFERENCES``)
# before comparing.
ORDER_INSENSITIVE: dict[str, list[Callable[[dict[str, Any]], None]]] = {
    "05_os_output": [_sorted_lines("mixed-levels")],
    "08_tqdm_rich": [_progress_timings],
}
DELIBERATE_DIFFERENCES: dict[str, list[Callable[[dict[str, Any]], None]]] = {
    "*": [_tracebacks_hide_blank_lines],
    "01_output_basics": [_streams_in_program_order("caught-error", "stdout", "stderr")],
    "03_threads": [_late_thread_output_goes_to_its_cell],
}

# What must show up in a cell's normalised outputs (their JSON text), so that
# the kernels cannot agree on nothing: a missing package, a feature not
# exercised. A reference run that misses any is redone.
MUST_SHOW: dict[str, dict[str, list[str]]] = {
    "01_output_basics": {
        "print": ["hello"],
        "interleaved": ['"err 2\\n"'],
        "display-rich": ["text/html", "text/markdown", "application/json", "text/latex"],
        "display-id": ['"updated"', "explicit, updated"],
        "clear-output": ["after clear"],
        "clear-output-wait": ["replacement"],
        "capture-show": ["captured display"],
        "caught-error": ["KeyError: 'missing'"],
        "raised-error": ["bad value: 3"],
        "time": ["Wall time: <elapsed>"],
        "shell": ["from-shell-escape"],
    },
    "02_async": {
        "sleep": ["slept"],
        "async-with": ["close db"],
        "async-for": ["tick 2"],
        "task-group": ["[1, 2, 3]"],
    },
    "03_threads": {
        "joined-thread": ["joined 2"],
        "join-late-thread": ["next cell"],
        "display-from-thread": ["from a thread"],
        "thread-pool": ["from a pool thread"],
    },
    "04_thread_reuse": {
        "pool-create": ["first task"],
        "pool-reuse": ["second task"],
        "pool-display": ["displayed by a pool thread"],
        "to-thread-first": ["first to_thread"],
        "to-thread-again": ["second to_thread"],
    },
    "05_os_output": {
        "subprocess-result": ["CompletedProcess"],
        "mixed-levels": ["shell between", "python after"],
    },
    "06_matplotlib": {
        "default-backend": ['"<image/png>"'],
        "inline": ['"<image/png>"'],
        "line-result": ['"<image/png>"', "Line2D at 0x?"],
    },
    "07_widgets": {
        "slider": ["application/vnd.jupyter.widget-view+json"],
        "display-widget": ["application/vnd.jupyter.widget-view+json"],
    },
    "08_tqdm_rich": {
        "tqdm-auto": ["application/vnd.jupyter.widget-view+json", "steps"],
        "tqdm-trange": ["application/vnd.jupyter.widget-view+json", '"6\\n"'],
        "rich-jupyter": ['"True"'],
        "rich-print": ["text/html", "font-weight: bold"],
        "rich-table": ["text/html", "name"],
    },
    "09_plotly_pandas": {
        "plotly-renderer": ["'plotly_mimetype'"],
        "plotly-show": ["application/vnd.plotly.v1+json"],
        "pandas-frame": ["text/html", "<table"],
        "pandas-describe": ["text/html", "mean"],
        "plotly-express": ["application/vnd.plotly.v1+json"],
    },
}


# The exact stream output of cells that write to file descriptors only.
# ipykernel reads such output from a pipe in a thread and publishes it when it
# gets to it: now and then, on a busy machine, after the cell has finished, as
# output of the next cell. The reference run is redone until it is in place.
EXACT_STREAMS: dict[str, dict[str, dict[str, str]]] = {
    "05_os_output": {
        "os-system": {"stdout": "from-os-system\n"},
        "os-system-stderr": {"stderr": "from-os-system-stderr\n"},
        "subprocess": {"stdout": "from-subprocess\n"},
        "subprocess-result": {},
        "subprocess-stderr": {"stderr": "from-subprocess-stderr\n"},
        "c-printf": {"stdout": "from C\n"},
        "fd-write": {"stdout": "from os.write\n"},
    },
}
REFERENCE_ATTEMPTS = 3


def missing_outputs(name: str, summary: dict[str, Any]) -> list[str]:
    """``MUST_SHOW`` strings missing from their cells, ``EXACT_STREAMS`` not met."""
    problems = [
        f"{cell}: {needle!r} not shown"
        for cell, needles in MUST_SHOW.get(name, {}).items()
        for needle in needles
        if needle not in json.dumps(summary[cell]["outputs"], ensure_ascii=False)
    ]
    for cell, streams in EXACT_STREAMS.get(name, {}).items():
        got = {o["name"]: o["text"] for o in summary[cell]["outputs"] if "name" in o}
        if got != streams:
            problems.append(f"{cell}: streams {got!r}, not {streams!r}")
    return problems


def reference_problems(name: str, run: Run, summary: dict[str, Any]) -> list[str]:
    """How the reference run failed to do what the notebook means, if it did."""
    problems = missing_outputs(name, summary)
    for cell in run.notebook.cells:
        if cell.cell_type == "code":
            raised = any(o["output_type"] == "error" for o in cell.outputs)
            if raised != ("raises-exception" in cell.metadata.get("tags", [])):
                problems.append(f"{cell.id}: {'an' if raised else 'no'} error")
    return problems


@functools.cache
def _reference(name: str) -> str:
    problems: list[str] = []
    for _ in range(REFERENCE_ATTEMPTS):
        run = execute_notebook(name, IPYKERNEL)
        summary = summarise(run)
        problems = reference_problems(name, run, summary)
        if not problems:
            return json.dumps(summary)
    pytest.fail(f"{name} on ipykernel, {REFERENCE_ATTEMPTS} times:\n" + "\n".join(problems))


def reference(name: str) -> dict[str, Any]:
    """The summary of notebook ``name`` run on ipykernel (run once per session)."""
    if find_spec("ipykernel") is None:
        pytest.fail("ipykernel is needed as the reference: install akernel's test extra")
    return json.loads(_reference(name))


def _dump(value: Any) -> list[str]:
    return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False).splitlines()


def describe_differences(expected: dict[str, Any], actual: dict[str, Any], backend: str) -> str:
    """A unified diff per differing cell and view."""
    parts = []
    for cell in [*expected, *(key for key in actual if key not in expected)]:
        want, got = expected.get(cell), actual.get(cell)
        if want == got:
            continue
        views = want.keys() if isinstance(want, dict) and "outputs" in want else [None]
        for view in views:
            a = want[view] if view else want
            b = got.get(view) if view and isinstance(got, dict) else got
            if a == b:
                continue
            label = f"{cell} [{view}]" if view else cell
            diff = difflib.unified_diff(
                _dump(a),
                _dump(b),
                f"expected: {label}",
                f"akernel ({backend}): {label}",
                lineterm="",
            )
            parts.append("\n".join(diff))
    return "\n\n".join(parts)


# -- the tests -------------------------------------------------------------------


@pytest.mark.timeout(6 * CELL_TIMEOUT)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_matches_ipykernel(name: str, backend: str) -> None:
    """akernel's normalised outputs and messages equal ipykernel's, cell by cell."""
    expected = reference(name)
    actual = summarise(execute_notebook(name, kernel_name(backend)))
    for adjust in [*ORDER_INSENSITIVE.get("*", []), *ORDER_INSENSITIVE.get(name, [])]:
        adjust(expected)
        adjust(actual)
    for adjust in [*DELIBERATE_DIFFERENCES.get("*", []), *DELIBERATE_DIFFERENCES.get(name, [])]:
        adjust(expected)
    assert actual == expected, (
        f"{name}: akernel ({backend}) differs from what ipykernel gave (adjusted for the"
        " deliberate differences)\n" + describe_differences(expected, actual, backend)
    )
    # Only fails if a deliberate difference took away what had to be shown.
    missing = missing_outputs(name, actual)
    assert not missing, f"{name} on akernel ({backend}):\n" + "\n".join(missing)


def test_every_notebook_is_covered() -> None:
    """Each notebook has cell ids the expectations refer to, and nothing is stale."""
    assert NOTEBOOK_NAMES, "no notebooks found"
    for name in NOTEBOOK_NAMES:
        notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        nbformat.validate(notebook)
        ids = {cell.id for cell in notebook.cells}
        assert set(MUST_SHOW.get(name, {})) | set(EXACT_STREAMS.get(name, {})) <= ids, name
        assert all(not cell.get("outputs") for cell in notebook.cells), f"{name} has outputs"
    known = set(NOTEBOOK_NAMES)
    named = {*MUST_SHOW, *EXACT_STREAMS, *ORDER_INSENSITIVE, *DELIBERATE_DIFFERENCES}
    assert named <= known | {"*"}
