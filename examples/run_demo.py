"""Execute examples/demo.ipynb with akernel through nbclient and print the result.

The notebook is run once per kernelspec (by default the installed ``akernel``
and ``akernel-trio``), the way Jupyter frontends run it. Each cell's source
and outputs are printed: stream text, ``text/plain`` results, and a note for
richer MIME types (HTML, PNG, ...).

Cells tagged ``raises-exception`` are expected to fail; the notebook runs with
``allow_errors`` so their tracebacks are shown. The script exits non-zero if a
kernelspec is missing, the kernel dies or times out, an untagged cell fails,
or a tagged cell does not.

Usage::

    python examples/run_demo.py [--kernel NAME ...] [--notebook PATH] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
DEFAULT_NOTEBOOK = HERE / "demo.ipynb"
DEFAULT_KERNELS = ["akernel", "akernel-trio"]
EXPECTED_ERROR_TAG = "raises-exception"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TEXT_MIMES = ("text/plain",)


def indent(text: str, prefix: str = "    ") -> str:
    return textwrap.indent(text.rstrip("\n"), prefix, lambda line: True)


def describe_output(output: dict) -> str:
    """A readable rendering of one cell output."""
    kind = output["output_type"]
    if kind == "stream":
        return f"[{output['name']}]\n{indent(output['text'])}"
    if kind == "error":
        traceback = ANSI.sub("", "\n".join(output.get("traceback", [])))
        return f"[error] {output['ename']}: {output['evalue']}\n{indent(traceback)}"
    data = output.get("data", {})
    label = "Out" if kind == "execute_result" else "display"
    lines = []
    if "text/plain" in data:
        lines.append(f"[{label}] text/plain\n{indent(data['text/plain'])}")
    rich = [mime for mime in data if mime not in TEXT_MIMES]
    for mime in rich:
        value = data[mime]
        size = len(value) if isinstance(value, str) else len(str(value))
        lines.append(f"[{label}] {mime} ({size} chars)")
    return "\n".join(lines) or f"[{label}] (empty)"


def report(nb: nbformat.NotebookNode) -> list[str]:
    """Print every cell; return the problems found (unexpected or missing errors)."""
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            lines = cell.source.strip().splitlines() or [""]
            more = " ..." if len(lines) > 1 else ""
            print(f"--- cell {index} ({cell.cell_type}): {lines[0]}{more}")
            continue
        count = cell.get("execution_count")
        print(f"--- cell {index} In [{count if count is not None else ' '}]:")
        print(indent(cell.source, "  > "))
        for output in cell.outputs:
            print(indent(describe_output(output), "  "))
        expects_error = EXPECTED_ERROR_TAG in cell.metadata.get("tags", [])
        errors = [o for o in cell.outputs if o["output_type"] == "error"]
        if count is None:
            problems.append(f"cell {index} was not executed")
        elif errors and not expects_error:
            problems.append(f"cell {index} failed: {errors[0]['ename']}: {errors[0]['evalue']}")
        elif expects_error and not errors:
            problems.append(f"cell {index} is tagged {EXPECTED_ERROR_TAG} but raised nothing")
    return problems


def run(notebook: Path, kernel_name: str, timeout: int) -> bool:
    """Execute ``notebook`` with ``kernel_name`` and print it; True if it went as expected."""
    spec = KernelSpecManager().get_kernel_spec(kernel_name)
    print(f"=== {notebook.name} on kernelspec {kernel_name!r} ({spec.resource_dir})")
    print(f"=== kernel command: {' '.join(spec.argv)}")
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=kernel_name,
        timeout=timeout,
        startup_timeout=60,
        allow_errors=True,
        resources={"metadata": {"path": str(notebook.parent)}},
    )
    started = time.perf_counter()
    try:
        client.execute()
    except Exception as e:  # dead kernel, timeout, startup failure ...
        print(f"!!! execution failed: {type(e).__name__}: {ANSI.sub('', str(e))}")
        report(nb)
        return False
    elapsed = time.perf_counter() - started
    problems = report(nb)
    for problem in problems:
        print(f"!!! {problem}")
    status = "FAILED" if problems else "ok"
    print(f"=== {kernel_name}: {status} ({elapsed:.1f}s including kernel start)\n")
    return not problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--kernel",
        action="append",
        dest="kernels",
        metavar="NAME",
        help=f"kernelspec to run (repeatable; default: {' and '.join(DEFAULT_KERNELS)})",
    )
    parser.add_argument("--notebook", type=Path, default=DEFAULT_NOTEBOOK)
    parser.add_argument("--timeout", type=int, default=60, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    kernels = args.kernels or DEFAULT_KERNELS

    available = KernelSpecManager().find_kernel_specs()
    missing = [name for name in kernels if name not in available]
    if missing:
        print(
            f"kernelspec(s) not installed: {', '.join(missing)}\n"
            "install them with: akernel install --user && akernel install --user --backend trio",
            file=sys.stderr,
        )
        return 2

    results = {name: run(args.notebook, name, args.timeout) for name in kernels}
    summary = ", ".join(f"{name}: {'ok' if ok else 'FAILED'}" for name, ok in results.items())
    print(f"=== summary: {summary}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
