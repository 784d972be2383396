"""The transport layer: AsyncSocket, Mailbox, connection files, binding, heartbeat."""

from __future__ import annotations

import json
import os
import random
import socket
import stat
import threading
import time
from collections.abc import Iterator

import anyio
import pytest
import zmq
from jupyter_client.connect import write_connection_file

from akernel.transport import (
    AsyncSocket,
    ConnectionError_,
    ConnectionInfo,
    Heartbeat,
    Mailbox,
    bind_kernel_sockets,
)

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
RECV_TIMEOUT = 10


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def context() -> Iterator[zmq.Context]:
    ctx = zmq.Context()
    try:
        yield ctx
    finally:
        ctx.destroy(linger=0)


def _pair(ctx: zmq.Context, kind: str, transport: str) -> tuple[zmq.Socket, zmq.Socket]:
    """A connected (a, b) pair: PAIR/PAIR or DEALER(a)/ROUTER(b)."""
    a_type, b_type = (zmq.PAIR, zmq.PAIR) if kind == "pair" else (zmq.DEALER, zmq.ROUTER)
    b = ctx.socket(b_type)
    a = ctx.socket(a_type)
    if transport == "inproc":
        address = f"inproc://test-{id(b)}"
        b.bind(address)
    else:
        port = b.bind_to_random_port("tcp://127.0.0.1")
        address = f"tcp://127.0.0.1:{port}"
    a.connect(address)
    return a, b


@pytest.fixture(params=[("pair", "inproc"), ("pair", "tcp"), ("dealer", "inproc")])
def pair(request, context) -> tuple[zmq.Socket, zmq.Socket]:
    kind, transport = request.param
    return _pair(context, kind, transport)


def _as_bytes(frames: list) -> list[bytes]:
    return [f.bytes if isinstance(f, zmq.Frame) else bytes(f) for f in frames]


def _payload(frames: list) -> list[bytes]:
    """The frames of a message without a ROUTER's identity frame."""
    data = _as_bytes(frames)
    return data[1:] if len(data) > 1 and data[0][:1] == b"\x00" else data


async def _recv(sock: AsyncSocket) -> list:
    with anyio.fail_after(RECV_TIMEOUT):
        return await sock.recv_multipart()


# -- AsyncSocket -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_send_and_receive(pair):
    a, b = AsyncSocket(pair[0]), AsyncSocket(pair[1])
    a.send_multipart([b"hello", b"world"])
    frames = await _recv(b)
    assert _payload(frames) == [b"hello", b"world"]
    if b.socket.type == zmq.ROUTER:
        b.send_multipart([_as_bytes(frames)[0], b"reply"])
    else:
        b.send_multipart([b"reply"])
    assert _payload(await _recv(a)) == [b"reply"]


@pytest.mark.anyio
@pytest.mark.parametrize("identities", [[], [b"peer"]], ids=["no-identity", "identity"])
async def test_jupyter_message_frames(context, identities):
    """A Jupyter message arrives intact: small frames as bytes, buffers zero-copy."""
    from akernel.wire import Session

    a_raw, b_raw = _pair(context, "pair", "inproc")
    a, b = AsyncSocket(a_raw), AsyncSocket(b_raw)
    session = Session(b"key")
    buffers = [b"buffer-one", b"", b"buffer-three" * 1000]
    a.send_multipart(
        session.serialize("comm_msg", {"data": {}}, buffers=buffers, identities=identities)
    )
    frames = await _recv(b)
    n_small = len(identities) + 6
    assert all(isinstance(f, bytes) for f in frames[:n_small])
    assert all(isinstance(f, zmq.Frame) for f in frames[n_small:])
    msg = session.deserialize(frames)
    assert msg.identities == identities
    assert msg.content == {"data": {}}
    assert [bytes(f) for f in msg.buffers] == buffers


