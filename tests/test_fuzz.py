"""Seeded fuzzing of the wire decoder (in process) and of every request handler (real kernels).

Every case comes from ``random.Random`` seeded with ``--fuzz-seed`` (default
:data:`DEFAULT_SEED`) and the test's name, so a failure is replayed by running
the same test with the same seed: failures print the seed, the case number and
the offending message. ``--fuzz-cases N`` sets the number of cases of each
in-process test, and of each backend's real-kernel run (spread over the message
types); case numbers do not depend on it.

Real kernels only ever run code from :data:`CODE` and :data:`EXPRESSIONS`:
everything else in a request is fuzzed, never the code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import random
import re
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import zmq
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.session import DELIM, json_unpacker
from jupyter_client.session import Session as ReferenceSession

from akernel.wire import Message, Session, WireError, new_id

from .conftest import start_kernel, stop_kernel
from .rawclient import channel_of
from .utils import is_idle_of

DEFAULT_SEED = 20261
KEY = b"fuzz-key"

# -- options -------------------------------------------------------------------------------


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    chosen = request.config.getoption("--fuzz-seed")
    return DEFAULT_SEED if chosen is None else chosen


def cases(request: pytest.FixtureRequest, default: int) -> int:
    chosen = request.config.getoption("--fuzz-cases")
    return default if chosen is None else chosen


def rng_for(seed: int, *names: str) -> random.Random:
    """The random source of one test: the same for the same seed and names."""
    return random.Random("/".join([str(seed), *names]))


# -- values --------------------------------------------------------------------------------

BIG_INTEGERS = [-1, 0, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30, 10**400]
SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, 1e308, -0.0, 5e-324, 0.1]
# A string value() returns for nesting too deep for json.dumps: "<DEEP><depth>:<leaf>".
DEEP = "\x00deep:"
_DEEP_MARKER = re.compile(rb'"\\u0000deep:(\d+):(\d+)"')
SPECIAL_STRINGS = [
    "",
    "ok\udcff",  # a byte decoded with surrogateescape
    "\ud800",
    "lone \udfff low",
    "pair \ud83d\ude00",
    "\x00nul",
    "<IDS|MSG>",
    "é😀\u2028",
    "1e400",
    "NaN",
]


def text(rng: random.Random) -> str:
    """A string: a word, odd characters, a special one, or a huge one."""
    kind = rng.random()
    if kind < 0.4:
        return "".join(rng.choice("abcxyz_0123 .(") for _ in range(rng.randint(0, 12)))
    if kind < 0.7:
        return rng.choice(SPECIAL_STRINGS)
    if kind < 0.97:
        return "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(1, 8)))
    return rng.choice("x\udcff") * rng.choice([2**14, 2**17])


def number(rng: random.Random) -> int | float:
    kind = rng.random()
    if kind < 0.4:
        return rng.randint(-5, 30)
    if kind < 0.75:
        return rng.choice(BIG_INTEGERS)
    return rng.choice(SPECIAL_FLOATS)


def nested(rng: random.Random, depth: int, leaf: Any = 1) -> Any:
    for _ in range(depth):
        leaf = [leaf] if rng.random() < 0.5 else {"k": leaf}
    return leaf


def value(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value (with NaN and the infinities), of any type."""
    kind = rng.random()
    if depth > 3 or kind < 0.15:
        return rng.choice([None, True, False])
    if kind < 0.4:
        return number(rng)
    if kind < 0.7:
        return text(rng)
    if kind < 0.8:
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind < 0.97:
        return {text(rng): value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    # Deep nesting is written into the JSON text by encode(): json.dumps cannot.
    return f"{DEEP}{rng.choice([30, 300, 1000, 1023, 3000])}:{rng.choice(['1', str(2**70)])}"


def equal(a: Any, b: Any) -> bool:
    """``a == b`` for JSON values of any depth, with NaN equal to itself and
    ``1`` unequal to ``1.0``."""
    pending = [(a, b)]
    while pending:
        x, y = pending.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, list):
            if len(x) != len(y):
                return False
            pending.extend(zip(x, y, strict=True))
        elif isinstance(x, dict):
            if x.keys() != y.keys():
                return False
            pending.extend((x[k], y[k]) for k in x)
        elif x != y and not (isinstance(x, float) and math.isnan(x) and math.isnan(y)):
            return False
    return True


