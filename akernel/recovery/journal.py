"""The crash journal: an append-only record of what a kernel is doing, for its successor.

When a kernel process dies (a segfault, ``os.abort()``, SIGKILL from the
out-of-memory killer), the frontend restarts it with the same connection file.
The new kernel finds its predecessor's journal beside that file
(:func:`journal_paths`), reads it (:meth:`Journal.open`, :func:`read_journal`),
and starts a fresh one.

Each record is one line: ``LLLLLLLL CCCCCCCC {json}\\n`` where ``L`` is the
body's length in bytes and ``C`` its CRC32, both as 8 hex digits. A reader
stops at the first record whose header, length, CRC, newline or JSON does not
check out, so a record torn by the crash (or any garbage) ends the journal
instead of breaking it.

Records go out with one ``os.write`` on an ``O_APPEND`` descriptor and are not
fsynced: once ``write`` returns they are in the kernel's page cache, which
survives the death of this process, but a machine crash or power loss can lose
the last records (or the whole tail). That is the price of a few microseconds
per record on the execute path.

Journals hold cell inputs, so both files are created with mode 0o600 in the
connection file's directory (the runtime directory, itself private), and the
journal is bounded: past ``max_bytes`` it is compacted (:meth:`Journal._compact`).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "CELL_STATUSES",
    "DEFAULT_MAX_BYTES",
    "Journal",
    "JournalContents",
    "JournalPaths",
    "Predecessor",
    "encode_record",
    "journal_paths",
    "read_journal",
]

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
"""Default bound on a journal's size."""

CELL_STATUSES = frozenset({"ok", "error", "aborted"})
"""The statuses a ``cell_finished`` record may carry."""

JOURNAL_SUFFIX = ".akernel-journal"
FAULT_SUFFIX = ".akernel-fault"

_HEADER_LEN = 18  # "%08x %08x " : length, space, crc, space
_HEX = frozenset(b"0123456789abcdef")
_MAX_READ_BYTES = 256 * 1024 * 1024  # a journal bigger than this is not ours: read its head only
_MAX_FAULT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class JournalPaths:
    """Where a kernel's journal and its faulthandler output live."""

    journal: str
    fault: str


def journal_paths(connection_file: str | os.PathLike[str]) -> JournalPaths:
    """The journal and fault file of the kernel using ``connection_file``.

    They sit beside it and are named after it (``kernel-abc.json`` gives
    ``kernel-abc.akernel-journal`` and ``kernel-abc.akernel-fault``), so a kernel
    restarted with the same connection file finds its predecessor's.
    """
    path = os.path.abspath(os.fspath(connection_file))
    stem, ext = os.path.splitext(path)
    if ext != ".json":
        stem = path
    return JournalPaths(journal=stem + JOURNAL_SUFFIX, fault=stem + FAULT_SUFFIX)


def encode_record(record: dict[str, Any]) -> bytes:
    """One journal line for ``record``: header (length, CRC32), JSON body, newline."""
    # orjson: compact UTF-8 JSON at a tenth of json.dumps' cost (this is on
    # every cell's path). Lone surrogates, which it refuses, are escaped.
    try:
        body = orjson.dumps(record)
    except TypeError:
        body = json.dumps(record, ensure_ascii=True, separators=(",", ":")).encode()
    return b"%08x %08x %s\n" % (len(body), zlib.crc32(body), body)


