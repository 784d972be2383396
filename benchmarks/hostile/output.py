"""Scenarios 1 and 3: output that cannot be UTF-8, and an IOPub subscriber that stops reading."""

from __future__ import annotations

import contextlib
import statistics
import time

import psutil
import zmq
from bench_kernel import KernelKind

from .client import Msg, Run
from .config import MiB
from .kernels import Kernel, Lab
from .outcomes import Outcome, Results, format_duration

SURROGATE = "ok\udcff"  # a byte decoded with surrogateescape
REPLACED = "ok\ufffd"

# -- 1. output that cannot be UTF-8 ---------------------------------------------------------

OUTPUT_STEPS = [
    ("1a", f"print({SURROGATE!r})", "stream"),
    (
        "1b",
        "import threading\n"
        f"t = threading.Thread(target=print, args=({SURROGATE!r},)); t.start(); t.join()",
        "stream",
    ),
    (
        "1c",
        f"from IPython.display import display; display({{'text/plain': {SURROGATE!r}}}, raw=True)",
        "display",
    ),
    ("1d", f"raise ValueError({SURROGATE!r})", "error"),
    ("1e", "import os; os.write(1, b'ok\\xff')", "stream"),
]


def _shown(run: Run, where: str) -> tuple[str, list[str]]:
    """The text the step should have produced, and the wire problems seen with it."""
    if where == "stream":
        msgs = run.of_type("stream")
        return run.stream_text(), [p for m in msgs for p in m.problems]
    if where == "display":
        msgs = run.of_type("display_data")
        return "".join(m.content.get("data", {}).get("text/plain", "") for m in msgs), [
            p for m in msgs for p in m.problems
        ]
    msgs = run.of_type("error")
    evalue = run.reply.content.get("evalue", "") if run.reply else ""
    return evalue + "".join(m.content.get("evalue", "") for m in msgs), [
        p for m in msgs for p in m.problems
    ]


def _judge_text(text: str, problems: list[str]) -> tuple[str, bool]:
    if "invalid UTF-8" in problems:
        # jupyter_client decodes with errors="replace": it shows U+FFFD.
        return "output as invalid UTF-8 (read as U+FFFD)", False
    if REPLACED in text:
        return "output (U+FFFD)", True
    if SURROGATE in text or "lone surrogates" in problems:
        return "output with a lone surrogate (\\udcff escape: not Unicode)", False
    if not text:
        return "no output", False
    return f"output {text[:30]!r}", False


def scenario_output(lab: Lab, kind: KernelKind) -> Results:
    timeout = lab.cfg.reply_timeout
    out: Results = {}
    kernel, peer = lab.start(kind)
    for key, code, where in OUTPUT_STEPS:
        fresh = ""
        if not kernel.alive():
            kernel, peer = lab.start(kind)
            fresh = " (fresh kernel)"
        run = peer.execute(code, timeout)
        if run.reply is not None and where != "error":
            # Output a kernel forwards from a thread or a pipe may trail the idle.
            run.outputs = peer.iopub.setdefault(run.msg_id, [])
            peer.pump(2.0, lambda run=run, where=where: bool(_shown(run, where)[0]))
        shown, good = _judge_text(*_shown(run, where))
        expected_status = "error" if where == "error" else "ok"
        if run.reply is None:
            head = f"no reply in {timeout:g} s" if kernel.alive() else "kernel died"
            good = False
        else:
            head = f"{'error ' if where == 'error' else ''}reply + {shown}"
            good = good and run.status == expected_status
        after = kernel.still_runs(peer, timeout)
        good = good and after is None
        served = run.reply is not None and after is None
        text = f"{'ok: ' if served else ''}{head}; {after or '1+1 runs'}{fresh}"
        out[key] = Outcome(text, good, {"output": _shown(run, where)[0][:100]})
    fresh = ""
    if not kernel.alive():
        kernel, peer = lab.start(kind)
        fresh = " (fresh kernel: the one above died)"
    lines = 100_000
    received = []

    def count(msg: Msg) -> bool:
        if msg.msg_type == "stream":
            received.append(msg.content.get("text", ""))
            return True
        return False

    t0 = time.perf_counter()
    run = peer.execute(f"import os; os.system('seq {lines}')", 60.0, sink=count)
    text = "".join(received)
    if not text.endswith(f"{lines}\n"):  # fd output may trail the idle
        peer.pump(3.0, lambda: "".join(received).endswith(f"{lines}\n"), sink=count)
        text = "".join(received)
    elapsed = time.perf_counter() - t0
    complete = text == "".join(f"{i}\n" for i in range(1, lines + 1))
    if run.reply is None:
        text_out = "no reply in 60 s" if kernel.alive() else "kernel died"
    else:
        got = text.count("\n")
        text_out = (
            f"ok: all {lines:,} lines in {format_duration(elapsed)}"
            if complete
            else f"bad: {got:,} of {lines:,} lines"
        )
    out["1f"] = Outcome(text_out + fresh, complete, {"seconds": elapsed})
    return out


# -- 3. a stalled IOPub subscriber ------------------------------------------------------------


def _stalled_subscriber(lab: Lab, kernel: Kernel) -> zmq.Socket:
    """An IOPub SUB that subscribes, takes one message, never reads again."""
    sock = lab.ctx.socket(zmq.SUB)
    sock.linger = 0
    sock.rcvhwm = 1
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(f"tcp://127.0.0.1:{kernel.info['iopub_port']}")
    # akernel welcomes a new subscriber; ipykernel 7.4 does not: make it publish.
    deadline = time.monotonic() + 10
    while not sock.poll(200):
        if time.monotonic() > deadline:
            sock.close(linger=0)
            raise RuntimeError("the stalled subscriber never got a first message")
        kernel.peers[0].request("shell", "kernel_info_request")
    sock.recv_multipart()
    return sock


