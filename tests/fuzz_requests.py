"""Seeded fuzzed requests for real kernels, and the cases built from them.

What a request may hold: the code a kernel may run, each request type's fields
with generators of valid values, the message types of each channel.

Real kernels only ever run code from :data:`CODE` and :data:`EXPRESSIONS`:
everything else in a request is fuzzed, never the code.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.session import DELIM

from akernel.wire import Session, WireError, new_id

from .fuzzing import BIG_INTEGERS, describe, encode, header, number, text, value

# The only code a fuzzed kernel runs. Non-strings are run as their str().
CODE: list[Any] = [
    "1+1",
    "print('x')",
    "",
    "'ok\\udcff'",
    "'ok\udcff'",  # the code itself carries a lone surrogate
    "raise ValueError('x')",
    "raise ValueError('\\udcff')",
    "input()",
    "import sys; sys.stdout.write('\\udcff')",
    "import sys; print('e\\ud800', file=sys.stderr)",
    "from IPython.display import display; display({'text/plain': '\\udcff'}, raw=True)",
    "x = 1",
    "x",
    "%time 1",
    "1/0",
    42,
    None,
    ["1+1"],
]
# The only user_expressions a fuzzed kernel evaluates.
EXPRESSIONS = ["1+1", "x", "'\\udcff'", "1/0", "", "None", "undefined_name", "'ok\udcff'"]
CODE_TEXT = ["", "pri", "import o", "x.", "def f(:\n", "a = [1,", "%ti", "print(", "'\udcff'."]
FALSY = [False, 0, None, "", [], {}]


def boolean(rng: random.Random) -> bool:
    return rng.random() < 0.5


def small_int(rng: random.Random) -> int:
    return rng.randint(-2, 12)


def code_text(rng: random.Random) -> str:
    return rng.choice(CODE_TEXT) if rng.random() < 0.7 else text(rng)


def some_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def user_expressions(rng: random.Random) -> dict[str, str]:
    return {text(rng): rng.choice(EXPRESSIONS) for _ in range(rng.randint(0, 3))}


def data(rng: random.Random) -> dict[str, Any]:
    return {text(rng): value(rng) for _ in range(rng.randint(0, 3))}


# Each request's fields, with a generator of valid values.
FIELDS: dict[str, dict[str, Callable[[random.Random], Any]]] = {
    "execute_request": {
        "code": lambda rng: rng.choice(CODE),
        "silent": boolean,
        "store_history": boolean,
        "user_expressions": user_expressions,
        "allow_stdin": boolean,
        "stop_on_error": boolean,
    },
    "complete_request": {"code": code_text, "cursor_pos": small_int},
    "inspect_request": {
        "code": code_text,
        "cursor_pos": small_int,
        "detail_level": lambda rng: rng.choice([0, 1]),
    },
    "is_complete_request": {"code": code_text},
    "history_request": {
        "output": boolean,
        "raw": boolean,
        "hist_access_type": lambda rng: rng.choice(["range", "tail", "search", "other"]),
        "session": small_int,
        "start": small_int,
        "stop": small_int,
        "n": small_int,
        "pattern": lambda rng: rng.choice(["*", "x*", "?", "[", text(rng)]),
        "unique": boolean,
    },
    "kernel_info_request": {},
    "comm_info_request": {"target_name": lambda rng: rng.choice(["jupyter.widget", text(rng)])},
    "connect_request": {},
    "comm_open": {
        "comm_id": some_id,
        "target_name": lambda rng: rng.choice(["jupyter.widget", text(rng)]),
        "data": data,
        "target_module": text,
    },
    "comm_msg": {"comm_id": some_id, "data": data},
    "comm_close": {"comm_id": some_id, "data": data},
    "apply_request": {},
    "interrupt_request": {},
    "usage_request": {},
    "abort_request": {"msg_ids": lambda rng: [some_id(rng) for _ in range(rng.randint(0, 2))]},
    "clear_request": {},
    # DAP requests of JupyterLab's debugger; never initialize (the debugger would
    # start tracing the fuzzed kernel), which tests/test_debugger.py drives.
    "debug_request": {
        "type": lambda rng: rng.choice(["request", "request", "event", text(rng)]),
        "seq": small_int,
        "command": lambda rng: rng.choice(
            [
                "debugInfo",
                "inspectVariables",
                "richInspectVariables",
                "variables",
                "modules",
                "source",
                "threads",
                "stackTrace",
                "launch",
                "terminate",
                text(rng),
            ]
        ),
        "arguments": data,
    },
    "delete_subshell_request": {"subshell_id": lambda rng: rng.choice([some_id(rng), text(rng)])},
    "list_subshell_request": {},
}
SHELL_TYPES = [
    "execute_request",
    "complete_request",
    "inspect_request",
    "is_complete_request",
    "history_request",
    "kernel_info_request",
    "comm_info_request",
    "connect_request",
    "comm_open",
    "comm_msg",
    "comm_close",
    "apply_request",
]
CONTROL_TYPES = [
    "kernel_info_request",
    "interrupt_request",
    "usage_request",
    "abort_request",
    "clear_request",
    "debug_request",
    "delete_subshell_request",
    "list_subshell_request",
]
HANDLED = {"shell": set(SHELL_TYPES), "control": set(CONTROL_TYPES)}
# Types no handler serves on the channel (shutdown_request is never sent;
# create_subshell_request, on control, starts a thread: tests/test_subshells.py).
UNKNOWN_TYPES = ["foo_request", "create_subshell_request", "signal_request"]
NEVER_FUZZED = {"shutdown_request", "create_subshell_request"}
# (channel, message type or "unknown" or "mixed", share of the cases)
GROUPS = [
    *(("shell", t, 2.0 if t == "execute_request" else 1.0) for t in SHELL_TYPES),
    ("shell", "unknown", 1.0),
    ("shell", "mixed", 2.0),
    # clear_request resets the namespace (with a garbage collection): slow.
    *(("control", t, 0.3 if t == "clear_request" else 1.0) for t in CONTROL_TYPES),
    ("control", "unknown", 1.0),
]
REAL_KERNEL_CASES = 2400  # per backend, spread over GROUPS


def wrong(rng: random.Random) -> Any:
    """A value for a field that expects something else: out-of-range numbers
    most often, then strings, then anything."""
    kind = rng.random()
    if kind < 0.4:
        return rng.choice(BIG_INTEGERS) if rng.random() < 0.7 else number(rng)
    return text(rng) if kind < 0.6 else value(rng)


def fuzzed_content(rng: random.Random, msg_type: str) -> dict[str, Any]:
    """Valid fields, missing ones, ones of any type or size, extra ones."""
    if rng.random() < 0.05:
        content = data(rng)
    else:
        content = {}
        for name, valid in FIELDS.get(msg_type, {}).items():
            roll = rng.random()
            if roll < 0.15:
                continue
            content[name] = valid(rng) if roll < 0.65 else wrong(rng)
        if rng.random() < 0.2:
            content.update(data(rng))
    if msg_type == "execute_request":
        # Fuzz anything but the code: that is only ever one of CODE.
        content["code"] = rng.choice(CODE)
        expressions = content.get("user_expressions")
        if isinstance(expressions, dict):
            content["user_expressions"] = {
                k: rng.choice(EXPRESSIONS) if isinstance(v, str) else v
                for k, v in expressions.items()
            }
        if "input" in str(content["code"]):  # never wait for a frontend
            content["allow_stdin"] = rng.choice(FALSY)
    return content


@dataclass
class Case:
    """One request sent to the kernel."""

    number: int
    channel: str
    msg_type: str
    msg_id: str
    parts: list[Any]  # header, parent_header, metadata, content
    frames: list[bytes]
    accepted: bool  # whether the wire layer lets it through
    decoder_error: str | None = None  # what akernel's decoder raised instead of WireError

    @property
    def wants_reply(self) -> bool:
        return (
            self.accepted
            and self.msg_type in HANDLED[self.channel]
            and self.msg_type.endswith("_request")
        )

    def describe(self, seed: int) -> str:
        """The request, as generated (each string "\\x00deep:N:L" went out as L
        nested N levels deep)."""
        header, parent, metadata, content = self.parts
        return (
            f"seed={seed} case={self.number} {self.channel} {self.msg_type} msg_id={self.msg_id}\n"
            f"    content={describe(content)}\n"
            f"    metadata={describe(metadata)} parent_header={describe(parent)}\n"
            f"    header={describe(header)} buffers={describe(self.frames[6:], 200)}"
        )


def make_case(
    rng: random.Random, number: int, channel: str, group: str, sign: Callable, oracle: Session
) -> Case:
    if group == "unknown":
        other_channel = CONTROL_TYPES if channel == "shell" else SHELL_TYPES
        msg_type = rng.choice([*UNKNOWN_TYPES, *other_channel, text(rng)])
        if msg_type in HANDLED[channel] or (channel == "control" and msg_type in NEVER_FUZZED):
            msg_type = "foo_request"
        elif msg_type == "shutdown_request":
            msg_type = "foo_request"
    elif group == "mixed":
        msg_type = rng.choice([*SHELL_TYPES, "execute_request", "foo_request"])
    else:
        msg_type = group
    head = header(rng, msg_type)
    head.update(msg_id=some_id(rng), msg_type=msg_type, session="fuzz-session")
    parent = data(rng) if rng.random() < 0.1 else {}
    metadata = data(rng) if rng.random() < 0.2 else {}
    if msg_type == "execute_request" and rng.random() < 0.2:
        metadata["cellId"] = value(rng)
    parts = [head, parent, metadata, fuzzed_content(rng, msg_type)]
    json_frames = [encode(rng, part) for part in parts]
    buffers: list[bytes] = []
    if msg_type == "apply_request" or rng.random() < 0.05:
        # Never a pickle: an invalid first opcode, or nothing.
        buffers = [b"\xff" + rng.randbytes(rng.randint(0, 20)) for _ in range(rng.randint(0, 3))]
        buffers += [b""] if rng.random() < 0.2 else []
    frames = [DELIM, sign(json_frames), *json_frames, *buffers]
    decoder_error = None
    try:
        oracle.deserialize(frames)
        accepted = True
    except WireError:
        accepted = False
    except Exception as e:  # what test_decoder_survives_mutated_and_odd_frames looks for
        accepted, decoder_error = False, f"{type(e).__name__}: {str(e)[:200]}"
    return Case(number, channel, msg_type, head["msg_id"], parts, frames, accepted, decoder_error)


def plain_case(kc: BlockingKernelClient, channel: str, msg_type: str, content: dict) -> Case:
    """A well-formed request (case number -1)."""
    head = {
        "msg_id": new_id(),
        "msg_type": msg_type,
        "username": "fuzz",
        "session": "fuzz-session",
        "date": "2026-11-01T00:00:00.000000Z",
        "version": "5.5",
    }
    parts = [head, {}, {}, content]
    json_frames = [json.dumps(part).encode() for part in parts]
    frames = [DELIM, kc.session.sign(json_frames), *json_frames]
    return Case(-1, channel, msg_type, head["msg_id"], parts, frames, accepted=True)
