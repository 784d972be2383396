"""Run an ipyparallel cluster of akernel engines and use it, printing what happens.

Starts a controller and engines with ``ipp.Cluster(engines="akernel")`` (once
per backend, asyncio and trio), then runs the everyday ipyparallel workloads:
``apply`` on every engine, a load-balanced ``map``, ``execute`` with output
(what ``%px`` does), ``push``/``pull`` of a NumPy array, and a remote error
with its traceback. Exits non-zero if anything goes wrong; stops the cluster
in every case.

Usage::

    python examples/run_cluster_demo.py [--engines N] [--backend asyncio|trio ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import ipyparallel as ipp
import numpy as np
from traitlets.config import Config


def square(x: int) -> int:
    return x * x


def show(label: str, value: object) -> None:
    print(f"  {label:<34} {value}")


def run(n: int, backend: str) -> None:
    config = Config()
    config.AkernelEngineSetLauncher.engine_args = [f"--backend={backend}"]
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as profile_dir:
        cluster = ipp.Cluster(
            n=n, engines="akernel", config=config, profile_dir=profile_dir, log_level=40
        )
        with cluster as client:
            client.wait_for_engines(n, timeout=60)
            print(
                f"cluster of {n} akernel engines on {backend}, up in "
                f"{time.monotonic() - started:.1f} s"
            )
            view = client[:]
            show("engine pids (apply os.getpid):", view.apply_sync(os.getpid))
            balanced = client.load_balanced_view()
            show("load-balanced map square(0..9):", balanced.map_sync(square, range(10)))
            result = view.execute("import os\nprint('hello from', os.getpid())", block=True)
            show("execute + print (%px):", [line.strip() for line in result.stdout])
            array = np.arange(1_000_000, dtype=np.float64)
            view.push({"array": array}, block=True)
            sums = view.apply_sync(lambda a: float(a.sum()), ipp.Reference("array"))
            show("push 8 MB array, sum remotely:", sums)
            back = client[0].pull("array", block=True)
            show("pull it back, equal:", bool(np.array_equal(back, array)))
            try:
                view.apply_sync(lambda: 1 / 0)
            except ipp.error.CompositeError as error:
                first = error.elist[0]
                show("remote error:", f"{first[0]}: {first[1]}")
            else:
                raise SystemExit("a remote error was expected")
    print(f"cluster stopped ({time.monotonic() - started:.1f} s in all)\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--engines", type=int, default=2, help="engines per cluster (2)")
    parser.add_argument(
        "--backend", action="append", choices=["asyncio", "trio"], help="(both by default)"
    )
    args = parser.parse_args()
    for backend in args.backend or ["asyncio", "trio"]:
        run(args.engines, backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
