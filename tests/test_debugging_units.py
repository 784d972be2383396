"""Unit tests of the debugger's sans-IO pieces: DAP framing and cell file names.

These run in-process: nothing here starts a kernel or an event loop, so there is
no backend to vary.
"""

from __future__ import annotations

import json
import os
import random
import stat
import sys

import pytest
from ipykernel.compiler import murmur2_x86 as reference_murmur2

from akernel.debugging.cells import (
    HASH_METHOD,
    HASH_SEED,
    CellCompiler,
    CellFiles,
    murmur2,
)
from akernel.debugging.dap import (
    DapFramer,
    DapProtocolError,
    SequenceMap,
    encode,
    error_response,
    response,
)

# ---------------------------------------------------------------- murmur2


def _sample_strings() -> list[str]:
    rng = random.Random(20240613)
    alphabet = "abcxyz \n\t:()=_é中\U0001f600\x00"
    samples = ["", "pass", "print('hello')\n", "a = 1\nb = 2\n", "é", "中文", "\U0001f600"]
    samples += ["x" * n for n in range(0, 13)]  # every tail length, several block counts
    samples += ["".join(rng.choice(alphabet) for _ in range(n)) for n in range(0, 64)]
    samples += ["".join(rng.choice(alphabet) for _ in range(n)) for n in (511, 2048, 5003)]
    return samples


@pytest.mark.parametrize("seed", [HASH_SEED, 0, 1, 0xFFFFFFFF])
def test_murmur2_matches_ipykernel(seed: int) -> None:
    for text in _sample_strings():
        assert murmur2(text.encode("utf-8"), seed) == reference_murmur2(text, seed), text


def test_murmur2_covers_every_tail_length() -> None:
    lengths = {len(text.encode("utf-8")) % 4 for text in _sample_strings()}
    assert lengths == {0, 1, 2, 3}


def test_murmur2_is_32_bit_and_seed_dependent() -> None:
    values = {murmur2(b"pass", seed) for seed in (0, 1, HASH_SEED)}
    assert len(values) == 3
    assert all(0 <= value <= 0xFFFFFFFF for value in values)


# ---------------------------------------------------------------- DAP framing

MESSAGES = [
    {"seq": 1, "type": "request", "command": "initialize", "arguments": {"clientID": "x"}},
    {"seq": 2, "type": "event", "event": "output", "body": {"output": "héllo 中 \U0001f600\n"}},
    {"seq": 3, "type": "response", "request_seq": 1, "success": True, "command": "initialize"},
]


def _stream() -> bytes:
    return b"".join(encode(message) for message in MESSAGES)


def test_encode_round_trip() -> None:
    framer = DapFramer()
    assert framer.feed(_stream()) == MESSAGES
    assert framer.buffered == 0


def test_encode_header_counts_bytes_not_characters() -> None:
    data = encode({"text": "é"})
    header, body = data.split(b"\r\n\r\n", 1)
    assert header == b"Content-Length: %d" % len(body)
    assert json.loads(body) == {"text": "é"}
    with pytest.raises(TypeError):
        encode([1, 2])  # type: ignore[arg-type]


def test_split_at_every_byte_boundary() -> None:
    data = _stream()
    for cut in range(len(data) + 1):
        framer = DapFramer()
        got = framer.feed(data[:cut]) + framer.feed(data[cut:])
        assert got == MESSAGES, cut


def test_one_byte_at_a_time() -> None:
    framer = DapFramer()
    got = []
    for index in range(len(_stream())):
        got += framer.feed(_stream()[index : index + 1])
    assert got == MESSAGES


def test_other_headers_and_any_case_are_accepted() -> None:
    body = json.dumps(MESSAGES[0]).encode()
    data = (
        b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n"
        b"content-LENGTH:   %d  \r\n\r\n" % len(body) + body
    )
    assert DapFramer().feed(data) == [MESSAGES[0]]


def _header(value: bytes) -> bytes:
    return b"Content-Length: " + value + b"\r\n\r\n"


