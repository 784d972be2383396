"""Scenarios 8 and 9, on kernels jupyter_client's KernelManager starts.

A signed execute replayed after a restart, and CurveZMQ against a plaintext client.
The kernelspecs they start are written to a private ``JUPYTER_PATH`` by the run.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zmq
from bench_kernel import KERNELS, KernelKind
from jupyter_client.manager import KernelManager
from zmq.utils.monitor import recv_monitor_message

from .kernels import Lab
from .outcomes import Outcome, Results, marker_code, marker_runs


def write_kernelspecs(root: Path) -> None:
    """A kernelspec ``hostile-NAME`` under ``root`` for each kernel, declaring CurveZMQ."""
    for kind in KERNELS.values():
        spec = root / "kernels" / f"hostile-{kind.name}"
        spec.mkdir(parents=True, exist_ok=True)
        (spec / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [sys.executable, *kind.argv],
                    "display_name": kind.label,
                    "language": "python",
                    "metadata": {"supported_encryption": ["curve"]},
                }
            )
        )


@contextlib.contextmanager
def managed_kernel(lab: Lab, kind: KernelKind, **kw: Any) -> Iterator[tuple[KernelManager, Any]]:
    km = lab.reaper.manage(KernelManager(kernel_name=f"hostile-{kind.name}", **kw))
    kc = None
    # The kernel's output goes to a log file, which a restart uses again.
    log = open(lab.path(f"{kind.name}-managed.log"), "wb")
    try:
        km.start_kernel(stdout=log, stderr=subprocess.STDOUT)
        kc = km.client()
        kc.start_channels()
        yield km, kc
    finally:
        if kc is not None:
            kc.stop_channels()
        with contextlib.suppress(Exception):
            if km.has_kernel:
                km.shutdown_kernel(now=False)
        lab.reaper.kill_manager(km)
        log.close()


def _shell_reply(kc: Any, msg_id: str, timeout: float) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # queue.Empty
            reply = kc.get_shell_msg(timeout=max(0.05, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply
    return None


def scenario_replay(lab: Lab, kind: KernelKind) -> Results:
    timeout = lab.cfg.reply_timeout
    runs = lab.path("replay-runs")
    with managed_kernel(lab, kind) as (km, kc):
        kc.wait_for_ready(timeout=lab.cfg.startup_timeout)
        msg = kc.session.msg(
            "execute_request",
            {"code": marker_code(runs, "a"), "silent": False, "store_history": False},
        )
        frames = kc.session.serialize(msg)
        kc.shell_channel.socket.send_multipart(frames)
        if _shell_reply(kc, msg["header"]["msg_id"], timeout) is None:
            return {"8": Outcome("the first execute was not answered", False)}
        km.restart_kernel(now=False)
        kc.wait_for_ready(timeout=lab.cfg.startup_timeout)
        kc.shell_channel.socket.send_multipart(frames)
        sync = kc.execute("pass")
        answered = _shell_reply(kc, sync, timeout) is not None
        time.sleep(0.3)
        count = marker_runs(runs)
        if count == 1:
            text, good = "ran once: the replay was refused", True
        else:
            text, good = f"RAN {count} TIMES", count == 1
        if not answered:
            text += f" (no reply to the next request in {timeout:g} s)"
            good = False
        return {"8": Outcome(text, good, {"runs": count})}


_HANDSHAKE_ENDS = {
    zmq.EVENT_HANDSHAKE_SUCCEEDED,
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
    zmq.EVENT_HANDSHAKE_FAILED_AUTH,
}


def _plaintext_execute(
    lab: Lab, kc: Any, info: dict[str, Any], marker: Path
) -> tuple[bool | None, bool]:
    """Send a correctly signed execute from a socket without CurveZMQ keys: whether
    ZeroMQ's handshake succeeded (None: no verdict in time), whether a reply came."""
    sock = lab.ctx.socket(zmq.DEALER)
    sock.linger = 0
    monitor = sock.get_monitor_socket()
    handshake: bool | None = None
    replied = False
    try:
        sock.connect(f"tcp://{info['ip']}:{info['shell_port']}")
        msg = kc.session.msg(
            "execute_request",
            {"code": marker_code(marker), "silent": False, "store_history": False},
        )
        sock.send_multipart(kc.session.serialize(msg))
        deadline = time.monotonic() + lab.cfg.reply_timeout
        while time.monotonic() < deadline and not replied and not marker_runs(marker):
            while handshake is None and monitor.poll(0):
                event = recv_monitor_message(monitor)["event"]
                if event in _HANDSHAKE_ENDS:
                    handshake = event == zmq.EVENT_HANDSHAKE_SUCCEEDED
            if handshake is False:
                break
            replied = bool(sock.poll(100))
        time.sleep(0.2)  # code that runs anyway writes its marker by now
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)
    return handshake, replied


def scenario_curve(lab: Lab, kind: KernelKind) -> Results:
    cfg = lab.cfg
    out: Results = {}
    with managed_kernel(lab, kind, transport_encryption="required") as (km, kc):
        info = km.get_connection_info()
        if not info.get("curve_publickey"):
            return {"9a": Outcome("no curve keys provisioned", False)}
        try:
            kc.wait_for_ready(timeout=30)
            msg_id = kc.execute("1+1")
            reply = _shell_reply(kc, msg_id, cfg.reply_timeout)
            ok = reply is not None and reply["content"]["status"] == "ok"
            out["9a"] = Outcome("execute works (encrypted)" if ok else "execute failed", ok)
        except RuntimeError:
            alive = km.is_alive()
            out["9a"] = Outcome(
                f"no kernel_info reply in 30 s ({'alive' if alive else 'kernel exited'})", False
            )
        marker = lab.path("plaintext-ran")
        handshake, replied = _plaintext_execute(lab, kc, info, marker)
        ran = marker_runs(marker) > 0
        if ran:
            out["9b"] = Outcome("RAN CODE from a plaintext client", False)
        elif handshake is False:
            out["9b"] = Outcome("refused at the ZeroMQ handshake, code not run", True)
        else:
            what = "answered, code not run" if replied else "no reply, code not run"
            out["9b"] = Outcome(what, not replied)
    return out
