"""akernel engines in a real ipyparallel cluster, on asyncio and on trio.

``ipp.Cluster(engines="akernel")`` starts a real controller and akernel
engine processes through the ``ipyparallel.engine_launchers`` entry point;
the tests are ipyparallel client code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from jupyter_client import BlockingKernelClient

from .utils import wait_gone

ipp = pytest.importorskip("ipyparallel")
np = pytest.importorskip("numpy")
from traitlets.config import Config  # noqa: E402

import akernel.engine  # noqa: E402

pytestmark = pytest.mark.timeout(180)


@contextmanager
def akernel_cluster(profile_dir: Path, n: int, engine_args: list[str]) -> Iterator[tuple]:
    """A controller and ``n`` akernel engines started with ``engine_args``;
    the cluster and a client, once the engines are up. Stopped on exit."""
    config = Config()
    config.AkernelEngineSetLauncher.engine_args = engine_args
    cluster = ipp.Cluster(
        n=n, engines="akernel", config=config, profile_dir=str(profile_dir), log_level=30
    )
    client = cluster.start_and_connect_sync()
    try:
        client.wait_for_engines(n, timeout=60)
        yield cluster, client
    finally:
        client.close()
        cluster.stop_cluster_sync()


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[tuple]:
    """A controller and two akernel engines; the client; the engines' processes."""
    profile_dir = tmp_path_factory.mktemp("profile")
    with akernel_cluster(profile_dir, 2, [f"--backend={request.param}"]) as (cluster, client):
        pids = client[:].apply_sync(os.getpid)
        yield cluster, client, [psutil.Process(pid) for pid in pids]


def test_engines_are_akernel(cluster) -> None:
    _, client, processes = cluster
    assert len(client.ids) == 2
    for process in processes:
        assert "akernel.engine" in " ".join(process.cmdline())


def test_apply_sync_and_async(cluster) -> None:
    _, client, _ = cluster
    assert client[0].apply_sync(pow, 2, 10) == 1024
    results = client[:].apply_async(lambda x: x * 2, 21)
    assert results.get(timeout=30) == [42, 42]


def test_map_direct_and_load_balanced(cluster) -> None:
    _, client, _ = cluster
    assert client[:].map_sync(lambda x: x * x, range(10)) == [x * x for x in range(10)]
    view = client.load_balanced_view()
    assert view.map_sync(lambda x: x + 1, range(20)) == list(range(1, 21))


def test_broadcast_view(cluster) -> None:
    _, client, _ = cluster
    view = client.broadcast_view()
    assert sorted(view.apply_sync(lambda: 7)) == [7, 7]


