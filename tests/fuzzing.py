"""Seeded generators of fuzzed JSON values and wire frames, and the decoder's property.

Every generator takes a ``random.Random`` from :func:`rng_for`, so the same seed
and names give the same values, frames and headers (tests/test_fuzz.py and
benchmarks/hostile.py rely on it to replay a case).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import random
import re
from typing import Any

import pytest
from jupyter_client.session import DELIM
from jupyter_client.session import Session as ReferenceSession

from akernel.wire import Message, Session, WireError

DEFAULT_SEED = 20261
KEY = b"fuzz-key"

# -- seeds and sizes -----------------------------------------------------------------------


def cases(request: pytest.FixtureRequest, default: int) -> int:
    """The number of cases a test runs: ``--fuzz-cases``, or the test's ``default``."""
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


# -- frames for the decoder --------------------------------------------------------------


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
