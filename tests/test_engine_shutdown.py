"""``Client.shutdown(block=True)`` always gets every engine's reply, even under CPU load.

An engine's control replies travel through ipyparallel's nanny; an engine
that let the nanny go before its last reply had been relayed left the client
waiting for ever (a few rounds in ten on a loaded machine).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import psutil
import pytest

from .test_engine import akernel_cluster
from .utils import wait_gone

ENGINES = 8
# Rounds per backend; more with AKERNEL_SHUTDOWN_ROUNDS (the check is 30).
ROUNDS = int(os.environ.get("AKERNEL_SHUTDOWN_ROUNDS", "5"))

pytestmark = pytest.mark.timeout(60 + 40 * ROUNDS)


@pytest.fixture
def cpu_load() -> Iterator[None]:
    """Busy processes beside the cluster, twice as many as the machine has cores."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(4)]
    try:
        yield
    finally:
        for process in busy:
            process.kill()
            process.wait()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_shutdown_replies_arrive_under_load(backend, cpu_load, tmp_path) -> None:
    for round_ in range(ROUNDS):
        with akernel_cluster(tmp_path / f"profile-{round_}", ENGINES, [f"--backend={backend}"]) as (
            _,
            client,
        ):
            engines = [psutil.Process(pid) for pid in client[:].apply_sync(os.getpid)]
            done = threading.Event()

            def shutdown(client=client, done=done) -> None:
                client.shutdown(block=True)
                done.set()

            # Client.shutdown has no timeout: a lost reply is a thread still waiting.
            threading.Thread(target=shutdown, daemon=True).start()
            assert done.wait(30), f"round {round_}: a shutdown_reply never arrived"
            for engine in engines:
                assert wait_gone(engine, timeout=30), f"round {round_}: engine {engine.pid} left"
