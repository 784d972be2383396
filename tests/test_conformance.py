"""Protocol conformance: the jupyter_kernel_test suite, once per backend.

When the real kernelspecs are installed for this interpreter (``nox -s tests``
runs ``akernel install --sys-prefix`` for both backends), those are tested,
so the conformance run covers what users install. Otherwise the private test
kernelspecs written by ``conftest.py`` are used.

The base classes are reached through the module (``jkt.KernelTests``), never
imported by name, so pytest does not collect them against ``python3``.
"""

from __future__ import annotations

import os
import sys

import jupyter_kernel_test as jkt
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from .conftest import kernel_name

INSTALLED_NAMES = {"asyncio": "akernel", "trio": "akernel-trio"}


def _runs_this_interpreter(name: str) -> bool:
    """Whether kernelspec ``name`` exists and starts Python from this environment."""
    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        return False
    python = spec.argv[0] if spec.argv else ""
    # Compare directories without resolving symlinks: every virtualenv's
    # python links to the same base interpreter.
    return os.path.isabs(python) and os.path.dirname(python) == os.path.dirname(sys.executable)


def spec_for(backend: str) -> str:
    """The installed kernelspec for ``backend`` if usable here, else the test one."""
    installed = INSTALLED_NAMES[backend]
    return installed if _runs_this_interpreter(installed) else kernel_name(backend)


class _AkernelSamples:
    """Samples for every test of ``jupyter_kernel_test.KernelTests``."""

    language_name = "python"
    file_extension = ".py"

    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('oops', file=sys.stderr)"

    completion_samples = [
        {"text": "zi", "matches": {"zip"}},
        {"text": "import sys; sys.getrecursionli", "matches": {"getrecursionlimit"}},
        # No "matches" key: only the reply's shape is checked.
        {"text": "pri"},
    ]

    complete_code_samples = [
        "1",
        "print('hello, world')",
        "def f(x):\n    return x * 2\n\n\n",
        "x = [1,\n     2]",
        "%time 1",
    ]
    incomplete_code_samples = [
        "print('''hello",
        "def f(x):\n    x * 2",
        "for i in range(3):",
        "x = [1,",
    ]
    invalid_code_samples = [
        "import = 7",
        "1 +* 2",
    ]

    code_page_something = "print?"

    code_generate_error = "raise ValueError('boom')"

    code_execute_result = [
        {"code": "6 * 7", "result": "42"},
        {"code": "sum(range(4, 9))", "result": "30"},
        {"code": "'akernel'", "result": "'akernel'"},
        {"code": "[1, 2, 3][::-1]", "result": "[3, 2, 1]"},
        {
            "code": "from IPython.display import HTML; HTML('<b>bold</b>')",
            "mime": "text/html",
            "result": "<b>bold</b>",
        },
    ]

    code_display_data = [
        {
            "code": "from IPython.display import HTML, display; display(HTML('<b>bold</b>'))",
            "mime": "text/html",
        },
        {
            "code": "from IPython.display import Markdown, display; display(Markdown('*md*'))",
            "mime": "text/markdown",
        },
        {
            "code": "from IPython.display import Latex, display; display(Latex(r'$x^2$'))",
            "mime": "text/latex",
        },
    ]

    # A glob matching exactly one distinct entry of code_execute_result, and
    # nothing other test modules run (they share the history database).
    code_history_pattern = "sum(range(4, ?))"
    supported_history_operations = ("tail", "range", "search")

    code_inspect_sample = "zip"

    code_clear_output = "from IPython.display import clear_output; clear_output()"


class AsyncioKernelTests(_AkernelSamples, jkt.KernelTests):
    kernel_name = spec_for("asyncio")


class TrioKernelTests(_AkernelSamples, jkt.KernelTests):
    kernel_name = spec_for("trio")


class AsyncioIopubWelcomeTests(jkt.IopubWelcomeTests):
    kernel_name = spec_for("asyncio")
    support_iopub_welcome = True


class TrioIopubWelcomeTests(jkt.IopubWelcomeTests):
    kernel_name = spec_for("trio")
    support_iopub_welcome = True