@pytest.mark.anyio
async def test_receive_waits_for_a_later_send(pair):
    a, b = AsyncSocket(pair[0]), AsyncSocket(pair[1])
    received = []

    async def receiver() -> None:
        received.append(_payload(await _recv(b)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(receiver)
        await anyio.sleep(0.05)
        a.send_multipart([b"late"])
    assert received == [[b"late"]]


@pytest.mark.anyio
async def test_cancelled_receive_loses_nothing(pair):
    a, b = AsyncSocket(pair[0]), AsyncSocket(pair[1])
    with anyio.move_on_after(0.05) as scope:
        await b.recv_multipart()
    assert scope.cancelled_caught
    a.send_multipart([b"after-cancel"])
    assert _payload(await _recv(b)) == [b"after-cancel"]


@pytest.mark.anyio
async def test_receive_cancelled_by_another_task(pair):
    a, b = AsyncSocket(pair[0]), AsyncSocket(pair[1])
    async with anyio.create_task_group() as tg:

        async def receive() -> None:
            await b.recv_multipart()
            pytest.fail("nothing was sent")

        tg.start_soon(receive)
        await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    a.send_multipart([b"one"])
    a.send_multipart([b"two"])
    assert _payload(await _recv(b)) == [b"one"]
    assert _payload(await _recv(b)) == [b"two"]


@pytest.mark.anyio
async def test_messages_survive_receives_cancelled_at_random_points(pair):
    """Send N while receives are cancelled at random moments; all N arrive, in order."""
    a, b = AsyncSocket(pair[0]), AsyncSocket(pair[1])
    n = 300
    rng = random.Random(1234)
    received: list[bytes] = []

    async def sender() -> None:
        for i in range(n):
            a.send_multipart([b"%d" % i])
            if rng.random() < 0.3:
                await anyio.sleep(rng.choice([0, 0.0005, 0.002]))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            while len(received) < n:
                frames = None
                with anyio.move_on_after(rng.choice([0, 0, 0.0001, 0.001, 0.003])):
                    frames = await b.recv_multipart()
                if frames is not None:
                    received.append(_payload(frames)[0])
    assert received == [b"%d" % i for i in range(n)]


@pytest.mark.anyio
async def test_messages_from_another_thread_survive_cancelled_receives(context):
    """The same, with a sender thread: the socket's edge-triggered fd is raced for real."""
    a_raw, b_raw = _pair(context, "pair", "tcp")
    b = AsyncSocket(b_raw)
    n = 300
    rng = random.Random(99)
    delays = [rng.choice([0, 0, 0, 0.0002, 0.001]) for _ in range(n)]

    def send_all() -> None:
        for i, delay in enumerate(delays):
            a_raw.send_multipart([b"%d" % i])
            if delay:
                time.sleep(delay)

    thread = threading.Thread(target=send_all)
    thread.start()
    received: list[bytes] = []
    try:
        with anyio.fail_after(60):
            while len(received) < n:
                frames = None
                with anyio.move_on_after(rng.choice([0, 0.0001, 0.0005, 0.002])):
                    frames = await b.recv_multipart()
                if frames is not None:
                    received.append(_payload(frames)[0])
    finally:
        thread.join(10)
    assert received == [b"%d" % i for i in range(n)]


@pytest.mark.anyio
async def test_send_on_receiving_socket_does_not_stall_the_receiver(context):
    """A task waiting to receive on a socket still wakes when another task sends on it."""
    dealer_raw, router_raw = _pair(context, "dealer", "tcp")
    client, server = AsyncSocket(dealer_raw), AsyncSocket(router_raw)
    n = 200
    replies: list[bytes] = []

    async def echo() -> None:
        while True:
            ident, body = _as_bytes(await server.recv_multipart())
            server.send_multipart([ident, b"re:" + body])

    async def receive_replies() -> None:
        while len(replies) < n:
            replies.append(_as_bytes(await client.recv_multipart())[0])

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(echo)
            tg.start_soon(receive_replies)
            await anyio.sleep(0.01)
            for i in range(n):
                client.send_multipart([b"%d" % i])
                if i % 7 == 0:
                    await anyio.sleep(0)
            while len(replies) < n:
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    assert replies == [b"re:%d" % i for i in range(n)]


@pytest.mark.anyio
async def test_recv_multipart_nowait(pair):
    a, b = AsyncSocket(pair[0]), AsyncSocket(pair[1])
    assert b.recv_multipart_nowait() is None
    a.send_multipart([b"ready"])
    assert b.socket.poll(RECV_TIMEOUT * 1000, zmq.POLLIN)
    frames = b.recv_multipart_nowait()
    assert frames is not None
    assert _payload(frames) == [b"ready"]
    assert b.recv_multipart_nowait() is None
    a.send_multipart([b"copied"])
    assert b.socket.poll(RECV_TIMEOUT * 1000, zmq.POLLIN)
    assert _payload(b.recv_multipart_nowait()) == [b"copied"]


@pytest.mark.anyio
async def test_close(context):
    a_raw, _ = _pair(context, "pair", "inproc")
    a = AsyncSocket(a_raw)
    a.close()
    assert a.socket.closed


# -- Mailbox ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_mailbox_post_from_thread_runs_in_loop():
    mailbox = Mailbox()
    loop_thread = threading.get_ident()
    calls: list[tuple[int, int]] = []
    done = anyio.Event()

    def make_call(i: int):
        def call() -> None:
            calls.append((i, threading.get_ident()))
            if i == 19:
                done.set()

        return call

    def poster() -> None:
        for i in range(20):
            mailbox.post(make_call(i))

    try:
        with anyio.fail_after(RECV_TIMEOUT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(mailbox.serve)
                thread = threading.Thread(target=poster)
                thread.start()
                await done.wait()
                tg.cancel_scope.cancel()
        thread.join(5)
    finally:
        mailbox.close()
    assert [i for i, _ in calls] == list(range(20))
    assert {ident for _, ident in calls} == {loop_thread}


@pytest.mark.anyio
async def test_mailbox_posted_while_loop_blocked_runs_later():
    mailbox = Mailbox()
    ran = anyio.Event()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(mailbox.serve)
            await anyio.sleep(0)
            thread = threading.Thread(target=mailbox.post, args=(ran.set,))
            # The loop is blocked while the thread posts: post must not wait for it.
            thread.start()
            thread.join(10)
            assert not thread.is_alive()
            assert not ran.is_set()
            with anyio.fail_after(RECV_TIMEOUT):
                await ran.wait()
            tg.cancel_scope.cancel()
    finally:
        mailbox.close()


@pytest.mark.anyio
async def test_mailbox_many_posts_do_not_block():
    mailbox = Mailbox()
    count = 0

    def bump() -> None:
        nonlocal count
        count += 1

    try:
        # Far more posts than the wake-up pipe can hold bytes.
        thread = threading.Thread(target=lambda: [mailbox.post(bump) for _ in range(200_000)])
        thread.start()
        thread.join(30)
        assert not thread.is_alive()
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(mailbox.serve)
                while count < 200_000:
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
    finally:
        mailbox.close()
    assert count == 200_000


def test_mailbox_post_after_close_is_ignored():
    mailbox = Mailbox()
    mailbox.close()
    mailbox.post(lambda: pytest.fail("must not run"))
    mailbox.close()


# -- ConnectionInfo -------------------------------------------------------------------------


def _info(**kw) -> ConnectionInfo:
    defaults = dict(
        shell_port=50001,
        iopub_port=50002,
        stdin_port=50003,
        control_port=50004,
        hb_port=50005,
        key="secret",
        kernel_name="akernel",
    )
    defaults.update(kw)
    return ConnectionInfo(**defaults)


def test_connection_file_round_trip(tmp_path):
    info = _info()
    info.extra["jupyter_session"] = "/some/notebook.ipynb"
    path = tmp_path / "kernel.json"
    info.write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ConnectionInfo.load(path) == info
    data = json.loads(path.read_text())
    assert data["shell_port"] == 50001
    assert data["jupyter_session"] == "/some/notebook.ipynb"
    assert "extra" not in data


def test_connection_file_overwrite_keeps_0600(tmp_path):
    path = tmp_path / "kernel.json"
    path.write_text("{}")
    path.chmod(0o644)
    _info().write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ConnectionInfo.load(path).key == "secret"
    assert sorted(os.listdir(tmp_path)) == ["kernel.json"]


def test_connection_file_mode_ignores_umask(tmp_path):
    old = os.umask(0)
    try:
        _info().write(tmp_path / "k.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k.json").stat().st_mode) == 0o600


def test_connection_file_interoperates_with_jupyter_client(tmp_path):
    from jupyter_client.blocking import BlockingKernelClient

    theirs = tmp_path / "theirs.json"
    write_connection_file(
        str(theirs),
        shell_port=1,
        iopub_port=2,
        stdin_port=3,
        hb_port=4,
        control_port=5,
        key=b"k3y",
        signature_scheme="hmac-sha512",
        kernel_name="x",
    )
    info = ConnectionInfo.load(theirs)
    assert (info.shell_port, info.iopub_port, info.stdin_port) == (1, 2, 3)
    assert (info.hb_port, info.control_port) == (4, 5)
    assert info.key == "k3y"
    assert info.signature_scheme == "hmac-sha512"
    assert info.transport == "tcp"

    ours = tmp_path / "ours.json"
    _info(signature_scheme="hmac-sha512").write(ours)
    client = BlockingKernelClient()
    client.load_connection_file(str(ours))
    assert client.shell_port == 50001 and client.hb_port == 50005
    assert client.session.key == b"secret"
    assert client.session.signature_scheme == "hmac-sha512"


def test_load_missing_file(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(ConnectionError_, match=r"nope\.json"):
        ConnectionInfo.load(path)


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2]", '"string"', "null"])
def test_load_bad_json(tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ConnectionError_, match=r"bad\.json"):
        ConnectionInfo.load(path)


@pytest.mark.parametrize(
    "field, value",
    [
        ("shell_port", "5555"),
        ("hb_port", 1.5),
        ("iopub_port", True),
        ("control_port", None),
        ("key", 5),
        ("ip", ["127.0.0.1"]),
        ("transport", 1),
        ("signature_scheme", None),
    ],
)
def test_load_wrong_types(tmp_path, field, value):
    path = tmp_path / "k.json"
    data = _info().to_dict()
    data[field] = value
    path.write_text(json.dumps(data))
    with pytest.raises(ConnectionError_, match=field):
        ConnectionInfo.load(path)


@pytest.mark.parametrize("transport", ["udp", "inproc", "TCP", ""])
def test_load_unknown_transport(tmp_path, transport):
    path = tmp_path / "k.json"
    path.write_text(json.dumps({**_info().to_dict(), "transport": transport}))
    with pytest.raises(ConnectionError_, match="transport"):
        ConnectionInfo.load(path)


@pytest.mark.parametrize("port", [-1, 65536])
def test_load_port_out_of_range(tmp_path, port):
    path = tmp_path / "k.json"
    path.write_text(json.dumps({**_info().to_dict(), "stdin_port": port}))
    with pytest.raises(ConnectionError_, match="stdin_port"):
        ConnectionInfo.load(path)


@pytest.mark.parametrize("scheme", ["rsa-sha256", "hmac-nosuchdigest", "hmac-shake_128"])
def test_load_unsupported_signature_scheme(tmp_path, scheme):
    path = tmp_path / "k.json"
    path.write_text(json.dumps({**_info().to_dict(), "signature_scheme": scheme}))
    with pytest.raises(ConnectionError_, match="signature_scheme"):
        ConnectionInfo.load(path)


def test_load_minimal_file_uses_defaults(tmp_path):
    path = tmp_path / "k.json"
    path.write_text("{}")
    info = ConnectionInfo.load(path)
    assert info.transport == "tcp"
    assert info.ip == "127.0.0.1"
    assert info.signature_scheme == "hmac-sha256"
    assert info.shell_port == 0


def test_write_into_missing_directory(tmp_path):
    with pytest.raises(ConnectionError_, match="does-not-exist"):
        _info().write(tmp_path / "does-not-exist" / "k.json")


def test_write_failure_is_a_connection_error(tmp_path):
    """A failed write (here: the target is a directory) names the file and
    leaves no temporary file behind."""
    target = tmp_path / "k.json"
    target.mkdir()
    with pytest.raises(ConnectionError_, match=r"cannot write connection file .*k\.json"):
        _info().write(target)
    assert os.listdir(tmp_path) == ["k.json"]


def test_absent_fields_are_named(tmp_path):
    path = tmp_path / "k.json"
    path.write_text(json.dumps({"key": "", "shell_port": 0, "ip": "127.0.0.1"}))
    info = ConnectionInfo.load(path)
    assert "key" not in info.absent and "shell_port" not in info.absent
    assert {"iopub_port", "hb_port", "transport", "signature_scheme"} <= info.absent
    assert info.chooses_ports()
    assert not _info().chooses_ports()
    assert "absent" not in info.to_dict()


# -- CurveZMQ keys ------------------------------------------------------------------------

needs_curve = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CurveZMQ")


def _curve_keys() -> dict[str, str]:
    public, secret = zmq.curve_keypair()
    return {"curve_publickey": public.decode(), "curve_secretkey": secret.decode()}


@needs_curve
def test_curve_keys_round_trip_with_jupyter_client(tmp_path):
    from jupyter_client.blocking import BlockingKernelClient

    keys = _curve_keys()
    info = _info(**keys)
    assert info.uses_curve
    path = tmp_path / "k.json"
    info.write(path)
    assert ConnectionInfo.load(path) == info
    client = BlockingKernelClient()
    client.load_connection_file(str(path))
    assert client.curve_publickey == keys["curve_publickey"].encode()
    assert client.curve_secretkey == keys["curve_secretkey"].encode()


def test_no_curve_fields_without_keys(tmp_path):
    """jupyter_client takes even empty curve fields for keys: none are written."""
    from jupyter_client.blocking import BlockingKernelClient

    path = tmp_path / "k.json"
    _info().write(path)
    assert not [name for name in json.loads(path.read_text()) if name.startswith("curve")]
    client = BlockingKernelClient()
    client.load_connection_file(str(path))
    assert client.curve_publickey is None


@needs_curve
@pytest.mark.parametrize(
    "case, needle",
    [
        ("public_only", "curve_publickey without curve_secretkey"),
        ("secret_only", "curve_secretkey without curve_publickey"),
        ("short", "curve_publickey is not a CurveZMQ key"),
        ("not_z85", "curve_secretkey is not a CurveZMQ key"),
        ("mismatched", "does not belong"),
        ("not_a_string", "curve_publickey must be a string"),
    ],
)
def test_bad_curve_keys(tmp_path, case, needle):
    keys = _curve_keys()
    if case == "public_only":
        del keys["curve_secretkey"]
    elif case == "secret_only":
        del keys["curve_publickey"]
    elif case == "short":
        keys["curve_publickey"] = keys["curve_publickey"][:-1]
    elif case == "not_z85":
        keys["curve_secretkey"] = '"' + keys["curve_secretkey"][1:]
    elif case == "mismatched":
        keys["curve_publickey"] = _curve_keys()["curve_publickey"]
    elif case == "not_a_string":
        keys["curve_publickey"] = 5
    path = tmp_path / "k.json"
    path.write_text(json.dumps({**_info().to_dict(), **keys}))
    with pytest.raises(ConnectionError_, match=needle) as excinfo:
        ConnectionInfo.load(path)
    assert "\n" not in str(excinfo.value)


def _handshake_succeeds(
    context: zmq.Context, address: str, kind: int, serverkey: bytes | None
) -> bool:
    from zmq.utils.monitor import recv_monitor_message

    sock = context.socket(kind)
    sock.linger = 0
    if serverkey:
        sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
        sock.curve_serverkey = serverkey
    monitor = sock.get_monitor_socket()
    try:
        sock.connect(address)
        deadline = time.monotonic() + RECV_TIMEOUT
        while time.monotonic() < deadline:
            if monitor.poll(500):
                event = recv_monitor_message(monitor)["event"]
                if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    return True
                if event in (
                    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
                    zmq.EVENT_HANDSHAKE_FAILED_AUTH,
                ):
                    return False
        pytest.fail(f"no handshake with {address}")
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)


@needs_curve
def test_bind_with_curve_keys_encrypts_every_socket():
    info = ConnectionInfo(key="k")
    info.make_curve_keys()
    sockets = bind_kernel_sockets(info)
    try:
        for channel in CHANNELS:
            assert getattr(sockets, channel).curve_server, channel
            address = info.address(channel)
            kind = zmq.SUB if channel == "iopub" else zmq.DEALER
            assert not _handshake_succeeds(sockets.context, address, kind, None), channel
            serverkey = info.curve_publickey.encode()
            assert _handshake_succeeds(sockets.context, address, kind, serverkey), channel
    finally:
        sockets.close()
        sockets.context.term()


def test_unencrypted_warning_only_for_plain_tcp():
    assert "without encryption" in ConnectionInfo(ip="127.0.0.1").unencrypted_warning()
    assert ConnectionInfo(transport="ipc", ip="/tmp/x").unencrypted_warning() is None
    if zmq.has("curve"):
        info = ConnectionInfo()
        info.make_curve_keys()
        assert info.unencrypted_warning() is None


# -- binding ----------------------------------------------------------------------------


def _assert_reachable(sockets, info: ConnectionInfo) -> None:
    ctx = sockets.context
    dealer = ctx.socket(zmq.DEALER)
    dealer.linger = 0
    try:
        dealer.connect(info.address("shell"))
        dealer.send_multipart([b"ping"])
        assert sockets.shell.poll(RECV_TIMEOUT * 1000, zmq.POLLIN)
        ident, body = sockets.shell.recv_multipart()
        assert body == b"ping"
        sockets.shell.send_multipart([ident, b"pong"])
        assert dealer.poll(RECV_TIMEOUT * 1000, zmq.POLLIN)
        assert dealer.recv() == b"pong"
    finally:
        dealer.close()


def test_bind_with_ports_zero_fills_ports():
    info = ConnectionInfo(key="k")
    sockets = bind_kernel_sockets(info)
    try:
        ports = [getattr(info, f"{c}_port") for c in CHANNELS]
        assert all(0 < p < 65536 for p in ports)
        assert len(set(ports)) == 5
        _assert_reachable(sockets, info)
    finally:
        sockets.close()
        sockets.context.term()


def test_bind_with_given_ports():
    probe = ConnectionInfo()
    first = bind_kernel_sockets(probe)
    ports = {f"{c}_port": getattr(probe, f"{c}_port") for c in CHANNELS}
    first.close()
    first.context.term()
    info = ConnectionInfo(**ports)
    sockets = bind_kernel_sockets(info)
    try:
        assert {f"{c}_port": getattr(info, f"{c}_port") for c in CHANNELS} == ports
        _assert_reachable(sockets, info)
    finally:
        sockets.close()
        sockets.context.term()


def test_bind_ipc_transport(short_tmp):
    prefix = os.path.join(short_tmp, "kernel")
    # An existing file must not be taken for a free ipc "port".
    open(f"{prefix}-1", "w").close()
    info = ConnectionInfo(transport="ipc", ip=prefix)
    sockets = bind_kernel_sockets(info)
    try:
        ports = [getattr(info, f"{c}_port") for c in CHANNELS]
        assert all(p > 0 for p in ports) and len(set(ports)) == 5
        assert 1 not in ports
        for channel in CHANNELS:
            assert info.address(channel) == f"ipc://{prefix}-{getattr(info, f'{channel}_port')}"
            assert os.path.exists(f"{prefix}-{getattr(info, f'{channel}_port')}")
        _assert_reachable(sockets, info)
    finally:
        sockets.close()
        sockets.context.term()


@pytest.mark.parametrize("channel", ["shell", "control", "hb"])
def test_port_in_use(channel):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    info = ConnectionInfo(**{f"{channel}_port": port})
    context = zmq.Context()
    try:
        with pytest.raises(ConnectionError_) as excinfo:
            bind_kernel_sockets(info, context)
        message = str(excinfo.value)
        assert channel in message
        assert str(port) in message
    finally:
        blocker.close()
        # Every socket created before the failure was closed: term() returns.
        _term_or_fail(context)


def _term_or_fail(context: zmq.Context) -> None:
    thread = threading.Thread(target=context.term, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "zmq context could not terminate: a socket was left open"


# -- heartbeat -------------------------------------------------------------------------------


def test_heartbeat_echoes_and_stops():
    info = ConnectionInfo()
    sockets = bind_kernel_sockets(info)
    heartbeat = Heartbeat(sockets.context, sockets.hb)
    heartbeat.start()
    client = sockets.context.socket(zmq.REQ)
    client.linger = 0
    try:
        client.connect(info.address("hb"))
        for i in range(5):
            client.send(b"ping-%d" % i)
            assert client.poll(RECV_TIMEOUT * 1000, zmq.POLLIN), "no heartbeat echo"
            assert client.recv() == b"ping-%d" % i
    finally:
        client.close()
        heartbeat.stop()
        assert sockets.hb.closed
        assert not [t for t in threading.enumerate() if t.name == "akernel-heartbeat"]
        sockets.close()
        _term_or_fail(sockets.context)


def test_heartbeat_stop_without_traffic():
    context = zmq.Context()
    hb = context.socket(zmq.ROUTER)
    hb.bind_to_random_port("tcp://127.0.0.1")
    heartbeat = Heartbeat(context, hb)
    heartbeat.start()
    heartbeat.stop()
    assert hb.closed
    _term_or_fail(context)