def describe(obj: Any, limit: int = 800) -> str:
    shown = repr(obj)
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(shown)} characters)"


# -- JSON frames ---------------------------------------------------------------------------


def encode(rng: random.Random, obj: Any) -> bytes:
    """JSON bytes for ``obj``: lone surrogates escaped, or as (invalid) UTF-8
    bytes; each :data:`DEEP` marker becomes that deep a nesting."""
    if rng.random() < 0.7:
        data = json.dumps(obj).encode("ascii")
    else:
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return _DEEP_MARKER.sub(_deep_json, data)


def _deep_json(match: re.Match[bytes]) -> bytes:
    depth = int(match[1])
    return b"[" * depth + match[2] + b"]" * depth


def odd_frame(rng: random.Random) -> bytes:
    """JSON-ish bytes a decoder must survive."""
    kind = rng.randrange(7)
    if kind == 0:
        return rng.choice([b"NaN", b"-Infinity", b'{"a": Infinity}', b'{"a": 1e400}', b"{}"])
    if kind == 1:
        depth = rng.choice([200, 1_000, 1_025, 5_000, 100_000])
        inner = rng.choice([b"1", b"12345678901234567890123", b"NaN", b'"\\ud800"'])
        opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
        return b'{"x": ' + opener * depth + inner + closer * depth + b"}"
    if kind == 2:
        return rng.choice(
            [b'{"a": "\xff\xfe"}', b'{"\xc3": 1}', b'{"a": "\xc0\xaf"}', b"\xef\xbb\xbf{}"]
        )
    if kind == 3:
        return rng.choice([b'{"a": "\\ud800"}', b'{"\\udcff": "\\udfff\\ud800"}'])
    if kind == 4:
        return rng.randbytes(rng.randint(0, 40))
    if kind == 5:
        whole = encode(rng, value(rng))
        return whole[: rng.randint(0, len(whole))]
    return encode(rng, {"a": rng.choice([*BIG_INTEGERS, 10**4000])})


def header(rng: random.Random, msg_type: str = "execute_request") -> dict[str, Any]:
    """A valid header, or one with a field missing, of a wrong type, or extra fields."""
    fields: dict[str, Any] = {
        "msg_id": text(rng) if rng.random() < 0.1 else f"{rng.getrandbits(128):032x}",
        "msg_type": msg_type,
        "username": "fuzz",
        "session": "fuzz-session",
        "date": "2026-11-01T00:00:00.000000Z",
        "version": "5.5",
    }
    if rng.random() < 0.5:
        name = rng.choice([*fields, "subshell_id"])
        fields[name] = value(rng) if rng.random() < 0.8 else fields.pop(name, None)
    if rng.random() < 0.2:
        fields[text(rng)] = value(rng)
    return fields


# -- (a) the decoder in process ----------------------------------------------------------


def resign(frames: list[bytes], key: bytes) -> list[bytes]:
    """Frames whose signature matches their JSON frames again (when they have any)."""
    index = next((i for i, f in enumerate(frames) if f == DELIM), -1)
    if key and index >= 0 and len(frames) >= index + 6:
        h = hmac.new(key, digestmod=hashlib.sha256)
        for frame in frames[index + 2 : index + 6]:
            h.update(frame)
        frames[index + 1] = h.hexdigest().encode()
    return frames


def reference_frames(rng: random.Random, reference: ReferenceSession) -> list[bytes]:
    """A valid message as jupyter_client sends it."""
    msg = reference.msg(
        rng.choice(["execute_request", "comm_msg", "kernel_info_request"]),
        content={"code": "1+1", "n": rng.randint(0, 9)},
        metadata={"cellId": "c"} if rng.random() < 0.5 else {},
    )
    ids = [rng.randbytes(rng.randint(1, 6)) for _ in range(rng.randint(0, 2))]
    buffers = [rng.randbytes(rng.randint(0, 8)) for _ in range(rng.randint(0, 2))]
    msg["buffers"] = buffers
    return reference.serialize(msg, ident=ids) + buffers


