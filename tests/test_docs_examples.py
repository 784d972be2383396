"""Every python code block of docs/async.md, and every script in examples/, run for real.

The fence's info string says what a block is:

* ``python``: a complete program. It runs as a script and must exit 0. If it
  announces a kernel (``jupyter console --existing PATH``, on stdout or stderr), a
  client connects with that file, runs a cell, and shuts the kernel down first.
* ``python service``: a program that serves until the process gets SIGTERM: as
  above, and once its kernel is shut down and gone, the program must still run
  (stopping the kernel stops the kernel only); then SIGTERM ends it.
* ``python cell``: code for a notebook or console cell, run in a kernel on each
  backend. A cell that shows an ``IntSlider`` gets a user who moves it (the frontend's
  ``comm_msg`` update), for cells that wait for one.

Programs that run with ``anyio.run(main)`` run once as written (asyncio) and once
on trio. Blocks in other languages are not run.

The scripts in examples/: the three embedding hosts run in tests/test_embedding.py;
the two demo runners run here (the notebook on the test kernelspecs of both
backends, the cluster with one engine per backend).
"""

from __future__ import annotations

import ast
import queue
import re
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from jupyter_client.blocking import BlockingKernelClient

from .conftest import kernel_name
from .embed_hosts import (
    EXISTING,
    FLAVORS,
    START_TIMEOUT,
    STOP_TIMEOUT,
    LineReader,
    connect,
    spawn,
    stop_process,
    wait_until,
)
from .utils import TIMEOUT, get_reply, user_value

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "async.md"
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<info>[^`\n]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
PYTHON_KINDS = {"": "program", "service": "service", "cell": "cell"}
DEMO_TIMEOUT = 300  # the cluster demo starts a controller and engines, twice


# A program's whole stdout, in a text block right after it and a line "It prints...:".
PRINTS = re.compile(r"\s*\n(?:It prints[^\n]*:)\s*\n\s*```text\n(?P<text>.*?)^```", re.M | re.S)


@dataclass(frozen=True)
class Block:
    line: int
    kind: str  # "program", "service" or "cell"
    code: str
    prints: str | None = None  # the program's whole stdout ("..." for anything)

    def matches_output(self, stdout: str) -> bool:
        assert self.prints is not None
        pattern = ".*?".join(re.escape(part) for part in self.prints.split("..."))
        return re.fullmatch(pattern, stdout.rstrip("\n"), re.S) is not None


def python_blocks(page: Path = PAGE) -> list[Block]:
    """The page's python blocks, dedented; an unknown python kind fails loudly."""
    text = page.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        language, _, kind = match["info"].strip().partition(" ")
        if language != "python":
            continue
        line = text.count("\n", 0, match.start()) + 1
        assert kind.strip() in PYTHON_KINDS, f"{page.name}:{line}: unknown block kind {kind!r}"
        code = textwrap.dedent(match["body"])
        prints = PRINTS.match(text, match.end())
        output = prints["text"].rstrip("\n") if prints else None
        blocks.append(Block(line, PYTHON_KINDS[kind.strip()], code, output))
    return blocks


BLOCKS = python_blocks()
PROGRAM_RUNS = [
    pytest.param(block, variant, id=f"line{block.line}-{variant}")
    for block in BLOCKS
    if block.kind != "cell"
    for variant in (["as-written", "trio"] if "anyio.run(main)" in block.code else ["as-written"])
]
CELLS = [pytest.param(block, id=f"line{block.line}") for block in BLOCKS if block.kind == "cell"]


def test_the_page_has_its_examples() -> None:
    """The extraction finds what the page holds (so the tests below cannot pass empty)."""
    fences = re.findall(r"^[ \t]*```python", PAGE.read_text(), re.MULTILINE)
    assert len(fences) == len(BLOCKS)
    kinds = [block.kind for block in BLOCKS]
    assert kinds.count("cell") >= 2 and kinds.count("service") >= 2
    assert kinds.count("program") >= 4
    assert sum(block.prints is not None for block in BLOCKS) >= 4
    for block in BLOCKS:
        if block.kind != "cell":
            # A whole program, which does something: not definitions only.
            tree = ast.parse(block.code, f"async.md:{block.line}")
            calls = [
                s for s in tree.body if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)
            ]
            assert calls, f"async.md:{block.line}: a fragment (nothing is called)"


# --- Programs ------------------------------------------------------------------------


def run_program(code: str, workdir: Path) -> tuple[subprocess.Popen, LineReader, LineReader]:
    script = workdir / "example.py"
    script.write_text(code)
    return spawn([str(script)], workdir)


def announced(stdout: LineReader, stderr: LineReader) -> Path | None:
    for line in stdout.lines + stderr.lines:
        if found := EXISTING.search(line):
            return Path(found["path"])
    return None


