"""Scenarios 2, 5 and 6: requests nested 5,000 deep, fields handlers fail on, JSON with NaN."""

from __future__ import annotations

import json

from bench_kernel import KernelKind

from .client import Msg
from .kernels import Kernel, Lab
from .outcomes import Outcome, Results, marker_code, marker_runs

# -- 2. deep nesting ------------------------------------------------------------------------

DEPTH = 5_000


def _deep(prefix: bytes) -> bytes:
    return prefix + b'"x": ' + b"[" * DEPTH + b"1234567890123456789012" + b"]" * DEPTH + b"}"


def scenario_deep(lab: Lab, kind: KernelKind) -> Results:
    timeout = lab.cfg.reply_timeout
    out: Results = {}
    for key, channel in (("2a", "shell"), ("2b", "control")):
        kernel, peer = lab.start(kind)
        marker = lab.path("deep-ran")
        if channel == "shell":
            code = json.dumps(marker_code(marker)).encode()
            body = _deep(
                b'{"code": ' + code + b', "silent": false, "store_history": false,'
                b' "user_expressions": {}, "allow_stdin": false, "stop_on_error": true, '
            )
            msg_id, frames = peer.build("execute_request", body)
        else:
            msg_id, frames = peer.build("kernel_info_request", _deep(b"{"))
        peer.send(channel, frames, msg_id)
        # Requests on one channel are handled in order: once the next one is
        # answered, the deep one was handled or dropped.
        sentinel = peer.request(channel, "kernel_info_request")
        sentinel_reply = peer.wait_reply(sentinel, timeout)
        peer.pump(0.5)
        answered = peer.reply(msg_id) is not None or marker_runs(marker) > 0
        checks = {}
        for other in ("shell", "control"):
            probe = peer.request(other, "kernel_info_request")
            checks[other] = peer.wait_reply(probe, timeout) is not None
        if not kernel.alive():
            text, good = f"kernel died ({kernel.exit_text()})", False
        elif not checks["control"] and checks["shell"]:
            text, good = "control thread dead (control no longer answers)", False
        elif not checks["shell"]:
            text, good = "shell no longer answers", False
        else:
            what = "executed" if marker_runs(marker) else "answered" if answered else "dropped"
            text = f"{what}; kernel alive, shell and control answer"
            good = True
            if sentinel_reply is None:
                text += f" (the next {channel} request was not answered in {timeout:g} s)"
                good = False
        out[key] = Outcome(text, good)
        kernel.stop()
    return out


# -- 5. requests whose handler fails --------------------------------------------------------

FAILING = [
    (
        "5a",
        "history_request",
        {"hist_access_type": "tail", "n": "ten", "output": False, "raw": True},
    ),
    (
        "5b",
        "history_request",
        {"hist_access_type": "tail", "n": 2**63, "output": False, "raw": True},
    ),
    ("5c", "complete_request", {"code": "pri", "cursor_pos": 99}),
]


def _describe_reply(reply: Msg | None, timeout: float, kernel: Kernel) -> tuple[str, bool]:
    if reply is None:
        if not kernel.alive():
            return f"kernel died ({kernel.exit_text()})", False
        return f"no reply in {timeout:g} s", False
    status = reply.content.get("status")
    if status == "error":
        return f"error reply: {reply.content.get('ename')}", True
    extra = ""
    if "matches" in reply.content:
        extra = f" ({len(reply.content['matches'])} matches)"
    elif "history" in reply.content:
        extra = f" ({len(reply.content['history'])} entries)"
    return f"{status} reply{extra}", status in ("ok", "error")


def scenario_failing_handlers(lab: Lab, kind: KernelKind) -> Results:
    timeout = lab.cfg.reply_timeout
    kernel, peer = lab.start(kind)
    sent = [(key, peer.request("shell", t, content)) for key, t, content in FAILING]
    # All three are sent at once: a kernel that never answers costs one timeout, not three.
    peer.pump(timeout, lambda: all(peer.reply(m) is not None for _, m in sent))
    after = kernel.still_runs(peer, timeout)
    out: Results = {}
    for key, msg_id in sent:
        text, good = _describe_reply(peer.reply(msg_id), timeout, kernel)
        out[key] = Outcome(text + ("" if after is None else f"; then {after}"), good and not after)
    return out


# -- 6. JSON the reference decoder accepts --------------------------------------------------

TOKENS = ["NaN", "Infinity", "1e400"]


def scenario_json(lab: Lab, kind: KernelKind) -> Results:
    timeout = lab.cfg.reply_timeout
    kernel, peer = lab.start(kind)
    markers = {token: lab.path(f"json-{token}") for token in TOKENS}
    for token in TOKENS:
        body = (
            '{"code": ' + json.dumps(marker_code(markers[token])) + ', "silent": false,'
            ' "store_history": false, "user_expressions": {}, "allow_stdin": false,'
            f' "extra": {token}}}'
        ).encode()
        msg_id, frames = peer.build("execute_request", body)
        peer.send("shell", frames, msg_id)
    sentinel = peer.request("shell", "kernel_info_request")
    peer.pump(timeout, lambda: peer.reply(sentinel) is not None)
    peer.pump(0.5)
    ran = [t for t in TOKENS if marker_runs(markers[t])]
    if not kernel.alive():
        return {"6": Outcome(f"kernel died ({kernel.exit_text()})", False)}
    dropped = [t for t in TOKENS if t not in ran]
    text = f"executed {len(ran)} of {len(TOKENS)}"
    if dropped:
        text += f" (dropped: {', '.join(dropped)})"
    return {"6": Outcome(text, not dropped)}
