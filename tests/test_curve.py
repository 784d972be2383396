"""CurveZMQ: kernels started by jupyter_client with transport encryption, and
embedded kernels that encrypt their own connection file.

Encryption is checked where it happens: ZeroMQ's handshake. A client socket
without the kernel's keys must fail the handshake on every one of the five
sockets (heartbeat included), and a plaintext execute must never run.
"""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from queue import Empty

import anyio
import pytest
import zmq
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import KernelManager
from zmq.utils.monitor import recv_monitor_message

import akernel

from .conftest import kernel_name, retry_port_clash, stop_kernel
from .utils import (
    TIMEOUT,
    collect_iopub,
    execute,
    get_reply,
    run_ok,
    stream_text,
    wait_for_status,
)

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CurveZMQ"),
]

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
_CLIENT_TYPES = {
    "shell": zmq.DEALER,
    "iopub": zmq.SUB,
    "stdin": zmq.DEALER,
    "control": zmq.DEALER,
    "hb": zmq.REQ,
}
_HANDSHAKE_ENDS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED,
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
    zmq.EVENT_HANDSHAKE_FAILED_AUTH,
)


def start_curve_kernel(backend: str) -> tuple[KernelManager, BlockingKernelClient]:
    """A kernel whose manager requires transport encryption (message interrupts,
    so that an interrupt goes over the encrypted control channel)."""

    def start() -> tuple[KernelManager, BlockingKernelClient]:
        km = KernelManager(
            kernel_name=kernel_name(backend, "message"), transport_encryption="required"
        )
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
        except BaseException:
            stop_kernel(km, kc)
            raise
        return km, kc

    return retry_port_clash(start)


@pytest.fixture(scope="module")
def curve_kernel(backend: str) -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    km, kc = start_curve_kernel(backend)
    try:
        yield km, kc
    finally:
        stop_kernel(km, kc)


def connection_info(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def handshake_succeeds(info: dict, channel: str, *, curve: bool) -> bool:
    """Connect a client socket to ``channel``, with the kernel's public key as
    server key (``curve``) or in plain text: whether the ZMTP handshake succeeds."""
    context = zmq.Context.instance()
    sock = context.socket(_CLIENT_TYPES[channel])
    sock.linger = 0
    if curve:
        public, secret = zmq.curve_keypair()
        sock.curve_publickey, sock.curve_secretkey = public, secret
        sock.curve_serverkey = info["curve_publickey"].encode()
    monitor = sock.get_monitor_socket()
    try:
        sock.connect(f"tcp://{info['ip']}:{info[f'{channel}_port']}")
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if not monitor.poll(1000):
                continue
            event = recv_monitor_message(monitor)["event"]
            if event in _HANDSHAKE_ENDS:
                return event == zmq.EVENT_HANDSHAKE_SUCCEEDED
        pytest.fail(f"no handshake on {channel} within {TIMEOUT} s")
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)


def plaintext_client(info: dict) -> BlockingKernelClient:
    """A client with the right ports and HMAC key but no CurveZMQ keys."""
    plain = {k: v for k, v in info.items() if not k.startswith("curve_")}
    client = BlockingKernelClient()
    client.load_connection_info(plain)
    assert client.curve_publickey is None
    return client


def assert_plaintext_execute_never_runs(info: dict, good: BlockingKernelClient, marker: Path):
    plain = plaintext_client(info)
    plain.start_channels(iopub=False, stdin=False, hb=False, control=False)
    # The handshake fails, so the socket may have no peer to queue for when the
    # request goes: a send that blocks for ever, unless bounded.
    plain.shell_channel.socket.sndtimeo = 3_000
    try:
        try:
            plain.execute(f"open({str(marker)!r}, 'w').write('ran')")
        except zmq.Again:
            pass  # not even queued: it cannot run either
        # The encrypted client keeps working meanwhile.
        reply, outputs = execute(good, "print('still encrypted')")
        assert reply["content"]["status"] == "ok"
        assert stream_text(outputs) == "still encrypted\n"
        with pytest.raises(Empty):
            plain.get_shell_msg(timeout=3)
        assert not marker.exists()
    finally:
        plain.stop_channels()


# -- a kernel started by jupyter_client with transport_encryption="required" ------------------


def test_manager_provisioned_keys(curve_kernel):
    km, _ = curve_kernel
    info = connection_info(km.connection_file)
    assert len(info["curve_publickey"]) == len(info["curve_secretkey"]) == 40
    assert km.curve_publickey == info["curve_publickey"].encode()


def test_execute_with_output(curve_kernel):
    _, kc = curve_kernel
    outputs = run_ok(kc, "print('over curve')\n6 * 7")
    assert stream_text(outputs) == "over curve\n"
    results = [m for m in outputs if m["msg_type"] == "execute_result"]
    assert results[0]["content"]["data"]["text/plain"] == "42"


def test_input_over_stdin(curve_kernel):
    _, kc = curve_kernel
    msg_id = kc.execute("answer = input('name? ')\nprint('hello', answer)", allow_stdin=True)
    request = kc.get_stdin_msg(timeout=TIMEOUT)
    assert request["msg_type"] == "input_request"
    assert request["content"]["prompt"] == "name? "
    kc.input("curve")
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    assert stream_text(collect_iopub(kc, msg_id)) == "hello curve\n"