def test_push_pull_large_array(cluster) -> None:
    _, client, _ = cluster
    engine = client[0]
    data = np.arange(50 * 1024 * 1024 // 8, dtype=np.float64)  # 50 MB
    engine.push({"big": data}, block=True)
    total = engine.apply_sync(lambda array: float(array.sum()), ipp.Reference("big"))
    assert total == float(data.sum())
    pulled = engine.pull("big", block=True)
    assert pulled.shape == data.shape
    assert np.array_equal(pulled, data)


def test_execute_and_stdout(cluster) -> None:
    """What %px runs: DirectView.execute (a silent execute_request), whose output
    ipyparallel expects as stream output."""
    _, client, _ = cluster
    result = client[:].execute("x = 6 * 7\nprint('x is', x)", block=True)
    assert [out.strip() for out in result.stdout] == ["x is 42", "x is 42"]
    assert client[:].pull("x", block=True) == [42, 42]
    # apply's output too
    ar = client[0].apply_async(lambda: print("from apply"))
    ar.get(timeout=30)
    ar.wait_for_output(timeout=30)
    assert ar.stdout.strip() == "from apply"


def test_engine_error_has_its_traceback(cluster) -> None:
    _, client, _ = cluster

    def broken() -> None:
        raise ValueError("engine went wrong")

    with pytest.raises(ipp.error.RemoteError) as excinfo:
        client[0].apply_sync(broken)
    error = excinfo.value
    assert error.ename == "ValueError"
    assert error.evalue == "engine went wrong"
    assert "broken" in "\n".join(
        error.traceback if isinstance(error.traceback, list) else [error.traceback]
    )
    assert error.engine_info["engine_id"] == 0


def test_abort_queued_tasks(cluster) -> None:
    _, client, _ = cluster
    engine = client[1]
    blocker = engine.apply_async(time.sleep, 1)
    queued = engine.apply_async(lambda: "should not run")
    client.abort(queued)
    blocker.get(timeout=30)
    with pytest.raises(ipp.error.TaskAborted):
        queued.get(timeout=30)
    assert engine.apply_sync(lambda: "still works") == "still works"


def test_every_message_names_its_engine(cluster) -> None:
    _, client, _ = cluster
    ar = client[:].apply_async(lambda: 1)
    ar.get(timeout=30)
    uuids = {md["engine_uuid"] for md in ar.metadata}
    assert uuids == {client._engines[i] for i in client.ids}


def test_shutdown_leaves_no_processes(tmp_path: Path) -> None:
    """Engines, their nannies, and the connection files of bound engines go."""
    with akernel_cluster(tmp_path, 2, []) as (_, client):
        processes = [psutil.Process(pid) for pid in client[:].apply_sync(os.getpid)]
        processes += [child for process in processes for child in process.children()]
        assert len(processes) == 4  # each engine's nanny
        connection_file = Path(client[0].apply_sync(akernel.engine.bind_kernel))
        assert connection_file.exists()
    for process in processes:
        assert wait_gone(process, timeout=30), f"{process.cmdline()} is still running"
    assert not connection_file.exists()


def test_bind_kernel_lets_a_frontend_attach(cluster) -> None:
    """``bind_kernel`` on an engine writes a kernel connection file; a Jupyter
    client attaches and works in the engine's namespace, while the engine
    goes on serving the controller."""
    _, client, _ = cluster
    engine = client[0]
    path = engine.apply_sync(akernel.engine.bind_kernel)
    # ipyparallel's own helper, looked up on the engine, is the same binder.
    engine.execute("import ipyparallel\nagain = ipyparallel.bind_kernel()", block=True)
    assert engine.pull("again", block=True) == path
    engine.push({"shared": 41}, block=True)
    kc = BlockingKernelClient(connection_file=path)
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        outputs: list[str] = []
        reply = kc.execute_interactive(
            "print(shared + 1)\nshared = 'from the frontend'",
            timeout=30,
            output_hook=lambda msg: outputs.append(msg["content"].get("text", "")),
        )
        assert reply["content"]["status"] == "ok"
        assert "42\n" in outputs
        assert kc.is_alive()
    finally:
        kc.stop_channels()
    assert engine.pull("shared", block=True) == "from the frontend"
    assert engine.apply_sync(lambda: "still serving") == "still serving"


def test_no_controller_gives_a_clear_error(tmp_path: Path) -> None:
    """Registration times out with a one-line error and a non-zero exit."""
    info = {
        "interface": "tcp://127.0.0.1",
        "registration": 1,  # nothing listens there
        "key": "k",
        "signature_scheme": "hmac-sha256",
        "pack": "json",
        "unpack": "json",
        "location": "127.0.0.1",
    }
    env = {**os.environ, "IPP_CONNECTION_INFO": json.dumps(info)}
    done = subprocess.run(
        [sys.executable, "-m", "akernel.engine", "--timeout=1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("akernel engine: error: no answer")


def test_publish_data(cluster) -> None:
    """ipyparallel's publish_data on an engine reaches the client's AsyncResult.data."""
    _, client, _ = cluster

    def publish() -> str:
        from ipyparallel.datapub import publish_data

        publish_data({"progress": 1.0, "stage": "done"})
        return "published"

    ar = client[0].apply_async(publish)
    assert ar.get(timeout=30) == "published"
    ar.wait_for_output(timeout=30)
    assert ar.data == {"progress": 1.0, "stage": "done"}


def test_send_signal_interrupts_a_running_task(cluster) -> None:
    """``Client.send_signal`` (a signal_request, which ipykernel engines leave to
    their nanny) interrupts what an engine is running."""
    _, client, _ = cluster
    check_send_signal_interrupts(client, 1)


def check_send_signal_interrupts(client: ipp.Client, target: int) -> None:
    """SIGINT sent to engine ``target`` interrupts the task it runs; it goes on."""
    engine = client[target]
    running = engine.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(60)")
    deadline = time.monotonic() + 30
    while "sleeping" not in (running.stdout or ""):
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    client.send_signal("SIGINT", targets=[target], block=True)
    with pytest.raises(ipp.error.RemoteError) as excinfo:
        running.get(timeout=30)
    assert excinfo.value.ename == "KeyboardInterrupt"
    assert engine.apply_sync(lambda: "still here") == "still here"


def test_send_signal_interrupts_an_apply(cluster) -> None:
    """SIGINT interrupts an ``apply_request``'s function, as it does a cell."""
    _, client, _ = cluster
    engine = client[1]

    def nap() -> None:
        import time

        print("napping", flush=True)
        time.sleep(60)

    running = engine.apply_async(nap)
    _wait_for_output(running, "napping")
    client.send_signal("SIGINT", targets=[1], block=True)
    with pytest.raises(ipp.error.RemoteError) as excinfo:
        running.get(timeout=30)
    assert excinfo.value.ename == "KeyboardInterrupt"
    assert engine.apply_sync(lambda: "still here") == "still here"


def test_abort_waiting_broadcast_tasks(cluster) -> None:
    """Aborted replies carry the scheduler's metadata: the broadcast scheduler
    matches them to their request by ``original_msg_id``."""
    _, client, _ = cluster
    view = client.broadcast_view()

    def nap() -> None:
        import time

        print("napping", flush=True)
        time.sleep(2)

    blocker = view.apply_async(nap)
    queued = view.apply_async(lambda: "should not run")
    _wait_for_output(blocker, "napping")
    time.sleep(0.3)  # the broadcast scheduler has passed ``queued`` on by now
    client.abort(jobs=[], targets=client.ids, block=True)  # everything waiting
    blocker.get(timeout=30)
    # A broadcast result holds each engine's TaskAborted (ipykernel engines'
    # aborted replies never reach the client here: the get times out).
    results = queued.get(timeout=30)
    assert len(results) == 2
    assert all(isinstance(result, ipp.error.TaskAborted) for result in results)


def _wait_for_output(result, text: str) -> None:
    deadline = time.monotonic() + 30
    while not all(text in out for out in _as_list(result.stdout)):
        assert time.monotonic() < deadline, f"no {text!r} in {result.stdout!r}"
        time.sleep(0.05)


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value or ""]


@pytest.mark.parametrize("nanny", [True, False], ids=["nanny", "no-nanny"])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sigkill_by_signal_request(tmp_path: Path, backend: str, nanny: bool) -> None:
    """``send_signal("SIGKILL")`` is answered before the engine dies. With the
    nanny (the default, as for ipengine) the controller hears of the death at
    once, and the nanny goes too; without it, the engine waits for its reply
    to leave before it signals itself."""
    engine_args = [f"--backend={backend}", f"--EngineApp.enable_nanny={nanny}"]
    with akernel_cluster(tmp_path, 1, engine_args) as (_, client):
        engine = psutil.Process(client[0].apply_sync(os.getpid))
        nannies = [
            child
            for child in engine.children()
            if "ipyparallel.engine.nanny" in " ".join(child.cmdline())
        ]
        assert len(nannies) == (1 if nanny else 0)
        client.send_signal("SIGKILL", targets=[0], block=True)  # the reply came
        assert wait_gone(engine, timeout=30)
        if nanny:
            deadline = time.monotonic() + 30
            while client.ids:
                assert time.monotonic() < deadline, "the controller was not told"
                time.sleep(0.1)
            assert wait_gone(nannies[0], timeout=30)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_engine_startup_code(tmp_path: Path, backend: str) -> None:
    """Once registered, an engine runs what ipengine runs: the profile's
    start-up files, then ``-c`` (exec_lines), then ``-s`` (exec_files)."""
    profile = tmp_path / "profile"
    (profile / "startup").mkdir(parents=True)
    (profile / "startup" / "00-engine.py").write_text("order = ['profile startup']\n")
    script = tmp_path / "script.py"
    script.write_text("order.append('-s')\n")
    engine_args = [f"--backend={backend}", "--c=order.append('-c')", f"--s={script}"]
    with akernel_cluster(profile, 1, engine_args) as (_, client):
        assert client[0].pull("order", block=True) == ["profile startup", "-c", "-s"]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_engine_exits_when_the_controller_is_gone(tmp_path: Path, backend: str) -> None:
    """When the controller's heartbeat stops for ``max_heartbeat_misses`` checks,
    the engine interrupts what it runs, unregisters and exits with status 0; its
    nanny goes too."""
    cluster = ipp.Cluster(
        n=0,
        profile_dir=str(tmp_path),
        controller_args=["--HeartMonitor.period=500"],
        log_level=30,
    )
    cluster.start_controller_sync()
    # Started here rather than by a launcher, to see its exit status.
    engine = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "akernel.engine",
            f"--profile-dir={tmp_path}",
            f"--cluster-id={cluster.cluster_id}",
            f"--backend={backend}",
            "--EngineApp.max_heartbeat_misses=2",
        ],
        stdin=subprocess.DEVNULL,
    )
    client = None
    try:
        client = cluster.connect_client_sync()
        client.wait_for_engines(1, timeout=60)
        nanny = psutil.Process(engine.pid).children()[0]
        running = client[0].execute("import time\nprint('busy', flush=True)\ntime.sleep(600)")
        _wait_for_output(running, "busy")
        # The controller and its scheduler processes (one of them pings).
        controller = psutil.Process(cluster.controller.pid)
        for process in [*controller.children(recursive=True), controller]:
            process.kill()
        assert engine.wait(timeout=60) == 0
        assert wait_gone(nanny, timeout=30)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()
        if client is not None:
            client.close()
        cluster.stop_cluster_sync()


