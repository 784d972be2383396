"""The report: the Markdown table, the environment it was measured in, and the raw results."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import zmq
from bench_kernel import KernelKind

from .config import ROOT, Config
from .fuzzing import GENERATOR_FILES, FuzzGenerator
from .outcomes import Outcome, Results
from .scenarios import SCENARIOS


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(results: dict[str, Results], kinds: list[KernelKind], cfg: Config) -> str:
    head = ["#", "scenario", *(k.label for k in kinds)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scenario in SCENARIOS:
        if not any(scenario.rows[0][0] in results.get(k.name, {}) for k in kinds):
            continue
        for key, label in scenario.rows:
            if key == "3d":
                label = label.replace("300", str(cfg.print_mib))
            if key.startswith("10") and key == "10a":
                label += f" ({cfg.fuzz_cases:,} requests)"
            cells = [results.get(k.name, {}).get(key, Outcome("not run")).text for k in kinds]
            lines.append("| " + " | ".join(_cell(c) for c in [key, label, *cells]) + " |")
    return "\n".join(lines)


def _fuzz_generator_digest() -> str | None:
    """What identifies the fuzzed requests: the generator files' digest (it changes)."""
    with contextlib.suppress(OSError):
        digest = hashlib.sha256()
        for name in GENERATOR_FILES:
            digest.update((ROOT / name).read_bytes())
        return " and ".join(GENERATOR_FILES) + f" (sha256 {digest.hexdigest()[:12]})"
    return None


def environment() -> dict[str, Any]:
    import importlib.metadata as md

    def version(dist: str) -> str | None:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return {
        "akernel": version("akernel"),
        "akernel_commit": commit or None,
        "ipykernel": version("ipykernel"),
        "jupyter_client": version("jupyter_client"),
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "python": platform.python_version(),
        "fuzz_generator": _fuzz_generator_digest(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def print_report(
    args: argparse.Namespace,
    cfg: Config,
    env: dict[str, Any],
    fuzz: FuzzGenerator | None,
    results: dict[str, Results],
    errors: list[str],
) -> int:
    """Print the table and what is wrong (write the raw results if asked); the exit status."""
    print(
        f"akernel {env['akernel']} (commit {env['akernel_commit']}), ipykernel {env['ipykernel']},"
        f" jupyter_client {env['jupyter_client']}, pyzmq {env['pyzmq']} (libzmq"
        f" {env['libzmq']}), Python {env['python']}; {env['cpus']} CPUs"
        f"{'; --quick' if args.quick else ''}"
    )
    if fuzz is not None:
        seed = fuzz.seed(cfg)
        print(f"fuzzing: the generator of {env['fuzz_generator']}, seed {seed}")
    print()
    print(render_table(results, args.kinds, cfg))
    print(f"\n(total {env['duration_s']} s; no reply = none within {cfg.reply_timeout:g} s)")
    for error in errors:
        print(f"harness error: {error}")
    failing = [
        f"{kind.label} {key}: {outcome.text}"
        for kind in args.kinds
        if kind.name != "ipykernel"
        for key, outcome in results[kind.name].items()
        if outcome.ok is False
    ]
    if failing:
        print("\nakernel cells that are not the expected outcome:")
        print("\n".join(f"- {line}" for line in failing))
    if args.json:
        data = {
            "environment": env,
            "config": cfg.__dict__,
            "errors": errors,
            "results": {
                name: {k: {"text": o.text, "ok": o.ok, **o.data} for k, o in cells.items()}
                for name, cells in results.items()
            },
        }
        Path(args.json).write_text(json.dumps(data, indent=1, default=str) + "\n")
        print(f"\nraw results written to {args.json}")
    return 1 if failing or errors else 0