@pytest.mark.parametrize(("block", "variant"), PROGRAM_RUNS)
def test_program_runs_as_written(block: Block, variant: str, tmp_path: Path) -> None:
    code = block.code
    if variant == "trio":
        code = code.replace("anyio.run(main)", 'anyio.run(main, backend="trio")')
    process, stdout, stderr = run_program(code, tmp_path)
    try:
        wait_until(
            lambda: announced(stdout, stderr) or process.poll() is not None,
            START_TIMEOUT,
            what="the program to announce a kernel or end",
        )
        path = announced(stdout, stderr)
        if path is not None:
            path = tmp_path / path  # relative paths are the program's working directory's
            use_and_shut_down(path)
            if block.kind == "service":
                wait_until(lambda: not path.exists(), what="the kernel to stop")
                assert process.poll() is None, "the host ended with its kernel"
                process.send_signal(signal.SIGTERM)
        else:
            assert block.kind == "program", "a service that announced no kernel"
        returncode = process.wait(STOP_TIMEOUT)
    finally:
        stop_process(process)
        stdout.wait_closed()
        stderr.wait_closed()
    expected = -signal.SIGTERM if block.kind == "service" else 0
    assert returncode == expected, f"stdout:\n{stdout.text}\nstderr:\n{stderr.text}"
    assert "Traceback" not in stderr.text, stderr.text
    if block.prints is not None:
        assert block.matches_output(stdout.text), (
            f"printed:\n{stdout.text}\n\npage:\n{block.prints}"
        )


def use_and_shut_down(connection_file: Path) -> None:
    """A client runs a cell on the announced kernel, then shuts it down."""
    kc = connect(connection_file)
    try:
        assert user_value(kc, "6 * 7") == "42"
        reply = get_reply(kc, kc.shutdown(), channel="control")
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()


# --- Cells ---------------------------------------------------------------------------


@pytest.mark.parametrize("block", CELLS)
def test_cell_runs_as_written(block: Block, fresh_kernel: tuple) -> None:
    _, kc = fresh_kernel
    msg_id = kc.execute(block.code)
    errors = run_as_a_user(kc, msg_id)
    reply = get_reply(kc, msg_id)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert errors == []


def run_as_a_user(kc: BlockingKernelClient, msg_id: str) -> list[dict]:
    """Read the cell's IOPub until it is idle, moving every slider it shows and
    answering every prompt (as a user would, through the frontend); the error
    outputs it published."""
    errors = []
    deadline = time.monotonic() + TIMEOUT
    while True:
        # A prompt (akernel.ainput): the user types an answer.
        if kc.stdin_channel.msg_ready():
            prompt = kc.get_stdin_msg(timeout=TIMEOUT)
            if prompt["msg_type"] == "input_request":
                kc.input("ada")
        try:
            msg = kc.get_iopub_msg(timeout=0.05)
        except queue.Empty:
            if time.monotonic() > deadline:
                raise AssertionError("the cell did not finish") from None
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        content = msg["content"]
        if msg["msg_type"] == "error":
            errors.append(content)
        elif msg["msg_type"] == "comm_open" and is_slider(content):
            update = {"method": "update", "state": {"value": 7}, "buffer_paths": []}
            kc.shell_channel.send(
                kc.session.msg("comm_msg", {"comm_id": content["comm_id"], "data": update})
            )
        elif msg["msg_type"] == "status" and content["execution_state"] == "idle":
            return errors


def is_slider(content: dict) -> bool:
    state = content.get("data", {}).get("state", {})
    return content.get("target_name") == "jupyter.widget" and (
        state.get("_model_name") == "IntSliderModel"
    )


# --- The scripts in examples/ ----------------------------------------------------------


def test_every_example_script_is_run() -> None:
    hosts = {flavor.script for flavor in FLAVORS}  # tests/test_embedding.py
    here = {"run_demo.py", "run_cluster_demo.py"}
    scripts = {path.name for path in (ROOT / "examples").glob("*.py")}
    assert scripts == hosts | here
    assert (ROOT / "examples" / "demo.ipynb").exists()  # run_demo.py's notebook


def run_script(args: list[str], workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def test_demo_notebook_runs_on_both_backends(tmp_path: Path) -> None:
    kernels = [kernel_name("asyncio"), kernel_name("trio")]
    args = [str(ROOT / "examples" / "run_demo.py")]
    for name in kernels:
        args += ["--kernel", name]
    done = run_script(args, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = ", ".join(f"{name}: ok" for name in kernels)
    assert f"=== summary: {summary}" in done.stdout


@pytest.mark.parametrize("loop_backend", ["asyncio", "trio"])
def test_cluster_demo_runs(loop_backend: str, tmp_path: Path) -> None:
    script = str(ROOT / "examples" / "run_cluster_demo.py")
    done = run_script([script, "--engines", "1", "--backend", loop_backend], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"cluster of 1 akernel engines on {loop_backend}" in done.stdout
    assert "cluster stopped" in done.stdout
