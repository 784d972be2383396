"""Hostile inputs sent to akernel and ipykernel, side by side: benchmarks/hostile.py runs them.

Modules: :mod:`.config` (sizes, timeouts), :mod:`.processes` (every process started,
killed at the end), :mod:`.client` (a client that sends what a client should not),
:mod:`.kernels` (kernel processes on connection files), :mod:`.outcomes` (what a
scenario reports), one module per group of scenarios (:mod:`.output`,
:mod:`.odd_requests`, :mod:`.connection_files`, :mod:`.managed_kernels`,
:mod:`.fuzzing`), :mod:`.scenarios` (the rows of the table), :mod:`.report` (the
table and the environment) and :mod:`.cli` (the command line and the run).
"""