def scenario_stall(lab: Lab, kind: KernelKind) -> Results:
    cfg = lab.cfg
    out: Results = {}
    kernel, peer = lab.start(kind)
    stalled = _stalled_subscriber(lab, kernel)
    try:
        numbers: list[int] = []
        latencies: list[float] = []
        pending: list[str] = []

        def take(msg: Msg) -> bool:
            if msg.msg_type == "display_data":
                numbers.append(int(msg.content["data"]["text/plain"][:6]))
                return True
            return False

        last_probe = 0.0

        def probe_control() -> None:
            """A control kernel_info every 50 ms, whether the previous ones were answered."""
            nonlocal last_probe
            for msg_id in [m for m in pending if peer.reply(m) is not None]:
                latencies.append(peer.reply(msg_id).arrived - peer.sent[msg_id])
                pending.remove(msg_id)
            if time.perf_counter() - last_probe > 0.05:
                last_probe = time.perf_counter()
                pending.append(peer.request("control", "kernel_info_request"))

        code = (
            "from IPython.display import display\n"
            f"for i in range({cfg.displays}):\n"
            f"    display({{'text/plain': f'{{i:06d}}' + 'x' * {cfg.display_chars}}}, raw=True)\n"
        )
        run = peer.execute(code, 120.0, sink=take, tick=probe_control)
        elapsed = (
            max(m.arrived for m in run.outputs if m.msg_type == "status") - run.sent
            if run.complete
            else None
        )
        in_order = numbers == list(range(cfg.displays))
        if run.complete:
            head = "all" if in_order else f"{len(numbers):,} of"
            text = (
                f"{head} {cfg.displays:,} {'in order' if in_order else ''},"
                f" idle in {format_duration(elapsed)}"
            )
        else:
            text = f"no idle in 120 s ({len(numbers):,} of {cfg.displays:,} received)"
            if not kernel.alive():
                text = f"kernel died ({kernel.exit_text()}); " + text
        out["3a"] = Outcome(
            f"{'ok' if in_order and run.complete else 'bad'}: {text}",
            in_order and run.complete,
            {"received": len(numbers), "in_order": in_order, "seconds_to_idle": elapsed},
        )
        peer.pump(cfg.reply_timeout, lambda: all(peer.reply(m) for m in pending))
        for msg_id in pending:
            reply = peer.reply(msg_id)
            latencies.append(float("inf") if reply is None else reply.arrived - peer.sent[msg_id])
        if latencies:
            finite = [x for x in latencies if x != float("inf")]
            lost = len(latencies) - len(finite)
            text = (
                f"median {format_duration(statistics.median(latencies))}, max "
                f"{'no reply' if lost else format_duration(max(latencies))}"
                f" ({len(latencies)} requests)"
            )
            if not finite:
                text = f"no reply in {cfg.reply_timeout:g} s"
            out["3b"] = Outcome(text, None if finite and not lost else False, {"samples": finite})
        else:
            out["3b"] = Outcome("no sample", False)

        times: list[float] = []
        failures = 0
        for _ in range(cfg.roundtrips):
            peer.forget()
            run = peer.execute("pass", cfg.reply_timeout)
            if not run.complete or run.status != "ok":
                failures += 1
                if not kernel.alive() or failures > 3:
                    break
                continue
            times.append(max(run.reply.arrived, run.outputs[-1].arrived) - run.sent)
        if times:
            text = (
                f"median {format_duration(statistics.median(times))},"
                f" max {format_duration(max(times))}"
            )
            if failures:
                text += f"; {failures} of {cfg.roundtrips} not answered"
        else:
            text = f"none answered in {cfg.reply_timeout:g} s"
        out["3c"] = Outcome(text, None if not failures else False, {"samples": times})
    finally:
        stalled.close(linger=0)
        kernel.stop()

    kernel, peer = lab.start(kind)
    stalled = _stalled_subscriber(lab, kernel)
    try:
        process = psutil.Process(kernel.pid)
        before = process.memory_info().rss
        peak = before
        size = 0

        def count(msg: Msg) -> bool:
            nonlocal size
            if msg.msg_type == "stream":
                size += len(msg.content.get("text", ""))
                return True
            return False

        last_sample = 0.0

        def sample() -> None:
            nonlocal peak, last_sample
            if time.perf_counter() - last_sample > 0.02:
                last_sample = time.perf_counter()
                with contextlib.suppress(psutil.Error):
                    peak = max(peak, process.memory_info().rss)

        code = f"chunk = 'y' * {MiB}\nfor _ in range({cfg.print_mib}):\n    print(chunk)\n"
        t0 = time.perf_counter()
        run = peer.execute(code, 300.0, sink=count, tick=sample)
        elapsed = time.perf_counter() - t0
        expected = cfg.print_mib * (MiB + 1)
        grown = (peak - before) / 1e6
        if not run.complete:
            text = f"no idle in 300 s ({size / MiB:.0f} MiB received)"
            if not kernel.alive():
                text = f"kernel died ({kernel.exit_text()}); " + text
            good = False
        else:
            good = size == expected
            what = "complete" if good else f"{size / MiB:.1f} of {cfg.print_mib} MiB"
            text = f"{what} in {format_duration(elapsed)}, RSS +{grown:.0f} MB at peak"
        out["3d"] = Outcome(
            f"{'ok' if good else 'bad'}: {text}",
            good,
            {"bytes": size, "expected": expected, "seconds": elapsed, "rss_growth_mb": grown},
        )
    finally:
        stalled.close(linger=0)
    return out