def mutate(rng: random.Random, frames: list[bytes]) -> list[bytes]:
    """One to three mutations: bit flips, truncation, frames dropped,
    duplicated, reordered, replaced or added, a signature altered."""
    frames = list(frames)
    for _ in range(rng.randint(1, 3)):
        if not frames:
            frames.append(DELIM)
        i = rng.randrange(len(frames))
        kind = rng.randrange(9)
        if kind == 0 and frames[i]:
            data = bytearray(frames[i])
            bit = rng.randrange(len(data) * 8)
            data[bit // 8] ^= 1 << (bit % 8)
            frames[i] = bytes(data)
        elif kind == 1:
            frames[i] = frames[i][: rng.randint(0, len(frames[i]))]
        elif kind == 2:
            del frames[i]
        elif kind == 3:
            frames.insert(i, frames[i])
        elif kind == 4:
            j = rng.randrange(len(frames))
            frames[i], frames[j] = frames[j], frames[i]
        elif kind == 5:
            frames.insert(0, rng.choice([rng.randbytes(5), b"", DELIM]))
        elif kind == 6:
            frames[i] = odd_frame(rng)
        elif kind == 7:
            frames[i] = encode(rng, value(rng)) if rng.random() < 0.5 else encode(rng, header(rng))
        else:
            index = frames.index(DELIM) if DELIM in frames else -1
            if 0 <= index < len(frames) - 1:
                frames[index + 1] = rng.choice(
                    [b"", b"00", frames[index + 1].upper(), rng.randbytes(64)]
                )
    return frames


def built_frames(rng: random.Random) -> list[bytes]:
    """Frames put together from valid, odd and wrongly typed parts."""

    def part(valid: Any) -> bytes:
        kind = rng.random()
        if kind < 0.5:
            return encode(rng, valid)
        if kind < 0.75:
            return odd_frame(rng)
        return encode(rng, value(rng))

    ids = [rng.randbytes(rng.randint(0, 4)) for _ in range(rng.randint(0, 2))]
    parts = [
        part(header(rng)),
        part({}),
        part({"engine": "e"}),
        part({"code": text(rng), "x": value(rng)}),
    ]
    return [*ids, DELIM, b"", *parts, *[rng.randbytes(3) for _ in range(rng.randint(0, 2))]]


def check_decoding(session: Session, frames: list[bytes], where: str) -> Message | None:
    """The property: a well-formed Message, or a WireError; nothing else."""
    try:
        msg = session.deserialize(frames)
    except WireError:
        return None
    except Exception as e:
        pytest.fail(f"{where}: {type(e).__name__}: {e}\n  frames: {describe(frames)}")
    problems = [
        not isinstance(msg, Message),
        not isinstance(msg.header, dict),
        not all(isinstance(msg.header.get(k), str) for k in ("msg_id", "msg_type", "session")),
        not all(isinstance(d, dict) for d in (msg.parent_header, msg.metadata, msg.content)),
        not all(isinstance(i, bytes) for i in msg.identities),
        not isinstance(msg.raw_header, bytes),
    ]
    assert not any(problems), f"{where}: ill-formed {describe(msg)}\n  frames: {describe(frames)}"
    return msg


@pytest.mark.parametrize("key", [KEY, b""], ids=["signed", "unsigned"])
def test_decoder_survives_mutated_and_odd_frames(request, seed: int, key: bytes) -> None:
    rng = rng_for(seed, "decoder", key.decode())
    reference = ReferenceSession(key=key, signature_scheme="hmac-sha256")
    ours = Session(key, "hmac-sha256")
    accepted = 0
    for case in range(cases(request, 4000)):
        if rng.random() < 0.6:
            frames = mutate(rng, reference_frames(rng, reference))
        else:
            frames = built_frames(rng)
        # Mostly signed again, so that the JSON layer is reached.
        if rng.random() < 0.85:
            frames = resign(frames, key)
        if rng.random() < 0.1:
            frames = [zmq.Frame(f) for f in frames]  # as a zero-copy receive gives them
        where = f"seed={seed} case={case} key={key!r}"
        accepted += check_decoding(ours, frames, where) is not None
    # The fuzzing reaches past the signature check (a test that can fail).
    assert accepted > 0


@pytest.mark.parametrize("key", [KEY, b""], ids=["signed", "unsigned"])
def test_what_jupyter_client_sends_is_read_the_same(request, seed: int, key: bytes) -> None:
    """Anything jupyter_client's Session can send (with its orjson packer or
    its json one), ours reads as the standard library's JSON decoder does:
    jupyter_client's orjson unpacker would turn integers beyond 64 bits into
    floats, where ours keeps them exact."""
    rng = rng_for(seed, "reference", key.decode())
    references = [
        ReferenceSession(key=key, signature_scheme="hmac-sha256", packer=packer)
        for packer in ("orjson", "json")
    ]
    ours = Session(key, "hmac-sha256")
    compared = 0
    for case in range(cases(request, 2000)):
        where = f"seed={seed} case={case} key={key!r}"
        reference = rng.choice(references)
        content = {text(rng): value(rng) for _ in range(rng.randint(0, 5))}
        if rng.random() < 0.1:
            content["deep"] = nested(rng, rng.randint(1, 500), rng.choice([1, 2**70, "s"]))
        metadata = {text(rng): value(rng) for _ in range(rng.randint(0, 2))}
        msg = reference.msg(rng.choice(["execute_request", "x"]), content, metadata=metadata)
        msg["header"].update({text(rng): value(rng) for _ in range(rng.randint(0, 2))})
        ids = [rng.randbytes(rng.randint(1, 5)) for _ in range(rng.randint(0, 2))]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                frames = reference.serialize(msg, ident=ids)
        except (ValueError, TypeError, RecursionError):
            continue  # what jupyter_client cannot send (lone high surrogates, ...)
        got = check_decoding(ours, frames, where)
        assert got is not None, f"{where}: refused\n  frames: {describe(frames)}"
        _, msg_list = reference.feed_identities(frames)
        for name, frame in (("header", 1), ("parent_header", 2), ("metadata", 3), ("content", 4)):
            expected = json_unpacker(msg_list[frame])
            assert equal(getattr(got, name), expected), (
                f"{where}: {name} differs\n  ours: {describe(getattr(got, name))}\n"
                f"  reference: {describe(expected)}"
            )
        assert got.identities == ids, where
        compared += 1
    assert compared > 0


# -- (b) real kernels ----------------------------------------------------------------------

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
]
HANDLED = {"shell": set(SHELL_TYPES), "control": set(CONTROL_TYPES)}
# Types no handler serves on the channel (shutdown_request is never sent).
UNKNOWN_TYPES = ["foo_request", "debug_request", "create_subshell_request", "signal_request"]
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
BATCH = 40
BATCH_TIMEOUT = 60  # seconds for a whole batch to be answered
QUIET_TIMEOUT = 10  # seconds without a message from the kernel: it is stuck
STATUSES = {"ok", "error", "aborted"}
# is_complete_reply's status says whether the code is complete instead.
IS_COMPLETE_STATUSES = {"complete", "incomplete", "invalid", "unknown", "error"}


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
        if msg_type in HANDLED[channel] or msg_type == "shutdown_request":
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


