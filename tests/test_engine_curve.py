"""akernel engines in an ipyparallel cluster whose controller uses CurveZMQ.

With ``IPController.enable_curve``, the controller serves every socket as a
CurveZMQ server and drops HMAC signing (its key is empty). An engine that did
not set the controller's public key as its server key could not even
register; the nanny, which serves the engine's control channel with the
engine's own keys, is exercised by ``send_signal``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

ipp = pytest.importorskip("ipyparallel")
from traitlets.config import Config  # noqa: E402

import akernel.engine  # noqa: E402

from .test_engine import check_send_signal_interrupts  # noqa: E402

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CurveZMQ"),
]


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def curve_cluster(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[tuple]:
    """A CurveZMQ controller with one akernel engine; the client; the profile."""
    profile_dir = tmp_path_factory.mktemp("profile")
    config = Config()
    config.AkernelEngineSetLauncher.engine_args = [f"--backend={request.param}"]
    cluster = ipp.Cluster(
        n=1,
        engines="akernel",
        config=config,
        profile_dir=str(profile_dir),
        controller_args=["--IPController.enable_curve=True"],
        log_level=30,
    )
    client = cluster.start_and_connect_sync()
    try:
        client.wait_for_engines(1, timeout=60)
        yield cluster, client, profile_dir
    finally:
        client.close()
        cluster.stop_cluster_sync()


def engine_connection_info(profile_dir: Path) -> dict:
    [path] = (profile_dir / "security").glob("ipcontroller-*engine.json")
    return json.loads(path.read_text())


def test_controller_encrypts_and_engine_registered(curve_cluster) -> None:
    _, client, profile_dir = curve_cluster
    info = engine_connection_info(profile_dir)
    assert len(info["curve_serverkey"]) == 40
    assert not info["key"]  # CurveZMQ replaces signing in ipyparallel
    assert client.curve_serverkey
    assert client[0].apply_sync(pow, 2, 10) == 1024


def test_execute_output_and_push_pull(curve_cluster) -> None:
    _, client, _ = curve_cluster
    result = client[:].execute("x = 6 * 7\nprint('x is', x)", block=True)
    assert [out.strip() for out in result.stdout] == ["x is 42"]
    client[0].push({"y": "pushed"}, block=True)
    assert client[0].pull("y", block=True) == "pushed"
    assert client.load_balanced_view().apply_sync(lambda: "balanced") == "balanced"


def test_send_signal_through_the_nanny(curve_cluster) -> None:
    _, client, _ = curve_cluster
    check_send_signal_interrupts(client, 0)


def test_bind_kernel_is_refused_with_curve(curve_cluster) -> None:
    """Frontends cannot reach an encrypted engine: bind_kernel says so."""
    _, client, _ = curve_cluster
    with pytest.raises(ipp.error.RemoteError) as excinfo:
        client[0].apply_sync(akernel.engine.bind_kernel)
    assert excinfo.value.ename == "RuntimeError"
    assert "CurveZMQ" in excinfo.value.evalue


@pytest.mark.parametrize("serverkey", ["too-short", 12345])
def test_bad_controller_curve_key_is_a_one_line_error(serverkey) -> None:
    info = {
        "interface": "tcp://127.0.0.1",
        "registration": 1,
        "key": "",
        "signature_scheme": "hmac-sha256",
        "pack": "json",
        "unpack": "json",
        "curve_serverkey": serverkey,
    }
    done = subprocess.run(
        [sys.executable, "-m", "akernel.engine", "--timeout=1"],
        env={**os.environ, "IPP_CONNECTION_INFO": json.dumps(info)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "curve_serverkey" in lines[0] and lines[0].startswith("akernel engine: error:")
