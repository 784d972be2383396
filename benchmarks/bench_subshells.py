"""Kernel subshells (JEP 91) as the kernel benchmark drives them.

A frontend creates a subshell with ``create_subshell_request`` on the control
channel; the reply carries its ``subshell_id``. A shell request whose *header*
has that ``subshell_id`` runs in the subshell, concurrently with the parent
shell (the requests without one); ``delete_subshell_request`` ends it and
``list_subshell_request`` lists the live ones. :class:`SubshellRequests` sends
those control requests one at a time, timing and checking each.

:func:`measure_during_parent_sleep` times subshell round trips while the parent
shell is busy in ``time.sleep``: the case subshells exist for. The subshell's
requests go through a second client (its own shell DEALER and iopub SUB), so
that the parent's reply and messages stay queued on the first client's
sockets, where they show whether the sleep outlasted the measure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import zmq

# A kernel without subshells may ignore the control requests: give up sooner than
# on other requests (creating one takes milliseconds on these machines).
REQUEST_TIMEOUT = 20.0

# The parent shell's cell while subshell round trips are timed. Each round's
# requests are sent only during the first half of the sleep; the sleep must
# still be running when the round's last reply arrives.
PARENT_SLEEP = 3.0
SLEEP_WINDOW = 0.5  # the fraction of the sleep during which requests are sent
CHUNK = 25  # round trips timed between two checks that the parent still sleeps


def sleep_cell(seconds: float) -> str:
    """The parent shell's cell: a blocking sleep in synchronous code."""
    return f"import time; time.sleep({seconds!r})"


class SubshellError(Exception):
    """The kernel refused a subshell request or answered something unexpected."""


class Reply(Protocol):
    """What the benchmark's message type offers (``bench_kernel.Msg``)."""

    msg_type: str
    content: dict[str, Any]


class ShellClient(Protocol):
    """What the subshell measures need of the benchmark's client (``bench_kernel.Client``)."""

    shell: zmq.Socket
    control: zmq.Socket

    def send(
        self,
        sock: zmq.Socket,
        msg_type: str,
        content: dict[str, Any],
        subshell_id: str | None = None,
    ) -> str: ...

    def wait_reply(self, sock: zmq.Socket, msg_id: str, timeout: float, what: str) -> Reply: ...

    def wait_iopub(self, msg_id: str, msg_type: str, timeout: float) -> Reply: ...

    def start_cell(self, code: str, timeout: float) -> str: ...

    def drain_iopub(self) -> int: ...


