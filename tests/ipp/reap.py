"""Stop the processes ipyparallel's suite left behind (it leaves some
controllers running, with ipykernel engines as well as ours).

Every process the suite started carries ``AKERNEL_IPP_SUITE_RUN=<marker>`` in
its environment, inherited from pytest; this finds them by it.

    python reap.py MARKER
"""

from __future__ import annotations

import os
import sys

import psutil


def main(marker: str) -> int:
    left = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if process.environ().get("AKERNEL_IPP_SUITE_RUN") == marker:
                left.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    for process in left:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(left, timeout=10)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)
    if left:
        print(f"stopped {len(left)} processes the suite left running")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
