"""The command line, and the run: every selected scenario on every selected kernel."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq
from bench_kernel import KERNELS

from .config import Config, progress
from .fuzzing import load_generator
from .kernels import Lab
from .managed_kernels import write_kernelspecs
from .outcomes import Outcome, Results
from .processes import Reaper
from .report import environment, print_report
from .scenarios import SCENARIOS

DESCRIPTION = (
    "What a hostile client can do to akernel (asyncio and trio) and to ipykernel, side by side."
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--quick", action="store_true", help="fewer fuzz cases, a smaller print")
    parser.add_argument(
        "--kernels",
        default=",".join(KERNELS),
        help=f"comma-separated, from {', '.join(KERNELS)} (default: all)",
    )
    parser.add_argument("--only", help="comma-separated scenario numbers (default: all)")
    parser.add_argument("--json", metavar="PATH", help="also write the raw results to PATH")
    parser.add_argument("--fuzz-cases", type=int, help="fuzzed requests per kernel (1000)")
    parser.add_argument("--fuzz-seed", type=int, help="fuzzing seed (tests/fuzzing.py's)")
    parser.add_argument("--reply-timeout", type=float, help="seconds before 'no reply' (10)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.kernels.split(",") if n.strip()]
    unknown = [n for n in names if n not in KERNELS]
    if unknown or not names:
        parser.error(f"unknown kernel {unknown}; choose from {', '.join(KERNELS)}")
    args.kinds = [KERNELS[n] for n in dict.fromkeys(names)]
    numbers = {s.number for s in SCENARIOS}
    only = [n.strip() for n in (args.only or ",".join(numbers)).split(",") if n.strip()]
    if not set(only) <= numbers:
        parser.error(f"unknown scenario in --only: {sorted(set(only) - numbers)}")
    args.scenarios = [s for s in SCENARIOS if s.number in only]
    return args


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios, print the report; 1 if an akernel cell is not the expected outcome."""
    args = parse_args(argv)
    cfg = Config.quick() if args.quick else Config()
    overrides = {
        "fuzz_cases": args.fuzz_cases,
        "fuzz_seed": args.fuzz_seed,
        "reply_timeout": args.reply_timeout,
    }
    cfg = Config(**{**cfg.__dict__, **{k: v for k, v in overrides.items() if v is not None}})
    fuzz = load_generator()[0] if any(s.number == "10" for s in args.scenarios) else None
    env = environment()
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGHUP, _interrupted)
    reaper = Reaper()
    ctx = zmq.Context()
    results: dict[str, Results] = {k.name: {} for k in args.kinds}
    errors: list[str] = []
    t_start = time.perf_counter()
    saved_env = dict(os.environ)
    tmp = tempfile.mkdtemp(prefix="akernel-hostile-")
    try:
        workdir = Path(tmp)
        write_kernelspecs(workdir / "jupyter")
        os.environ["JUPYTER_PATH"] = os.pathsep.join(
            [str(workdir / "jupyter"), *filter(None, [os.environ.get("JUPYTER_PATH")])]
        )
        os.environ["IPYTHONDIR"] = str(workdir / "ipython")
        os.environ["JUPYTER_RUNTIME_DIR"] = str(workdir / "runtime")
        lab = Lab(ctx, cfg, workdir, reaper)
        for scenario in args.scenarios:
            for kind in args.kinds:
                t0 = time.perf_counter()
                try:
                    got = scenario.run(lab, kind)
                except Exception as e:
                    got = {}
                    errors.append(f"scenario {scenario.number}, {kind.name}: {e!r}")
                    progress(f"[{kind.name}] scenario {scenario.number}: harness error {e!r}")
                except BaseException:
                    reaper.kill_all()  # interrupted: no polite shutdowns
                    raise
                finally:
                    lab.stop_all()
                for key, _ in scenario.rows:
                    got.setdefault(key, Outcome("harness error (see below)", None))
                results[kind.name].update(got)
                progress(
                    f"[{kind.name}] scenario {scenario.number} ({time.perf_counter() - t0:.1f} s): "
                    + "; ".join(f"{k} {o.text}" for k, o in got.items())
                )
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
        reaper.kill_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        ctx.destroy(linger=0)
        os.environ.clear()
        os.environ.update(saved_env)
        shutil.rmtree(tmp, ignore_errors=True)
    env["duration_s"] = round(time.perf_counter() - t_start, 1)
    return print_report(args, cfg, env, fuzz, results, errors)