class SubshellRequests:
    """Subshell requests over a client's control socket, each after the previous reply."""

    def __init__(self, client: ShellClient, timeout: float) -> None:
        self.client = client
        self.timeout = timeout

    def _request(self, msg_type: str, content: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """Send a request; its reply's content once checked, and seconds to the reply."""
        reply_type = msg_type.replace("_request", "_reply")
        control = self.client.control
        t0 = time.perf_counter()
        msg_id = self.client.send(control, msg_type, content)
        reply = self.client.wait_reply(control, msg_id, self.timeout, reply_type)
        elapsed = time.perf_counter() - t0
        if reply.msg_type != reply_type:
            raise SubshellError(f"{msg_type} answered with {reply.msg_type}")
        if reply.content.get("status") != "ok":
            reason = reply.content.get("evalue") or reply.content.get("ename") or reply.content
            raise SubshellError(f"{msg_type} refused: {_brief(reason)}")
        return reply.content, elapsed

    def create(self) -> tuple[str, float]:
        """Create a subshell: its id, and seconds from request to reply."""
        content, elapsed = self._request("create_subshell_request", {})
        subshell_id = content.get("subshell_id")
        if not isinstance(subshell_id, str) or not subshell_id:
            raise SubshellError(f"create_subshell_reply without a subshell_id: {_brief(content)}")
        return subshell_id, elapsed

    def delete(self, subshell_id: str) -> float:
        """Delete a subshell; seconds from request to reply."""
        _, elapsed = self._request("delete_subshell_request", {"subshell_id": subshell_id})
        return elapsed

    def list(self) -> list[str]:
        """The ids of the live subshells."""
        content, _ = self._request("list_subshell_request", {})
        ids = content.get("subshell_id")
        if not isinstance(ids, list):
            raise SubshellError(f"list_subshell_reply without a list of ids: {_brief(content)}")
        return ids

    def check_listed(self, expected: set[str]) -> None:
        """SubshellError unless the live subshells are exactly ``expected``."""
        listed = self.list()
        if set(listed) != expected or len(listed) != len(expected):
            raise SubshellError(f"list_subshell_reply lists {listed}, expected {sorted(expected)}")


def measure_create_delete(
    requests: SubshellRequests, cycles: int
) -> tuple[list[float], list[float]]:
    """Create a subshell and delete it, ``cycles`` times: seconds for each create and delete.

    The subshells already live when it starts must still be listed, alone,
    after each delete.
    """
    before = set(requests.list())
    creates: list[float] = []
    deletes: list[float] = []
    for _ in range(cycles):
        subshell_id, elapsed = requests.create()
        creates.append(elapsed)
        if subshell_id in before:
            raise SubshellError(f"create_subshell_reply reused the live id {subshell_id!r}")
        requests.check_listed(before | {subshell_id})
        deletes.append(requests.delete(subshell_id))
        requests.check_listed(before)
    return creates, deletes


def measure_during_parent_sleep(
    parent: ShellClient,
    roundtrips: Callable[[int, int], list[float]],
    n: int,
    warmup: int,
    timeout: float,
) -> list[float]:
    """Subshell round trips (seconds) while the parent shell runs ``time.sleep``.

    ``roundtrips(count, warmup)`` times ``count`` round trips on the subshell
    (after ``warmup`` untimed ones) through another client than ``parent``.
    Each round starts a ``PARENT_SLEEP`` s sleep on the parent shell, waits for
    its execute_input, times round trips in chunks while less than
    ``SLEEP_WINDOW`` of the sleep has passed, and checks that the parent's
    reply had not come before the last chunk ended; then it waits for that
    reply and idle. Rounds repeat until ``n`` round trips are timed.
    """
    samples: list[float] = []
    pending_warmup = warmup
    while len(samples) < n:
        parent.drain_iopub()
        msg_id = parent.start_cell(sleep_cell(PARENT_SLEEP), timeout)
        started = time.perf_counter()
        while len(samples) < n and time.perf_counter() - started < PARENT_SLEEP * SLEEP_WINDOW:
            samples += roundtrips(min(CHUNK, n - len(samples)), pending_warmup)
            pending_warmup = 0
            if parent.shell.poll(0):
                raise SubshellError(
                    "the parent shell answered before the subshell round trips ended: its sleep "
                    "ended early, or the subshell's requests waited for it"
                )
        elapsed = time.perf_counter() - started
        if elapsed >= PARENT_SLEEP:
            raise SubshellError(
                f"subshell round trips took {elapsed:.2f} s of a {PARENT_SLEEP:g} s parent sleep: "
                "they may have waited for the parent"
            )
        reply = parent.wait_reply(parent.shell, msg_id, timeout, "execute_reply (parent sleep)")
        parent.wait_iopub(msg_id, "status", timeout)
        if reply.content.get("status") != "ok":
            raise SubshellError(f"the parent's sleep cell failed: {_brief(reply.content)}")
    return samples


def check_unknown_subshell(client: ShellClient, subshell_id: str, timeout: float) -> None:
    """An execute_request for a deleted subshell must get an error reply, not silence."""
    msg_id = client.send(
        client.shell,
        "execute_request",
        {"code": "pass", "silent": False, "store_history": False},
        subshell_id=subshell_id,
    )
    reply = client.wait_reply(client.shell, msg_id, timeout, "execute_reply for a deleted subshell")
    if reply.content.get("status") != "error":
        raise SubshellError(
            f"execute_request for a deleted subshell answered {_brief(reply.content)}"
        )


def _brief(value: Any, limit: int = 160) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."