def heartbeat_answers(kc: BlockingKernelClient, timeout: float = 10) -> bool:
    url = f"tcp://{kc.ip}:{kc.hb_port}" if kc.transport == "tcp" else f"ipc://{kc.ip}-{kc.hb_port}"
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.linger = 0
    try:
        sock.connect(url)
        sock.send(b"ping")
        return bool(sock.poll(int(timeout * 1000))) and sock.recv() == b"ping"
    finally:
        sock.close()


class FuzzedKernel:
    """The module's kernel for one backend; replaced when a test broke it."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.km, self.kc = start_kernel(backend)
        self.healthy = True  # as far as the last check knows

    def problems(self) -> list[str]:
        """What is wrong with the kernel: empty when it is alive and serves."""
        problems = self._problems()
        self.healthy = not problems
        return problems

    def _problems(self) -> list[str]:
        if not self.km.is_alive():
            return ["the kernel process is gone"]
        if not heartbeat_answers(self.kc):
            return ["the heartbeat does not answer"]
        execute = plain_case(self.kc, "shell", "execute_request", {"code": "1+1"})
        replies, iopub, _ = send_and_collect(self.kc, [execute], self.km.is_alive)
        got = replies[execute.msg_id] + iopub[execute.msg_id]
        if check_case(execute, replies[execute.msg_id], iopub[execute.msg_id]):
            return [f"execute '1+1' was not answered: {describe(got)}"]
        results = [m["content"].get("data") for m in got if m["msg_type"] == "execute_result"]
        if got[0]["content"]["status"] != "ok" or results != [{"text/plain": "2"}]:
            return [f"execute '1+1' failed: {describe(got)}"]
        info = plain_case(self.kc, "control", "kernel_info_request", {})
        replies, iopub, _ = send_and_collect(self.kc, [info], self.km.is_alive)
        if check_case(info, replies[info.msg_id], iopub[info.msg_id]):
            return ["control's kernel_info_request was not answered"]
        return []

    def ready(self) -> None:
        """Replace the kernel if an earlier test broke it; drop old messages."""
        if not self.healthy:
            stop_kernel(self.km, self.kc)
            self.km, self.kc = start_kernel(self.backend)
            self.healthy = True
        for channel in (self.kc.shell_channel, self.kc.control_channel, self.kc.iopub_channel):
            while channel.socket.poll(0):
                channel.socket.recv_multipart()

    def stop(self) -> None:
        stop_kernel(self.km, self.kc)


@pytest.fixture(scope="module")
def fuzzed_kernel(backend: str) -> Iterator[FuzzedKernel]:
    kernel = FuzzedKernel(backend)
    try:
        yield kernel
    finally:
        kernel.stop()


class KernelReader:
    """Reads what the kernel sends, verifying its signatures: with akernel's
    decoder (which reads any depth of nesting it accepted), and noting what
    jupyter_client's could not read."""

    def __init__(self, kc: BlockingKernelClient) -> None:
        self.ours = Session(kc.session.key, kc.session.signature_scheme)
        self.reference = ReferenceSession(
            key=kc.session.key, signature_scheme=kc.session.signature_scheme
        )
        self.unreadable: list[str] = []

    def read(self, sock: zmq.Socket, into: dict[str, list[dict]]) -> bool:
        """File every message ready on ``sock`` under its parent's msg_id; whether any came."""
        got = False
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return got
            got = True
            try:
                msg = self.ours.deserialize(frames)
            except WireError as e:
                self.unreadable.append(f"{e}: {describe(frames)}")
                continue
            record = {
                "msg_type": msg.msg_type,
                "content": msg.content,
                "parent_header": msg.parent_header,
            }
            try:
                self.reference.deserialize(self.reference.feed_identities(frames)[1])
            except Exception as e:
                record["unreadable"] = f"{type(e).__name__}: {str(e)[:200]}"
            into.setdefault(msg.parent_header.get("msg_id"), []).append(record)


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