MALFORMED = {
    "no content-length": b"Content-Type: x\r\n\r\n{}",
    "negative": _header(b"-1") + b"{}",
    "not an integer": _header(b"abc") + b"{}",
    "float": _header(b"2.0") + b"{}",
    "empty length": _header(b"") + b"{}",
    "two lengths": b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
    "line without colon": b"Content-Length 2\r\n\r\n{}",
    "non-ascii header": b"Content-Length: 2\r\nX-\xff: y\r\n\r\n{}",
    "too large": _header(b"%d" % (64 * 1024 * 1024 + 1)),
    "invalid json": _header(b"5") + b"{abc}",
    "json array": _header(b"2") + b"[]",
    "json number": _header(b"1") + b"7",
    "invalid utf-8": _header(b"4") + b'"\xff"\x20',
    "endless header": b"X" * (64 * 1024 + 10),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_input_raises_and_breaks_the_stream(case: str) -> None:
    framer = DapFramer()
    with pytest.raises(DapProtocolError) as raised:
        framer.feed(MALFORMED[case])
    assert str(raised.value)
    assert framer.broken
    with pytest.raises(DapProtocolError, match="unusable"):
        framer.feed(encode(MESSAGES[0]))


def test_messages_before_an_error_are_kept() -> None:
    framer = DapFramer()
    with pytest.raises(DapProtocolError) as raised:
        framer.feed(encode(MESSAGES[0]) + encode(MESSAGES[1]) + _header(b"2") + b"[]")
    assert raised.value.messages == MESSAGES[:2]


def test_partial_message_waits_without_error() -> None:
    framer = DapFramer()
    data = encode(MESSAGES[0])
    assert framer.feed(data[:-1]) == []
    assert not framer.broken
    assert framer.feed(data[-1:]) == [MESSAGES[0]]


def test_custom_body_limit() -> None:
    with pytest.raises(DapProtocolError, match="exceeds"):
        DapFramer(max_body=10).feed(_header(b"11"))


# ---------------------------------------------------------------- sequence map


def test_sequence_map_round_trip() -> None:
    sequences = SequenceMap()
    own = sequences.next_seq()  # the kernel's own request takes a number too
    first = {"seq": 7, "type": "request", "command": "setBreakpoints"}
    second = {"seq": 7, "type": "request", "command": "threads"}  # a second client, same seq
    forwarded_first = sequences.forward(first, origin="parent-1")
    forwarded_second = sequences.forward(second, origin="parent-2")
    assert {own, forwarded_first["seq"], forwarded_second["seq"]} == {1, 2, 3}
    assert first["seq"] == 7  # the client's request is not modified
    assert len(sequences) == 2

    reply = response(forwarded_second, body={"threads": []}, seq=sequences.next_seq())
    mapped, pending = sequences.resolve(reply)  # type: ignore[misc]
    assert mapped["request_seq"] == 7
    assert mapped["body"] == {"threads": []}
    assert pending.origin == "parent-2"
    assert pending.request is second
    assert forwarded_second["seq"] not in sequences
    assert sequences.resolve(reply) is None  # answered once, then forgotten

    mapped, pending = sequences.resolve(response(forwarded_first))  # type: ignore[misc]
    assert (mapped["request_seq"], pending.origin) == (7, "parent-1")
    assert len(sequences) == 0
    assert sequences.resolve({"type": "response", "request_seq": own}) is None


def test_sequence_map_rejects_request_without_integer_seq() -> None:
    sequences = SequenceMap()
    for bad in ({"command": "x"}, {"seq": "1"}, {"seq": True}):
        with pytest.raises(DapProtocolError, match="seq"):
            sequences.forward(bad)
    assert len(sequences) == 0


def test_response_builders() -> None:
    request = {"seq": 4, "type": "request", "command": "evaluate"}
    assert response(request, {"result": "1"}, seq=9) == {
        "type": "response",
        "seq": 9,
        "request_seq": 4,
        "success": True,
        "command": "evaluate",
        "body": {"result": "1"},
    }
    assert error_response(request, "no frame") == {
        "type": "response",
        "seq": 0,
        "request_seq": 4,
        "success": False,
        "command": "evaluate",
        "message": "no frame",
    }


# ---------------------------------------------------------------- cell files


def test_cell_files_path_dump_remove(tmp_path) -> None:
    directory = tmp_path / "cells"
    files = CellFiles(directory)
    code = "x = 1\r\nprint('é')\n"
    expected = f"{directory}{os.sep}{murmur2(code.encode('utf-8'), HASH_SEED)}.py"
    assert files.path_for(code) == expected
    assert not directory.exists()  # naming a cell writes nothing

    assert files.dump(code) == expected
    with open(expected, "rb") as stream:
        assert stream.read() == code.encode("utf-8")
    if sys.platform != "win32":
        assert stat.S_IMODE(directory.stat().st_mode) & 0o077 == 0
    assert files.dump(code) == expected  # dumping again replaces it in place
    assert sorted(os.listdir(directory)) == [os.path.basename(expected)]

    files.remove()
    assert not directory.exists()
    files.remove()  # already gone: no error


def test_debug_info_fields(tmp_path) -> None:
    fields = CellFiles(tmp_path / "cells").debug_info_fields()
    assert fields == {
        "hashMethod": HASH_METHOD,
        "hashSeed": HASH_SEED,
        "tmpFilePrefix": f"{tmp_path / 'cells'}{os.sep}",
        "tmpFileSuffix": ".py",
    }
    assert fields["tmpFilePrefix"].endswith(os.sep)


def test_cell_compiler_names_code_by_cell_file(tmp_path) -> None:
    files = CellFiles(tmp_path)
    compiler = CellCompiler(files)
    raw = "%time y = 2\n"
    transformed = "get_ipython().run_line_magic('time', 'y = 2')\n"
    name = compiler.cache(transformed, 3, raw_code=raw)
    assert name == files.path_for(raw)
    code = compiler(transformed, name, "exec")
    assert code.co_filename == files.path_for(raw)

    plain = "z = 3\n"
    code = compiler(plain, compiler.cache(plain, 4), "exec")
    assert code.co_filename == files.path_for(plain)
    namespace: dict = {}
    exec(code, namespace)
    assert namespace["z"] == 3
