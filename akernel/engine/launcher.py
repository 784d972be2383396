"""ipyparallel launchers that start akernel engines.

``ipp.Cluster(engines="akernel")`` and ``ipcluster start --engines=akernel``
find :class:`AkernelEngineSetLauncher` through the ``ipyparallel.engine_launchers``
entry point. For batch launchers (Slurm, PBS, SGE, LSF, MPI, SSH), set their
``engine_cmd`` to :data:`engine_cmd_argv` instead (see the docs).
"""

from __future__ import annotations

import sys

from ipyparallel.cluster.launcher import LocalEngineSetLauncher
from traitlets import List, default

engine_cmd_argv = [sys.executable, "-m", "akernel.engine"]
"""The command that starts one akernel engine (what ``ipengine`` is to ipykernel)."""


class AkernelEngineSetLauncher(LocalEngineSetLauncher):
    """Start local akernel engines (as ``LocalEngineSetLauncher`` does ipengines)."""

    engine_cmd = List(config=True, help="Command that starts one akernel engine.")

    @default("engine_cmd")
    def _default_engine_cmd(self) -> list[str]:
        return list(engine_cmd_argv)