def test_heartbeat_answers_encrypted_pings(curve_kernel):
    km, _ = curve_kernel
    info = connection_info(km.connection_file)
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.linger = 0
    public, secret = zmq.curve_keypair()
    sock.curve_publickey, sock.curve_secretkey = public, secret
    sock.curve_serverkey = info["curve_publickey"].encode()
    try:
        sock.connect(f"tcp://{info['ip']}:{info['hb_port']}")
        sock.send(b"ping")
        assert sock.poll(TIMEOUT * 1000), "no heartbeat echo"
        assert sock.recv() == b"ping"
    finally:
        sock.close(linger=0)


@pytest.mark.parametrize("channel", CHANNELS)
def test_plaintext_handshake_refused(curve_kernel, channel):
    km, _ = curve_kernel
    info = connection_info(km.connection_file)
    assert not handshake_succeeds(info, channel, curve=False)
    assert handshake_succeeds(info, channel, curve=True)


def test_plaintext_execute_never_runs(curve_kernel, tmp_path):
    km, kc = curve_kernel
    assert_plaintext_execute_never_runs(connection_info(km.connection_file), kc, tmp_path / "m")


def test_interrupt_over_control(curve_kernel):
    km, kc = curve_kernel
    msg_id = kc.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(60)")
    wait_for_status(kc, msg_id, "busy")
    deadline = time.monotonic() + TIMEOUT
    while True:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["msg_type"] == "stream" and "sleeping" in msg["content"]["text"]:
            break
        assert time.monotonic() < deadline
    km.interrupt_kernel()  # interrupt_mode "message": an interrupt_request on control
    reply = get_reply(kc, msg_id)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    # Requests sent before the failed cell's idle would be aborted (stop_on_error).
    wait_for_status(kc, msg_id, "idle")
    assert stream_text(run_ok(kc, "print('after')")) == "after\n"


def test_shutdown_over_control(backend):
    km, kc = start_curve_kernel(backend)
    try:
        msg_id = kc.shutdown()
        reply = get_reply(kc, msg_id, channel="control")
        assert reply["content"]["status"] == "ok"
        deadline = time.monotonic() + TIMEOUT
        while km.is_alive():
            assert time.monotonic() < deadline, "the kernel did not exit"
            time.sleep(0.05)
        assert km.provisioner.process.returncode == 0
    finally:
        stop_kernel(km, kc)


# -- an embedded kernel that encrypts its own connection file --------------------------------


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def _connect(path: str) -> BlockingKernelClient:
    kc = BlockingKernelClient(connection_file=path)
    kc.load_connection_file()
    kc.start_channels()
    kc.wait_for_ready(timeout=TIMEOUT)
    return kc


@pytest.mark.anyio
async def test_embedded_kernel_with_curve(anyio_backend, tmp_path):
    async with akernel.embedded_kernel(curve=True, user_ns={"host_value": 41}) as kernel:
        info = connection_info(kernel.connection_file)
        assert len(info["curve_publickey"]) == 40
        kc = await anyio.to_thread.run_sync(_connect, kernel.connection_file)
        try:
            outputs = await anyio.to_thread.run_sync(run_ok, kc, "print(host_value + 1)")
            assert stream_text(outputs) == "42\n"
            for channel in CHANNELS:
                refused = not await anyio.to_thread.run_sync(
                    lambda c=channel: handshake_succeeds(info, c, curve=False)
                )
                assert refused, channel
            await anyio.to_thread.run_sync(
                assert_plaintext_execute_never_runs, info, kc, tmp_path / "marker"
            )
        finally:
            await anyio.to_thread.run_sync(kc.stop_channels)


@pytest.mark.anyio
async def test_embedded_kernel_without_curve_by_default(anyio_backend):
    async with akernel.embedded_kernel() as kernel:
        info = connection_info(kernel.connection_file)
        assert not any(name.startswith("curve_") for name in info)
        assert await anyio.to_thread.run_sync(
            lambda: handshake_succeeds(info, "shell", curve=False)
        )


# -- akernel launch --curve, writing its own connection file ----------------------------------


def test_launch_with_curve_writes_keys(backend, tmp_path):
    from .launched import LaunchedKernel

    path = tmp_path / "new-kernel.json"
    kernel = LaunchedKernel("-f", str(path), "--curve", "--backend", backend, log_dir=tmp_path)
    try:
        info = kernel.wait_for_file(path, lambda d: d.get("hb_port"))
        assert len(info["curve_publickey"]) == 40 and len(info["curve_secretkey"]) == 40
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        kc = kernel.connect(path)
        assert kc.curve_publickey == info["curve_publickey"].encode()
        assert stream_text(run_ok(kc, "print('launched encrypted')")) == "launched encrypted\n"
        assert not handshake_succeeds(info, "hb", curve=False)
        assert_plaintext_execute_never_runs(info, kc, tmp_path / "marker")
        assert "without encryption" not in kernel.stderr
        # jupyter console cannot encrypt (jupyter_client 8.10): it is not suggested.
        assert f"loads {path}" in kernel.stderr and "--existing" not in kernel.stderr
        assert kernel.shutdown() == 0
        assert not path.exists()
    finally:
        kernel.close()
