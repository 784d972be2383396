"""``jupyter console`` driving akernel in a pseudo-terminal, as a person at a terminal would.

The console runs its full prompt_toolkit interface in a pty (pexpect); what it
draws is read back with terminal escape sequences removed. Each test checks
that the console exits and that the kernel it started does not outlive it.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator

import pexpect
import psutil
import pytest

from .conftest import kernel_name
from .utils import is_gone, wait_gone

TIMEOUT = 60
EXIT_TIMEOUT = 30

# CSI sequences (colours, cursor moves), OSC strings (titles), charset selection and
# the remaining two-character escapes prompt_toolkit writes.
_ESCAPES = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z]|[@-Z\\-_=>])"
)


class Terminal:
    """A pexpect child whose output is matched as plain text, escapes removed.

    ``expect`` only looks at text after the previous match, so the same
    pattern can be awaited again for the next occurrence.
    """

    def __init__(self, child: pexpect.spawn) -> None:
        self.child = child
        self.raw = ""
        self.pos = 0

    @property
    def text(self) -> str:
        return _ESCAPES.sub("", self.raw).replace("\r", "")

    def _read(self, timeout: float) -> None:
        try:
            self.raw += self.child.read_nonblocking(65536, timeout=timeout)
        except pexpect.TIMEOUT:
            pass

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match:
        """Wait for ``pattern`` (a regex) in the text after the last match."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            text = self.text
            match = regex.search(text, self.pos)
            if match:
                self.pos = match.end()
                return match
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{pattern!r} not seen in {timeout} s; after the last match:\n"
                    f"{text[self.pos :][-3000:]}"
                )
            try:
                self._read(min(remaining, 0.5))
            except pexpect.EOF:
                raise AssertionError(
                    f"console ended before {pattern!r}; after the last match:\n"
                    f"{self.text[self.pos :][-3000:]}"
                ) from None

    def expect_prompt(self, number: int) -> None:
        self.expect(rf"In \[{number}\]: ")

    def type_line(self, line: str) -> None:
        """Type ``line`` and press Enter."""
        self.child.send(line + "\r")

    def wait_end(self, timeout: float = EXIT_TIMEOUT) -> int | None:
        """Read until the console closes the terminal; its exit status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self._read(0.5)
            except pexpect.EOF:
                self.child.wait()
                return self.child.exitstatus
        raise AssertionError(
            f"console still running after {timeout} s:\n{self.text[self.pos :][-3000:]}"
        )


# Seconds for the console's IOPub subscription to reach the kernel (see the fixture).
CONSOLE_SETTLE = 2.0


def kernel_of(console_pid: int, timeout: float = TIMEOUT) -> psutil.Process:
    """The akernel process the console started (its child)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(console_pid).children(recursive=True):
            try:
                if "akernel" in child.cmdline():
                    return child
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.1)
    raise AssertionError("the console started no akernel process")


class ConsoleSession:
    """A running ``jupyter console`` and, once found, the kernel it started."""

    def __init__(self, terminal: Terminal, kernel: psutil.Process) -> None:
        self.terminal = terminal
        self.kernel = kernel


@pytest.fixture
def console(backend: str, request: pytest.FixtureRequest) -> Iterator[ConsoleSession]:
    """``jupyter console --kernel`` with the test kernelspec of ``backend``.

    The interrupt mode of the kernelspec is the fixture's parameter ("signal" if
    not parametrized).
    """
    interrupt_mode = getattr(request, "param", "signal")
    env = {
        **os.environ,
        "TERM": "xterm-256color",
        # No cursor position requests: nobody answers them in a pty.
        "PROMPT_TOOLKIT_NO_CPR": "1",
    }
    child = pexpect.spawn(
        sys.executable,
        ["-m", "jupyter_console", "--kernel", kernel_name(backend, interrupt_mode)],
        env=env,
        encoding="utf-8",
        codec_errors="replace",
        dimensions=(50, 200),
        timeout=TIMEOUT,
    )
    kernel: psutil.Process | None = None
    try:
        terminal = Terminal(child)
        terminal.expect_prompt(1)
        # jupyter_console shows its prompt without checking that its IOPub
        # subscription has reached the kernel (jupyter_client's wait_for_ready
        # does, the console does not): a cell typed before that loses its
        # status messages, and the console waits for their "idle" forever. Give
        # the subscription time to land; nothing is timed or asserted here.
        time.sleep(CONSOLE_SETTLE)
        kernel = kernel_of(child.pid)
        yield ConsoleSession(terminal, kernel)
    finally:
        if child.isalive():
            child.terminate(force=True)
        child.close(force=True)
        if kernel is not None and not is_gone(kernel):
            kernel.kill()


@pytest.mark.parametrize("console", ["signal", "message"], indirect=True)
def test_console_session(console: ConsoleSession) -> None:
    """Run cells, answer input(), interrupt a sleep, then ``exit`` ends console and kernel."""
    term = console.terminal
    assert console.kernel.is_running()

    term.type_line("print(6*7)")
    term.expect(r"^42$")
    term.expect_prompt(2)

    term.type_line('x = input("name? ")')
    term.expect(r"name\? ")
    term.type_line("Grace Hopper 1906")
    term.expect_prompt(3)
    term.type_line("print(x)")
    term.expect(r"^Grace Hopper 1906$")
    term.expect_prompt(4)

    term.type_line("import time; print('sleep' + 'ing', flush=True); time.sleep(30)")
    term.expect(r"^sleeping$")
    term.child.sendintr()
    # The error shows up, and the prompt returns long before the sleep would end.
    term.expect(r"KeyboardInterrupt", timeout=20)
    term.expect_prompt(5)

    term.type_line("print('still', 6*7)")
    term.expect(r"^still 42$")
    term.expect_prompt(6)

    term.type_line("exit")
    assert term.wait_end() == 0
    assert wait_gone(console.kernel), "the kernel outlived the console"


def test_console_ctrl_d_confirm(console: ConsoleSession) -> None:
    """Ctrl-D asks for confirmation; 'y' ends the console, and its kernel with it."""
    term = console.terminal
    term.type_line("print('ready', 1 + 1)")
    term.expect(r"^ready 2$")
    term.expect_prompt(2)
    term.child.sendcontrol("d")
    term.expect(r"Do you really want to exit")
    term.type_line("y")
    assert term.wait_end() == 0
    assert wait_gone(console.kernel), "the kernel outlived the console"
