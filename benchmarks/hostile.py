"""What a hostile client can do to akernel (asyncio and trio) and to ipykernel, side by side.

Run it with ``nox -s hostile`` or directly::

    python benchmarks/hostile.py [--quick] [--kernels akernel,akernel-trio,ipykernel]
                                 [--only 1,3,10] [--json PATH] [--fuzz-cases N] [--fuzz-seed S]

Each scenario sends input that once killed, stalled or opened a kernel, the way a
hostile tester would, to every kernel in turn, each time on fresh kernel processes, and
records what happened. Kernels are started as in benchmarks/bench_kernel.py: their
kernelspec command (``python -m akernel launch -f FILE [--backend trio]``, ``python -m
ipykernel_launcher -f FILE``) run by this interpreter, from connection files this
script writes; scenarios 8 and 9 start them through jupyter_client's ``KernelManager``
from kernelspecs written to a private ``JUPYTER_PATH``. Kernels get a private
IPYTHONDIR and Jupyter runtime directory.

The scenarios (rows of the table):

1. Output that cannot be UTF-8 (``'ok\\udcff'`` printed, printed from a thread,
   displayed, raised; ``b'ok\\xff'`` written to file descriptor 1): the reply, the
   output as it arrives, then whether ``1+1`` still runs; then ``os.system('seq
   100000')`` on the same kernel: all 100,000 lines arrive.
2. A correctly signed message nested 5,000 levels deep around a 22-digit number, on
   shell (an execute_request that would write a marker file) and on control (a
   kernel_info_request): executed or dropped, and whether shell and control still answer.
3. A stalled IOPub subscriber (subscribes, takes one message, never reads again):
   a cell publishing 6,000 displays of 4 KB while a healthy client reads (all of them,
   in order? time to idle; control kernel_info latency meanwhile), then 200 ``pass``
   round trips; on a fresh kernel, a cell printing 300 MB in 1 MiB chunks (completeness,
   time, the kernel's RSS growth at its peak, sampled every ~20 ms with psutil).
4. Connection files: without ``key`` (does an unsigned execute run? is a key written
   back?), without ports (are ports written back, can a client connect?), with
   ``"key": ""`` (refused, or runs unsigned code?).
5. Requests whose handler fails (``history_request`` with ``n`` ``"ten"`` and
   ``2**63``, ``complete_request`` with ``cursor_pos`` 99): the reply, or none.
6. JSON jupyter_client's decoder accepts (``NaN``, ``Infinity``, ``1e400`` in an extra
   field of an execute_request): executed or dropped.
7. ``signature_scheme: hmac-shake_128``: how the kernel refuses it (or not).
8. A signed execute captured, the kernel restarted by ``KernelManager`` with the same
   connection file, the same frames sent again: how many times it ran.
9. CurveZMQ (``KernelManager(transport_encryption="required")``, kernelspecs
   declaring ``supported_encryption: ["curve"]``): does execute work, and does a
   plaintext client with the right HMAC key get its code run?
10. Seeded fuzzing with the request generator of tests/fuzz_requests.py (imported;
    it needs pytest): N requests (1,000; 300 with ``--quick``) of every type on shell and
    control, the same for every kernel, in batches of 50 followed by a kernel_info on
    each channel; requests a handler should answer (as akernel's decoder reads them)
    answered or not, by type; kernel deaths; kernels silent for 10 + 30 s (stuck:
    replaced by a fresh one) or answering only after more than 10 s (slow); ``1+1`` at
    the end. ``--quick`` also prints 100 MB instead of 300 in scenario 3.

A request unanswered for ``--reply-timeout`` seconds (10) counts as "no reply"; every wait
has a timeout, so a hung kernel is an outcome, never a hung script. Every process the
script starts is killed when it ends, also on an error or Ctrl-C.

The Markdown table goes to stdout, progress to stderr; ``--json PATH`` also writes the
raw results. Exit status 1 if an akernel cell is not the expected outcome.

The code is the package benchmarks/hostile/ next to this script: one module per group of
scenarios, the client, the kernel processes, the report.
"""

import sys

from hostile.cli import main  # the package benchmarks/hostile/: it comes before this file

if __name__ == "__main__":
    sys.exit(main())