@dataclass
class JournalContents:
    """What could be read of a journal.

    ``records`` are the valid records in order, up to the first torn or invalid
    one; ``torn`` says reading stopped early; ``clean`` says the kernel ended
    with a ``stop`` record; ``exists`` says there was a file at all.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    clean: bool = False
    torn: bool = False
    exists: bool = False


def _parse_records(data: bytes) -> tuple[list[dict[str, Any]], bool]:
    """The valid records of ``data`` and whether invalid bytes followed them."""
    records: list[dict[str, Any]] = []
    pos = 0
    end = len(data)
    while pos < end:
        header = data[pos : pos + _HEADER_LEN]
        if (
            len(header) < _HEADER_LEN
            or header[8:9] != b" "
            or header[17:18] != b" "
            or not _HEX.issuperset(header[:8])
            or not _HEX.issuperset(header[9:17])
        ):
            return records, True
        length = int(header[:8], 16)
        crc = int(header[9:17], 16)
        body_start = pos + _HEADER_LEN
        body_end = body_start + length
        if body_end >= end or data[body_end : body_end + 1] != b"\n":
            return records, True
        body = data[body_start:body_end]
        if zlib.crc32(body) != crc:
            return records, True
        try:
            record = json.loads(body)
        except ValueError:  # includes UnicodeDecodeError
            return records, True
        if not isinstance(record, dict) or not isinstance(record.get("kind"), str):
            return records, True
        records.append(record)
        pos = body_end + 1
    return records, False


def read_journal(path: str | os.PathLike[str]) -> JournalContents:
    """Read the journal at ``path``; never raises on a missing, empty or garbled file."""
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_READ_BYTES)
    except FileNotFoundError:
        return JournalContents()
    except OSError:
        return JournalContents(exists=True, torn=True)
    records, torn = _parse_records(data)
    clean = bool(records) and records[-1]["kind"] == "stop"
    return JournalContents(records=records, clean=clean, torn=torn, exists=True)


def _read_fault_text(path: str) -> str:
    """The predecessor's faulthandler output, or "" when there is none."""
    try:
        with open(path, "rb") as f:
            return f.read(_MAX_FAULT_BYTES).decode("utf-8", "replace")
    except OSError:
        return ""


@dataclass
class Predecessor:
    """What the previous kernel with this connection file left behind."""

    contents: JournalContents
    fault_text: str


def _replace_with(path: str, data: bytes) -> None:
    """Atomically make ``path`` a 0o600 file holding ``data`` (write a temp, rename it over)."""
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=name + ".", suffix=".tmp", dir=directory)  # mode 0o600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _open_append(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)


