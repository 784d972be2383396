"""Cell source files for the debugger: the names JupyterLab computes, and the files.

JupyterLab places breakpoints in a cell by a file name it derives itself:
prefix + MurmurHash2(cell source) + suffix, with the prefix, seed and suffix the
kernel announced in its debugInfo reply. The kernel must compile every cell under
exactly that name (:class:`CellCompiler`) and write the source there when asked
(:class:`CellFiles`), so the debugger and the frontend agree on what runs where.
"""

from __future__ import annotations

import functools
import os
import shutil
import struct
import tempfile
from typing import Any

from IPython.core.compilerop import CachingCompiler

__all__ = [
    "HASH_METHOD",
    "HASH_SEED",
    "TMP_FILE_SUFFIX",
    "CellCompiler",
    "CellFiles",
    "default_cell_dir",
    "murmur2",
]

HASH_SEED = 3339675911
"""Seed JupyterLab and the kernel agree on (sent in debugInfo as hashSeed)."""
HASH_METHOD = "Murmur2"
"""Name of the hash in debugInfo's hashMethod."""
TMP_FILE_SUFFIX = ".py"
"""Suffix of every cell file."""

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes, seed: int) -> int:
    """MurmurHash2, 32-bit, of ``data``: the value JupyterLab computes for cell names."""
    length = len(data)
    h = (seed ^ length) & _MASK
    blocks = length >> 2
    # One C-level unpack of all little-endian words beats slicing bytes in Python,
    # and the explicit "<" keeps the result right on big-endian machines too.
    # The last mask also trims h * M: xor with a 32-bit value leaves the low bits alone.
    for k in struct.unpack_from(f"<{blocks}I", data):
        k = (k * _M) & _MASK
        h = (h * _M ^ (((k ^ (k >> 24)) * _M) & _MASK)) & _MASK
    tail = length & 3
    if tail:
        k = int.from_bytes(data[blocks * 4 :], "little")
        h = ((h ^ k) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def default_cell_dir() -> str:
    """This process's directory of cell files, in the system's temporary directory.

    Named as ipykernel names its own: libraries recognise a notebook cell by it
    (``executing``, which IPython's tracebacks use, looks for ``/ipykernel_<pid>/``
    and otherwise shows blank lines and loses the failing node in cell tracebacks).
    """
    return os.path.join(tempfile.gettempdir(), f"ipykernel_{os.getpid()}")


class CellFiles:
    """The directory of cell source files the debugger shows and steps through.

    ``prefix_dir`` is made absolute; it is created (mode 0o700, cell sources may be
    private) the first time a cell is dumped.
    """

    def __init__(self, prefix_dir: str | os.PathLike[str], cache_size: int = 256) -> None:
        self.prefix_dir = os.path.abspath(os.fspath(prefix_dir))
        self.prefix = self.prefix_dir + os.sep
        # The same cell is compiled, then looked up by the debugger again and again;
        # hashing 2 KB in Python costs hundreds of microseconds, a cache hit does not.
        self._cached_path = functools.lru_cache(maxsize=cache_size)(self._compute_path)

    def _compute_path(self, code: str) -> str:
        return f"{self.prefix}{murmur2(code.encode('utf-8'), HASH_SEED)}{TMP_FILE_SUFFIX}"

    def path_for(self, code: str) -> str:
        """The file name JupyterLab computes for a cell with source ``code``."""
        return self._cached_path(code)

    def dump(self, code: str) -> str:
        """Write ``code`` to its cell file and return the path.

        The write goes to a temporary file renamed over the target, so the debugger
        never reads half a cell.
        """
        path = self.path_for(code)
        os.makedirs(self.prefix_dir, mode=0o700, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.prefix_dir, prefix=".cell-", suffix=".tmp")
        try:
            # Bytes, not text mode: newline translation would shift line numbers.
            with os.fdopen(fd, "wb") as stream:
                stream.write(code.encode("utf-8"))
            os.replace(temporary, path)
        except BaseException:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            raise
        return path

    def debug_info_fields(self) -> dict[str, Any]:
        """The debugInfo reply fields that tell the frontend how cells are named."""
        return {
            "hashMethod": HASH_METHOD,
            "hashSeed": HASH_SEED,
            "tmpFilePrefix": self.prefix,
            "tmpFileSuffix": TMP_FILE_SUFFIX,
        }

    def remove(self) -> None:
        """Delete the directory and every cell file in it; no error if it is gone."""
        shutil.rmtree(self.prefix_dir, ignore_errors=True)


class CellCompiler(CachingCompiler):
    """IPython's caching compiler, naming each cell by the file JupyterLab computes.

    Breakpoints set in the frontend then match ``co_filename`` of the running code,
    also in functions defined before the debugger started. Each cell's file is
    written the first time the cell runs: IPython shows a frame's source with
    stack_data (blank lines hidden, the failing expression marked) only for a
    ``.py`` file it can open; a missing one gets a plain window of lines.
    """

    def __init__(self, files: CellFiles | None = None) -> None:
        super().__init__()
        self.files = files if files is not None else CellFiles(default_cell_dir())
        self._written: set[str] = set()

    def get_code_name(self, raw_code: str, transformed_code: str, number: int) -> str:
        """Name the cell after its raw source, as the frontend sees it."""
        return self.files.path_for(raw_code)

    def cache(self, transformed_code: str, number: int = 0, raw_code: str | None = None) -> str:
        """Keep the code in linecache (as IPython does) and write the cell's file."""
        name = super().cache(transformed_code, number, raw_code)
        if name not in self._written:
            try:
                self.files.dump(transformed_code if raw_code is None else raw_code)
            except OSError:
                pass  # a read-only temporary directory: plainer tracebacks, nothing worse
            else:
                self._written.add(name)
        return name