def send_and_collect(
    kc: BlockingKernelClient, batch: list[Case], alive: Callable[[], bool]
) -> tuple[dict, dict, list[str]]:
    """Send the batch at once, then read replies and IOPub messages by parent
    msg_id until every accepted request is idle and answered, or nothing
    more comes, or the kernel is gone."""
    sock = channel_of(kc, batch[0].channel).socket
    for case in batch:
        sock.send_multipart(case.frames)
    reader = KernelReader(kc)
    replies: dict[str, list[dict]] = {case.msg_id: [] for case in batch}
    iopub: dict[str, list[dict]] = {case.msg_id: [] for case in batch}
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(kc.iopub_channel.socket, zmq.POLLIN)
    deadline = time.monotonic() + BATCH_TIMEOUT
    last_news = settled_at = time.monotonic()
    settled = False
    while time.monotonic() < deadline and time.monotonic() - last_news < QUIET_TIMEOUT:
        if reader.read(sock, replies) | reader.read(kc.iopub_channel.socket, iopub):
            last_news = time.monotonic()
        elif time.monotonic() - last_news > 1 and not alive():
            break
        idle = all(
            any(is_idle_of(m, c.msg_id) for m in iopub[c.msg_id]) for c in batch if c.accepted
        )
        answered = all(replies[c.msg_id] for c in batch if c.wants_reply)
        if idle:
            # A reply leaves before its idle: give a late one a moment, and
            # let a second reply to the same request show up.
            if not settled:
                settled, settled_at = True, time.monotonic()
            if time.monotonic() - settled_at > (0.1 if answered else 2):
                break
        poller.poll(50)
    return replies, iopub, reader.unreadable