class Journal:
    """A running kernel's journal; create it with :meth:`Journal.open`."""

    def __init__(self, paths: JournalPaths, fd: int, fault_fd: int, size: int, max_bytes: int):
        self.paths = paths
        self.max_bytes = max_bytes
        self._fd = fd
        self._fault_fd = fault_fd
        self._size = size
        self.compactions = 0
        """How many times the journal was compacted (for tests and diagnostics)."""

    @classmethod
    def open(
        cls,
        paths: JournalPaths,
        *,
        pid: int,
        backend: str,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> tuple[Journal, Predecessor]:
        """Read the predecessor's journal and fault file, then start fresh ones.

        The old files are replaced by rename, never overwritten in place, so a
        crash during the switch leaves one whole file or the other. The
        interpreter's main thread is recorded so that the report can pick that
        thread's stack out of faulthandler's output.
        """
        if max_bytes < 4096:
            raise ValueError(f"max_bytes must be at least 4096, not {max_bytes}")
        predecessor = Predecessor(read_journal(paths.journal), _read_fault_text(paths.fault))
        start = encode_record(
            {
                "kind": "start",
                "pid": pid,
                "backend": backend,
                "main_thread": threading.main_thread().ident,
                "time": time.time(),
            }
        )
        _replace_with(paths.fault, b"")
        _replace_with(paths.journal, start)
        fault_fd = _open_append(paths.fault)
        try:
            fd = _open_append(paths.journal)
        except BaseException:
            os.close(fault_fd)
            raise
        return cls(paths, fd, fault_fd, len(start), max_bytes), predecessor

    @property
    def fault_fd(self) -> int:
        """The fault file's descriptor, for ``faulthandler.enable(file=..., all_threads=True)``."""
        return self._fault_fd

    @property
    def closed(self) -> bool:
        """Whether the journal was closed."""
        return self._fd < 0

    def _append(self, record: dict[str, Any]) -> None:
        if self._fd < 0:
            raise ValueError("the journal is closed")
        line = encode_record(record)
        if self._size + len(line) > self.max_bytes:
            self._compact(len(line))
        os.write(self._fd, line)
        self._size += len(line)

    def cell_started(self, count: int, code: str, *, replayable: bool = True) -> None:
        """Record that cell ``count`` starts running ``code``.

        Code too big for a quarter of the bound is cut: the report can still show
        its first lines, but ``truncated`` keeps it out of a replay, as
        ``replayable=False`` does.
        """
        limit = self.max_bytes // 4
        record: dict[str, Any] = {"kind": "cell_started", "count": count, "time": time.time()}
        if not replayable:
            record["replay"] = False
        if len(code) > limit // 4 and len(code.encode()) > limit:
            record["code"] = code.encode()[:limit].decode("utf-8", "ignore")
            record["truncated"] = True
        else:
            record["code"] = code
        self._append(record)

    def cell_finished(self, count: int, status: str) -> None:
        """Record that cell ``count`` finished with ``status`` ("ok", "error" or "aborted")."""
        if status not in CELL_STATUSES:
            raise ValueError(f"cell status must be one of {sorted(CELL_STATUSES)}, not {status!r}")
        self._append({"kind": "cell_finished", "count": count, "status": status})

    def memory_sample(self, rss: int, limit: int, source: str) -> None:
        """Record the process's resident memory and the limit it lives under."""
        self._append(
            {"kind": "memory", "rss": rss, "limit": limit, "source": source, "time": time.time()}
        )

    def close_cleanly(self) -> None:
        """Write the ``stop`` record and close: the successor will report nothing."""
        if self._fd >= 0:
            self._append({"kind": "stop", "time": time.time()})
        self.close()

    def close(self) -> None:
        """Close without a ``stop`` record (as a crash would leave it)."""
        for fd in (self._fd, self._fault_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._fault_fd = -1

    def _compact(self, incoming: int) -> None:
        """Rewrite the journal within half its bound, keeping what recovery needs.

        Kept: the ``start`` record, the inputs of the newest cells that finished
        ok (oldest dropped first, counted in a ``dropped`` record), the last
        memory sample and a cell still running. Half the bound, so compaction is
        rare (amortised) rather than triggered by every record once full.
        """
        records = read_journal(self.paths.journal).records
        start: dict[str, Any] | None = None
        memory: dict[str, Any] | None = None
        dropped = 0
        started: dict[int, dict[str, Any]] = {}
        ok_cells: list[dict[str, Any]] = []
        for record in records:
            kind = record["kind"]
            if kind == "start":
                start = record
            elif kind == "memory":
                memory = record
            elif kind == "dropped":
                dropped += int(record.get("cells", 0))
            elif kind == "cell_started":
                started[record.get("count", -1)] = record
            elif kind == "cell_finished":
                begun = started.pop(record.get("count", -1), None)
                if begun is not None and record.get("status") == "ok":
                    if begun.get("replay", True) is False:
                        pass  # never replayed: not worth keeping
                    elif begun.get("truncated"):
                        dropped += 1
                    else:
                        ok_cells.append(begun)
        head = encode_record(start) if start is not None else b""
        tail = encode_record(memory) if memory is not None else b""
        # Only the newest unfinished cell can still be running; older ones lost their end.
        running = encode_record(list(started.values())[-1]) if started else b""
        budget = self.max_bytes // 2 - len(head) - len(tail) - len(running) - incoming - 64
        kept: list[bytes] = []
        for cell in reversed(ok_cells):
            line = encode_record(cell) + encode_record(
                {"kind": "cell_finished", "count": cell["count"], "status": "ok"}
            )
            if len(line) > budget:
                break
            kept.append(line)
            budget -= len(line)
        dropped += len(ok_cells) - len(kept)
        note = encode_record({"kind": "dropped", "cells": dropped}) if dropped else b""
        data = head + note + b"".join(reversed(kept)) + tail + running
        _replace_with(self.paths.journal, data)
        fd = _open_append(self.paths.journal)
        os.close(self._fd)
        self._fd = fd
        self._size = len(data)
        self.compactions += 1
