"""Scenario 10: seeded fuzzing with the request generator of tests/fuzz_requests.py."""

from __future__ import annotations

import functools
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench_kernel import KernelKind

from akernel.wire import Session

from .client import Peer
from .config import ROOT, Config, progress
from .kernels import Kernel, Lab
from .outcomes import Outcome, Results

# What identifies the fuzzed requests (their digest is printed with the table).
GENERATOR_FILES = ("tests/fuzzing.py", "tests/fuzz_requests.py")


@dataclass(frozen=True)
class FuzzGenerator:
    """The tests' request generator: their default seed, the groups of requests, a seeded
    random source, and a function that builds one case."""

    default_seed: int
    groups: list[tuple[str, str, float]]
    rng_for: Callable[..., random.Random]
    make_case: Callable[..., Any]

    def seed(self, cfg: Config) -> int:
        return self.default_seed if cfg.fuzz_seed is None else cfg.fuzz_seed


@functools.cache
def load_generator() -> tuple[FuzzGenerator | None, str | None]:
    """The generator of tests/fuzzing.py and tests/fuzz_requests.py (they need pytest),
    or why it cannot be imported."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        from tests.fuzz_requests import GROUPS, make_case
        from tests.fuzzing import DEFAULT_SEED, rng_for
    except Exception as e:
        return None, f"{type(e).__name__}: {e}"
    return FuzzGenerator(DEFAULT_SEED, GROUPS, rng_for, make_case), None


def _fuzz_cases(fuzz: FuzzGenerator, cfg: Config, peer: Peer, info: dict) -> list[Any]:
    """The same cases for every kernel (only the signatures differ)."""
    seed = fuzz.seed(cfg)
    oracle = Session(info["key"].encode(), info["signature_scheme"])
    total_share = sum(g[2] for g in fuzz.groups)
    cases = []
    for channel, group, share in fuzz.groups:
        rng: random.Random = fuzz.rng_for(seed, "hostile", channel, group)
        count = max(1, round(cfg.fuzz_cases * share / total_share))
        for n in range(count):
            cases.append(fuzz.make_case(rng, n, channel, group, peer.sign, oracle))
    return cases


def _fuzz_health(kernel: Kernel, peer: Peer, cfg: Config) -> tuple[str | None, float | None]:
    """After a batch: a kernel_info on each channel. Each channel handles its requests
    in order, so a request without a reply once the probe is answered got none.

    Returns what is wrong (None, "died", "shell silent", ...) and, for a kernel that
    answered only after ``reply_timeout``, after how long.
    """
    probes = {ch: peer.request(ch, "kernel_info_request") for ch in ("shell", "control")}

    def answered() -> bool:
        return all(peer.reply(m) is not None for m in probes.values())

    start = time.perf_counter()
    peer.pump(cfg.reply_timeout, answered)
    if kernel.alive() and answered():
        return None, None
    # Slow, or stuck for good? Give it longer before replacing it.
    peer.pump(cfg.stuck_timeout, answered)
    if not kernel.alive():
        return "died", None
    silent = " and ".join(ch for ch, m in probes.items() if peer.reply(m) is None)
    if silent:
        return f"{silent} silent", None
    return None, time.perf_counter() - start


def scenario_fuzz(lab: Lab, kind: KernelKind) -> Results:
    fuzz, why = load_generator()
    if fuzz is None:
        return {k: Outcome(f"not run: {why}", None) for k in ("10a", "10b", "10c")}
    cfg = lab.cfg
    kernel, peer = lab.start(kind)
    cases = _fuzz_cases(fuzz, cfg, peer, kernel.info)
    expected = answered = deaths = stuck = slow = unreadable = 0
    incidents: list[str] = []  # what went wrong, with the case to replay it
    briefly: list[str] = []
    seed = fuzz.seed(cfg)
    unanswered: Counter[str] = Counter()
    t0 = time.perf_counter()
    for start in range(0, len(cases), cfg.fuzz_batch):
        batch = cases[start : start + cfg.fuzz_batch]
        # A batch goes to one channel at a time, in order.
        for channel in dict.fromkeys(c.channel for c in batch):
            part = [c for c in batch if c.channel == channel]
            peer.forget()
            for case in part:
                peer.send(channel, case.frames)
            want = [c for c in part if c.wants_reply]
            accepted = [c for c in part if c.accepted]
            peer.pump(
                60.0,
                lambda want=want, accepted=accepted, peer=peer: (
                    all(peer.reply(c.msg_id) for c in want)
                    and all(peer.idle(c.msg_id) for c in accepted)
                ),
                quiet=cfg.fuzz_quiet,
            )
            what, late = _fuzz_health(kernel, peer, cfg)
            if late is not None:
                slow += 1
                briefly.append(f"answered after {late:.0f} s, after {channel} {part[0].msg_type}")
            peer.pump(0.1)
            for case in want:
                expected += 1
                if peer.reply(case.msg_id) is not None:
                    answered += 1
                else:
                    unanswered[f"{case.channel} {case.msg_type}"] += 1
            if what is not None:
                stuck += what != "died"
                deaths += what == "died"
                first = next((c for c in want if peer.reply(c.msg_id) is None), None)
                briefly.append(f"{what} after {channel} {part[0].msg_type}")
                incidents.append(
                    f"{what} after {channel} cases {part[0].number}-{part[-1].number} of"
                    f" {part[0].msg_type}...; first unanswered: "
                    + (first.describe(seed) if first else "none")
                )
                progress(f"  [{kind.name}] fuzz: {incidents[-1][:300]}")
                unreadable += peer.unreadable
                kernel.stop()
                kernel, peer = lab.start(kind)
                # The next cases are signed with the new kernel's key.
                for case in cases[start:]:
                    case.frames[1] = peer.sign(case.frames[2:6])
    elapsed = time.perf_counter() - t0
    unreadable += peer.unreadable
    top = ", ".join(f"{name} {n}" for name, n in unanswered.most_common(4))
    text = f"{answered:,} of {expected:,} answered"
    if unanswered:
        text += f"; unanswered: {top}"
    if unreadable:
        text += f"; {unreadable} messages from the kernel unreadable by jupyter_client's decoder"
    out = {
        "10a": Outcome(
            text,
            answered == expected and not unreadable,
            {"unanswered": dict(unanswered), "unreadable": unreadable},
        )
    }
    out["10b"] = Outcome(
        f"{deaths} deaths, {stuck} stuck, {slow} slow"
        + (f" ({'; '.join(briefly)})" if briefly else "")
        + f"; {len(cases):,} requests in {elapsed:.0f} s",
        deaths == 0 and stuck == 0,
        {
            "deaths": deaths,
            "stuck": stuck,
            "slow": slow,
            "incidents": incidents,
            "requests": len(cases),
            "seconds": elapsed,
        },
    )
    after = kernel.still_runs(peer, cfg.reply_timeout)
    out["10c"] = Outcome("yes" if after is None else f"no: {after}", after is None)
    return out
