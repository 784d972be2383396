"""Scenarios 4 and 7: connection files a kernel must refuse or repair.

Without a key, without ports, with an empty key, and with a signature scheme that
cannot sign.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench_kernel import KernelKind

from .kernels import PORTS, Kernel, Lab, connection_info
from .outcomes import Outcome, Results, marker_code, marker_runs

# -- 4. connection files --------------------------------------------------------------------


def _unsigned_execute(
    kernel: Kernel, marker: Path, timeout: float, sentinel_key: bytes | None
) -> bool:
    """Send an unsigned execute that writes ``marker``; whether it ran. With the key the
    kernel uses, a signed kernel_info sent behind it shows when it was handled."""
    peer = kernel.peer(key=b"", iopub=False)
    msg_id = peer.request(
        "shell",
        "execute_request",
        {"code": marker_code(marker), "silent": False, "store_history": False},
    )
    if sentinel_key:
        sentinel, frames = peer.build("kernel_info_request", {}, key=sentinel_key)
        peer.send("shell", frames, sentinel)
        peer.pump(timeout, lambda: peer.reply(sentinel) is not None or marker_runs(marker) > 0)
        peer.pump(0.5)
    else:
        peer.pump(timeout, lambda: peer.reply(msg_id) is not None or marker_runs(marker) > 0)
    return marker_runs(marker) > 0


def _last_line(kernel: Kernel, width: int = 72) -> str:
    """The last line of the kernel's log, the connection file's path shown as FILE."""
    lines = [line for line in kernel.log().splitlines() if line.strip()]
    if not lines:
        return "(nothing)"
    line = lines[-1].replace(str(kernel.connection_file), "FILE")
    return repr(line if len(line) <= width else line[: width - 3] + "...")


def scenario_connection_files(lab: Lab, kind: KernelKind) -> Results:
    cfg = lab.cfg
    out: Results = {}

    # a. no key
    info = connection_info()
    del info["key"]
    kernel = lab.launch(kind, info)
    if not kernel.wait_listening(info["shell_port"], cfg.startup_timeout):
        out["4a"] = Outcome(f"did not start ({kernel.exit_text()}): {_last_line(kernel)}", False)
    else:
        # A key written back may come just after the kernel binds.
        deadline = time.monotonic() + 3.0
        while not (written := kernel.file_info().get("key")) and time.monotonic() < deadline:
            time.sleep(0.05)
        ran = _unsigned_execute(
            kernel, lab.path("nokey-ran"), cfg.reply_timeout, (written or "").encode()
        )
        signed = None
        if written:
            peer = kernel.peer(info={**info, "key": written}, iopub=False)
            probe = peer.request("shell", "kernel_info_request")
            signed = peer.wait_reply(probe, cfg.reply_timeout) is not None
        text = "RAN UNSIGNED CODE" if ran else "unsigned execute refused"
        if written:
            text += f"; key written back ({len(written)} characters)"
            text += ", a client with it is served" if signed else ", yet a client with it is not"
        else:
            text += "; no key written back"
        out["4a"] = Outcome(text, not ran and bool(written) and bool(signed))
    kernel.stop()

    # b. no ports
    info = {k: v for k, v in connection_info().items() if k not in PORTS}
    kernel = lab.launch(kind, info)
    deadline = time.monotonic() + cfg.startup_timeout
    written = {}
    while time.monotonic() < deadline and kernel.alive():
        written = kernel.file_info()
        if all(written.get(p) for p in PORTS):
            break
        time.sleep(0.05)
    if all(written.get(p) for p in PORTS):
        peer = kernel.peer(info=written, iopub=False)
        probe = peer.request("shell", "kernel_info_request")
        served = peer.wait_reply(probe, cfg.startup_timeout) is not None
        text = "ports written back; " + ("a client connects" if served else "no client is served")
        out["4b"] = Outcome(text, served)
    elif not kernel.alive():
        out["4b"] = Outcome(f"refused ({kernel.exit_text()}): {_last_line(kernel)}", None)
    else:
        out["4b"] = Outcome("running; no ports written back: no client can connect", False)
    kernel.stop()

    # c. an empty key
    info = {**connection_info(), "key": ""}
    kernel = lab.launch(kind, info)
    if kernel.wait_listening(info["shell_port"], cfg.startup_timeout):
        ran = _unsigned_execute(kernel, lab.path("emptykey-ran"), cfg.reply_timeout, None)
        out["4c"] = Outcome(
            "starts; RAN UNSIGNED CODE" if ran else "starts; unsigned execute not run", not ran
        )
    else:
        kernel.wait_exit(10)
        lines = len([line for line in kernel.log().splitlines() if line.strip()])
        out["4c"] = Outcome(
            f"refused to start ({kernel.exit_text()}, {lines} line{'s' * (lines != 1)}): "
            f"{_last_line(kernel)}",
            lines == 1,
        )
    kernel.stop()
    return out


# -- 7. a signature scheme that cannot sign -------------------------------------------------


def scenario_shake(lab: Lab, kind: KernelKind) -> Results:
    info = {**connection_info(), "signature_scheme": "hmac-shake_128"}
    kernel = lab.launch(kind, info)
    listening = kernel.wait_listening(info["shell_port"], 20.0)
    if listening:
        # It serves: a message signed any way it can be (sha256 with the key).
        peer = kernel.peer(info={**info, "signature_scheme": "hmac-sha256"}, iopub=False)
        peer.request("shell", "kernel_info_request")
        peer.pump(3.0)
    status = kernel.wait_exit(5.0)
    log = kernel.log()
    lines = [line for line in log.splitlines() if line.strip()]
    traceback = "Traceback" in log
    if status is None:
        what = "runs" + (" (tracebacks in its log)" if traceback else "")
        return {"7": Outcome(what + f"; {len(lines)} log lines", False)}
    when = "after binding" if listening else "at start"
    if traceback:
        text = f"traceback {when} ({kernel.exit_text()}, {len(lines)} log lines)"
        return {"7": Outcome(text, False)}
    return {
        "7": Outcome(f"one-line error {when} ({kernel.exit_text()}): {_last_line(kernel)}", True)
    }