def sequence(iopub: list[dict]) -> str:
    """IOPub messages in short: their types, status messages by state."""
    return ", ".join(
        m["content"].get("execution_state", "?") if m["msg_type"] == "status" else m["msg_type"]
        for m in iopub
    )


def check_case(case: Case, replies: list[dict], iopub: list[dict]) -> list[str]:
    """What the kernel did wrong with one request."""
    if case.decoder_error:
        return [f"akernel's decoder raises {case.decoder_error} (expected a WireError)"]
    if not case.accepted:
        return [f"dropped by the wire layer, yet answered: {describe(replies + iopub)}"] * bool(
            replies or iopub
        )
    problems = [
        f"jupyter_client cannot read the kernel's {m['msg_type']}: {m['unreadable']}"
        for m in replies + iopub
        if "unreadable" in m
    ]
    statuses = [m["content"]["execution_state"] for m in iopub if m["msg_type"] == "status"]
    if not statuses or statuses[-1] != "idle" or iopub[-1]["msg_type"] != "status":
        problems.append(f"no idle at the end of its IOPub messages: {sequence(iopub)}")
    elif iopub[0]["msg_type"] != "status" or statuses != ["busy", "idle"]:
        problems.append(f"not bracketed by one busy and one idle: {sequence(iopub)}")
    expected = case.msg_type.rsplit("_", 1)[0] + "_reply"
    if len(replies) > (1 if case.wants_reply or case.msg_type.endswith("_request") else 0):
        problems.append(f"{len(replies)} replies: {describe(replies)}")
    elif case.wants_reply and not replies:
        problems.append("no reply")
    for reply in replies[:1]:
        content = reply["content"]
        status = content.get("status")
        if reply["msg_type"] != expected:
            problems.append(f"reply of type {reply['msg_type']!r}, not {expected!r}")
        elif status not in (IS_COMPLETE_STATUSES if expected == "is_complete_reply" else STATUSES):
            problems.append(f"reply status {status!r}: {describe(content)}")
        elif status == "error" and not (
            isinstance(content.get("ename"), str)
            and isinstance(content.get("evalue"), str)
            and isinstance(content.get("traceback"), list)
        ):
            problems.append(f"error reply without ename, evalue, traceback: {describe(content)}")
    return problems


@pytest.mark.parametrize(
    ("channel", "group", "share"), GROUPS, ids=[f"{c}-{g}" for c, g, _ in GROUPS]
)
def test_fuzzed_requests(
    request, fuzzed_kernel: FuzzedKernel, seed: int, channel: str, group: str, share: float
) -> None:
    """Every request that reaches a handler gets one reply of its type, between
    busy and idle, and the kernel keeps serving."""
    fuzzed_kernel.ready()
    kc = fuzzed_kernel.kc
    rng = rng_for(seed, "kernel", channel, group)
    oracle = Session(kc.session.key, kc.session.signature_scheme)
    total_share = sum(g[2] for g in GROUPS)
    count = max(10, round(cases(request, REAL_KERNEL_CASES) * share / total_share))
    all_cases = [make_case(rng, n, channel, group, kc.session.sign, oracle) for n in range(count)]
    # Most requests get past the wire layer to the dispatcher.
    assert sum(c.accepted for c in all_cases) > count // 2
    problems: list[str] = []
    for start in range(0, count, BATCH):
        batch = all_cases[start : start + BATCH]
        replies, iopub, unreadable = send_and_collect(kc, batch, fuzzed_kernel.km.is_alive)
        problems += [f"unreadable message from the kernel: {u}" for u in unreadable]
        for case in batch:
            for problem in check_case(case, replies[case.msg_id], iopub[case.msg_id]):
                problems.append(f"{problem}\n  {case.describe(seed)}")
        stuck = [
            c
            for c in batch
            if c.accepted and not any(is_idle_of(m, c.msg_id) for m in iopub[c.msg_id])
        ]
        broken = fuzzed_kernel.problems()
        if broken or stuck:
            first = stuck[0].describe(seed) if stuck else "(none: all were handled)"
            what = broken[0] if broken else "the kernel stopped handling requests"
            problems.append(f"{what} after this batch; the first request not handled:\n  {first}")
            break
    assert not problems, (
        f"{len(problems)} problems (replay: --fuzz-seed {seed} -k {request.node.name!r}):\n"
        + "\n".join(problems[:25])
    )
