"""Benchmark ipyparallel with akernel engines against ipykernel engines, in one run.

For each engine kind (ipykernel's ``ipengine``, akernel on asyncio, akernel on
trio) a cluster of two engines is started with ``ipp.Cluster`` and the same
client workloads are timed:

* ``apply_sync`` latency on one engine (a no-op function), median;
* pipelined ``apply_async`` on one engine: N requests sent, then all awaited;
  and the CPU time the engine process spent per request meanwhile, and the
  client's and controller's (on a small machine they share its cores, and
  ipyparallel's client and controller are most of the work);
* a load-balanced ``map`` of small tasks over both engines;
* ``push`` then ``pull`` of a 50 MB NumPy array to one engine.

Ratios are akernel / ipykernel (lower is better for times, higher for rates).

Usage::

    python benchmarks/bench_parallel.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import ipyparallel as ipp
import numpy as np
import psutil
from traitlets.config import Config


def noop(x: Any = None) -> Any:
    return x


@dataclass
class EngineKind:
    name: str
    label: str
    launcher: str
    args: list[str] = field(default_factory=list)


KINDS = [
    EngineKind("ipykernel", "ipykernel engines", "local"),
    EngineKind("akernel", "akernel (asyncio)", "akernel", ["--backend=asyncio"]),
    EngineKind("akernel-trio", "akernel (trio)", "akernel", ["--backend=trio"]),
]


@dataclass
class Settings:
    latency_n: int
    pipelined_n: int
    map_n: int
    push_mb: int
    reps: int


def measure(kind: EngineKind, settings: Settings) -> dict[str, float]:
    config = Config()
    if kind.args:
        config.AkernelEngineSetLauncher.engine_args = kind.args
    with tempfile.TemporaryDirectory() as profile_dir:
        cluster = ipp.Cluster(
            n=2, engines=kind.launcher, config=config, profile_dir=profile_dir, log_level=40
        )
        with cluster as client:
            client.wait_for_engines(2, timeout=120)
            one = client[0]
            for _ in range(20):  # warm up
                one.apply_sync(noop)
            latencies = []
            for _ in range(settings.latency_n):
                start = time.perf_counter()
                one.apply_sync(noop)
                latencies.append(time.perf_counter() - start)
            engine = psutil.Process(one.apply_sync(os.getpid))
            controller = psutil.Process(cluster.controller.pid)
            others = {
                "engine": [engine],
                "controller": [controller, *controller.children(recursive=True)],
                "client": [psutil.Process()],
            }
            cpu_before = {name: _cpu_seconds(ps) for name, ps in others.items()}
            rates = []
            for _ in range(settings.reps):
                start = time.perf_counter()
                results = [one.apply_async(noop, i) for i in range(settings.pipelined_n)]
                for result in results:
                    result.get(timeout=120)
                rates.append(settings.pipelined_n / (time.perf_counter() - start))
            requests = settings.reps * settings.pipelined_n
            cpu_ms = {
                f"{name}_cpu_ms": (_cpu_seconds(ps) - cpu_before[name]) * 1000 / requests
                for name, ps in others.items()
            }
            balanced = client.load_balanced_view()
            map_times = []
            for _ in range(settings.reps):
                start = time.perf_counter()
                balanced.map_sync(noop, range(settings.map_n))
                map_times.append(time.perf_counter() - start)
            data = np.ones(settings.push_mb * 1024 * 1024 // 8)
            push_pull = []
            for _ in range(settings.reps):
                start = time.perf_counter()
                one.push({"data": data}, block=True)
                back = one.pull("data", block=True)
                push_pull.append(time.perf_counter() - start)
                assert back.shape == data.shape
    return {
        "apply_sync_ms": statistics.median(latencies) * 1000,
        "pipelined_per_s": statistics.median(rates),
        **cpu_ms,
        "map_tasks_per_s": settings.map_n / statistics.median(map_times),
        "push_pull_s": statistics.median(push_pull),
    }


ROWS = [
    ("apply_sync_ms", "apply_sync latency, 1 engine", "ms", False, "<= 0.6x"),
    ("pipelined_per_s", "pipelined apply_async, 1 engine", "/s", True, ">= 2x"),
    ("engine_cpu_ms", "  engine CPU per request", "ms", False, ""),
    ("client_cpu_ms", "  client CPU per request", "ms", False, ""),
    ("controller_cpu_ms", "  controller CPU per request", "ms", False, ""),
    ("map_tasks_per_s", "load-balanced map, small tasks", "tasks/s", True, ""),
    ("push_pull_s", "push + pull 50 MB array", "s", False, ""),
]


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


def render(results: dict[str, dict[str, float]]) -> str:
    base = results.get("ipykernel")
    names = [k.name for k in KINDS if k.name in results]
    header = ["measure", "unit", *names, *(f"{n}/ipykernel" for n in names if n != "ipykernel")]
    lines = [header]
    for key, label, unit, _higher_better, _goal in ROWS:
        row = [label, unit]
        row += [f"{results[n][key]:,.2f}" for n in names]
        for n in names:
            if n != "ipykernel" and base:
                row.append(f"{results[n][key] / base[key]:.2f}x")
        lines.append(row)
    widths = [max(len(r[i]) for r in lines) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    out.append("")
    out.append("medians; ratios: times lower is better, rates (/s) higher is better")
    out.append("goals (akernel vs ipykernel): apply_sync <= 0.6x, pipelined >= 2x")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--kinds", default=",".join(k.name for k in KINDS))
    args = parser.parse_args(argv)
    if args.quick:
        settings = Settings(latency_n=100, pipelined_n=1000, map_n=500, push_mb=50, reps=1)
    else:
        settings = Settings(latency_n=400, pipelined_n=2000, map_n=1000, push_mb=50, reps=3)
    wanted = args.kinds.split(",")
    print(f"benchmarking ipyparallel engines on {os.cpu_count()} CPUs", flush=True)
    results: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        if kind.name not in wanted:
            continue
        start = time.monotonic()
        results[kind.name] = measure(kind, settings)
        print(f"[{kind.name}] {results[kind.name]} ({time.monotonic() - start:.0f} s)", flush=True)
    print()
    print(render(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": settings.__dict__, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
