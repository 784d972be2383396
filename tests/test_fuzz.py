"""Seeded fuzzing of the wire decoder (in process) and of every request handler (real kernels).

Every case comes from ``random.Random`` seeded with ``--fuzz-seed`` (default
:data:`DEFAULT_SEED`) and the test's name, so a failure is replayed by running
the same test with the same seed: failures print the seed, the case number and
the offending message. ``--fuzz-cases N`` sets the number of cases of each
in-process test, and of each backend's real-kernel run (spread over the message
types); case numbers do not depend on it.

Real kernels only ever run code from ``CODE`` and ``EXPRESSIONS`` of
tests/fuzz_requests.py: everything else in a request is fuzzed, never the code.
The generators are in tests/fuzzing.py (values, frames) and tests/fuzz_requests.py
(requests); tests/fuzz_exchange.py sends them to a kernel and judges what comes back.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
import zmq
from jupyter_client.session import Session as ReferenceSession
from jupyter_client.session import json_unpacker

from akernel.wire import Session

from .fuzz_exchange import BATCH, FuzzedKernel, check_case, send_and_collect
from .fuzz_requests import GROUPS, REAL_KERNEL_CASES, make_case
from .fuzzing import (
    DEFAULT_SEED,
    KEY,
    built_frames,
    cases,
    check_decoding,
    describe,
    equal,
    mutate,
    nested,
    reference_frames,
    resign,
    rng_for,
    text,
    value,
)
from .utils import is_idle_of


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    chosen = request.config.getoption("--fuzz-seed")
    return DEFAULT_SEED if chosen is None else chosen


# -- (a) the decoder in process ----------------------------------------------------------


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


@pytest.fixture(scope="module")
def fuzzed_kernel(backend: str) -> Iterator[FuzzedKernel]:
    kernel = FuzzedKernel(backend)
    try:
        yield kernel
    finally:
        kernel.stop()


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