def test_silent_errors_abort_nothing(cluster) -> None:
    """ipyparallel sends its executes silent: each runs, errors or not (as with
    ipykernel, whose stop_on_error applies to non-silent requests only)."""
    _, client, _ = cluster
    view = client[:]
    results = [view.execute("1/0") for _ in range(5)]
    errors = 0
    for result in results:
        with pytest.raises(ipp.error.CompositeError) as excinfo:
            result.get(timeout=30)
        errors += len(excinfo.value.elist)
        assert {e[0] for e in excinfo.value.elist} == {"ZeroDivisionError"}
    assert errors == 10


def _segfault() -> None:
    import ctypes

    ctypes.string_at(0)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_engine_death_leaves_its_stack_in_the_log(tmp_path: Path, backend: str) -> None:
    """A task that segfaults its engine: the client gets ipyparallel's "engine
    died" error (the controller knows no more), and the engine's log names
    the signal, with the Python stack at the crash."""
    with akernel_cluster(tmp_path, 1, [f"--backend={backend}"]) as (_, client):
        with pytest.raises(ipp.error.RemoteError) as raised:
            client[0].apply_async(_segfault).get(timeout=60)
        assert raised.value.ename == "EngineError", raised.value
        deadline = time.monotonic() + 30
        while True:
            logs = "".join(path.read_text() for path in (tmp_path / "log").glob("*.log"))
            if "in _segfault" in logs:
                break
            assert time.monotonic() < deadline, logs
            time.sleep(0.1)
        assert "Fatal Python error: Segmentation fault" in logs, logs
