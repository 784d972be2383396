"""IPython's history database, safe to share between many kernels.

Many kernels (and ipykernel, and terminal IPython) commonly share one profile,
hence one ``history.sqlite``. IPython's ``HistoryManager`` takes every sqlite
error for corruption: a read that waits out sqlite's busy timeout ("database
is locked") renames the shared file to ``history-corrupt-*.sqlite`` and starts
a new one. Every process still holding the old file then fails its next write
with "attempt to write a readonly database" (sqlite refuses to write to a
moved file); one for which that happens inside a history read moves the *new*
file aside too, and so on. Renaming a database other processes are writing to
can also damage it for real: sqlite finds a transaction's rollback journal by
the file's name, which now belongs to the new file. IPython's saving thread
stops for good at its first error, dropping the batch it was writing.

``KernelHistoryManager`` keeps IPython's schema, queries and batching but
never renames or deletes the file: a busy database is waited for (reads give
up after ``busy_timeout`` with a warning); a batch that cannot be written yet
stays queued for the next write; a file another process moved aside is
followed to its replacement; a database that cannot be used at all is left
alone and the session's history stays in memory.
"""

from __future__ import annotations

import inspect
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from IPython.core.history import HistoryAccessor, HistoryManager
from traitlets import Float, default

if TYPE_CHECKING:
    pass

log = logging.getLogger("akernel.history")

T = TypeVar("T")

# sqlite result codes (https://www.sqlite.org/rescode.html).
_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_DAMAGE_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_READONLY_DBMOVED = 1032

# Pause between attempts on a busy database; sqlite's own busy handler waits
# up to the connection's timeout within each attempt.
_RETRY_PAUSE = 0.05
# jupyter_client kills a kernel that has not exited 5 s after its shutdown
# reply: the last history write must be done well before that.
_SHUTDOWN_BUDGET = 3.0
_DAMAGE_HINT = (
    " (the file is left as it is: move it away while no IPython process uses it, to start afresh)"
)


def _code(error: sqlite3.Error) -> int | None:
    # ``sqlite_errorcode`` (an extended code) exists from Python 3.11.
    return getattr(error, "sqlite_errorcode", None)


def is_busy(error: sqlite3.Error) -> bool:
    """Whether ``error`` means another connection holds the database (try again later)."""
    code = _code(error)
    if code is None:
        return "locked" in str(error)
    return code & 0xFF in _BUSY_CODES


def is_damaged(error: sqlite3.Error) -> bool:
    """Whether ``error`` means the database file itself is damaged."""
    code = _code(error)
    if code is None:
        text = str(error)
        return "malformed" in text or "not a database" in text
    return code & 0xFF in _DAMAGE_CODES


def _ipython(method: Callable[..., T]) -> Callable[..., T]:
    """IPython's method without its decorators (which move the file on any error)."""
    return inspect.unwrap(method)


def _inode(path: Any) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


class KernelHistoryManager(HistoryManager):
    """IPython's history manager, for a kernel that shares its database with
    other processes: waits out contention instead of taking it for corruption,
    and never drops input it could not write yet."""

    busy_timeout = Float(
        30.0,
        help="Seconds to wait for the history database while other processes hold it, "
        "when the kernel starts and for each history read, before going without it.",
    ).tag(config=True)

    @default("connection_options")
    def _default_connection_options(self) -> dict[str, Any]:
        # sqlite waits up to ``timeout`` within each attempt; the retry loops
        # here decide how long to keep trying in all.
        return {"check_same_thread": False, "timeout": 1.0}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Held by whoever writes to the database; the input cache has its own
        # lock, which cells take, so a cell never waits for the database.
        self._write_lock = threading.RLock()
        self._writer_db: sqlite3.Connection | None = None
        self._writer_inode: int | None = None
        self._db_inode: int | None = None
        self._write_failing = False
        super().__init__(*args, **kwargs)

    # -- connections ----------------------------------------------------------

    @property
    def _on_disk(self) -> bool:
        return bool(self.enabled) and str(self.hist_file) != ":memory:"

    def init_db(self) -> None:
        """Open the database, waiting while other processes hold it. One that
        cannot be used (damaged, unwritable, busy for too long) is left as it
        is, and this session's history stays in memory."""
        if not self._on_disk:
            _ipython(HistoryAccessor.init_db)(self)
            return
        deadline = time.monotonic() + self.busy_timeout
        while True:
            before = self.db
            try:
                _ipython(HistoryAccessor.init_db)(self)
            except sqlite3.DatabaseError as e:
                if self.db is not before:
                    self.db.close()
                if is_busy(e) and time.monotonic() < deadline:
                    time.sleep(_RETRY_PAUSE)
                    continue
                log.warning(
                    "history database %s unusable (%s): this session's history stays in memory%s",
                    self.hist_file,
                    e,
                    _DAMAGE_HINT if is_damaged(e) else "",
                )
                self.hist_file = ":memory:"
                _ipython(HistoryAccessor.init_db)(self)
                return
            self._db_inode = _inode(self.hist_file)
            return

    def _writer(self) -> sqlite3.Connection:
        """The connection history is written through (under ``_write_lock``)."""
        if not self._on_disk:
            return self.db
        if self._writer_db is None:
            options = {**self.connection_options, "check_same_thread": False}
            self._writer_db = sqlite3.connect(str(self.hist_file), **options)
            self._writer_inode = _inode(self.hist_file)
        return self._writer_db

    def _drop_writer(self) -> None:
        if self._writer_db is not None:
            self._writer_db.close()
            self._writer_db = None

    def _replaced(self) -> bool:
        """Whether the path now names another file than the one written to."""
        return self._writer_db is not None and _inode(self.hist_file) != self._writer_inode

    def _moved(self, error: sqlite3.Error) -> bool:
        """Whether a write failed because the file was moved away since the
        writer opened it (sqlite then refuses to write: "readonly database")."""
        code = _code(error)
        if code is not None:
            return code == _READONLY_DBMOVED
        return "readonly" in str(error) and self._replaced()

    def _follow_replacement(self) -> None:
        # IPython moves a database it takes for corrupt aside and starts a new
        # one. Writing on to the moved file is unsafe (sqlite finds a
        # transaction's journal by the path's name, now the new file's): go on
        # in the file now at the path, in a new session there.
        log.info("history database %s was replaced: following it", self.hist_file)
        self._drop_writer()
        self.new_session(self._writer())

    def close(self) -> None:
        super().close()
        with self._write_lock:
            self._drop_writer()

    # -- writing ----------------------------------------------------------------

    def new_session(self, conn: sqlite3.Connection | None = None) -> None:
        """Start a new session row, waiting while other processes hold the database."""
        if not self.enabled:
            return
        deadline = time.monotonic() + self.busy_timeout
        with self._write_lock:
            while True:
                target = conn if conn is not None else self._writer()
                try:
                    super().new_session(target)
                    return
                except sqlite3.OperationalError as e:
                    if time.monotonic() >= deadline:
                        raise
                    if conn is None and self._moved(e):
                        self._drop_writer()
                    elif not is_busy(e):
                        raise
                time.sleep(_RETRY_PAUSE)

    def writeout_cache(self, conn: sqlite3.Connection | None = None) -> None:
        """Write the cached input (and output) to the database. What cannot be
        written now (the database is busy, say) stays queued for the next write.

        ``conn`` is ignored: writes go through this manager's own connection,
        which it can reopen when the file is replaced.
        """
        if self.enabled:
            with self._write_lock:
                self._write_queued()

    def _write_queued(self) -> bool:
        """One attempt at writing the queue; whether it is empty afterwards."""
        with self.db_input_cache_lock:
            inputs, self.db_input_cache = self.db_input_cache, []
        with self.db_output_cache_lock:
            outputs, self.db_output_cache = self.db_output_cache, []
        if not inputs and not outputs:
            return True
        try:
            self._insert(inputs, outputs)
        except sqlite3.IntegrityError as e:
            # Not unique even in a new session: the batch repeats itself.
            log.warning("dropped %d history entries: %s", len(inputs) + len(outputs), e)
        except sqlite3.Error as e:
            with self.db_input_cache_lock:
                self.db_input_cache[:0] = inputs
            with self.db_output_cache_lock:
                self.db_output_cache[:0] = outputs
            if not is_busy(e) and not self._write_failing:
                log.warning("cannot write history to %s yet: %s", self.hist_file, e)
            self._write_failing = not is_busy(e)
            return False
        self._write_failing = False
        return True

    def _insert(self, inputs: list, outputs: list) -> None:
        """Insert one batch. Follows a file replaced by another process, and
        moves to a new session when this one's line numbers are taken (as
        IPython does)."""
        if self._replaced():
            self._follow_replacement()
        try:
            self._insert_once(inputs, outputs)
            return
        except sqlite3.IntegrityError:
            log.warning("history lines already stored: continuing in a new session")
            self.new_session(self._writer())
        except sqlite3.OperationalError as e:
            if not self._moved(e):
                raise
            self._follow_replacement()
        self._insert_once(inputs, outputs)

    def _insert_once(self, inputs: list, outputs: list) -> None:
        session = self.session_number
        with self._writer() as conn:
            conn.executemany(
                "INSERT INTO history VALUES (?, ?, ?, ?)", [(session, *row) for row in inputs]
            )
            conn.executemany(
                "INSERT INTO output_history VALUES (?, ?, ?)", [(session, *row) for row in outputs]
            )

    def end_session(self) -> None:
        """Write what is queued and close the session row, within the time a
        kernel has to exit; what cannot be written by then is reported."""
        if not self.enabled:
            self.session_number = 0
            return
        deadline = time.monotonic() + min(self.busy_timeout, _SHUTDOWN_BUDGET)
        with self._write_lock:
            while not self._write_queued():
                if self._write_failing or time.monotonic() >= deadline:
                    break
                time.sleep(_RETRY_PAUSE)
            lost = len(self.db_input_cache)
            while True:
                try:
                    with self._writer() as conn:
                        conn.execute(
                            "UPDATE sessions SET end=?, num_cmds=? WHERE session==?",
                            (
                                datetime.now(timezone.utc).isoformat(" "),
                                len(self.input_hist_parsed) - 1,
                                self.session_number,
                            ),
                        )
                    break
                except sqlite3.Error as e:
                    if not (is_busy(e) and time.monotonic() < deadline):
                        log.warning("cannot close history session: %s", e)
                        break
                time.sleep(_RETRY_PAUSE)
        if lost:
            log.warning("%d history entries could not be written to %s", lost, self.hist_file)
        self.session_number = 0

    # -- reading ------------------------------------------------------------------

    def _read(self, read: Callable[[], T], fallback: T, *, queued_first: bool = False) -> T:
        """``read()``, waiting while the database is busy; ``fallback`` and a
        warning when it stays busy or fails otherwise. With ``queued_first``,
        what is queued is written first (reads that include this session's)."""
        if not self.enabled:
            return fallback
        if self._on_disk and _inode(self.hist_file) != self._db_inode:
            # Replaced by another process since we opened it: read the new one.
            stale = self.db
            self.init_db()
            if stale is not self.db:
                stale.close()
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                if queued_first and not self._write_now():
                    raise sqlite3.OperationalError("database is locked")
                return read()
            except sqlite3.DatabaseError as e:
                if not (is_busy(e) and time.monotonic() < deadline):
                    log.warning(
                        "history database %s unavailable: %s%s",
                        self.hist_file,
                        e,
                        _DAMAGE_HINT if is_damaged(e) else "",
                    )
                    return fallback
            time.sleep(_RETRY_PAUSE)

    def _write_now(self) -> bool:
        """Write the queue; False if the database was too busy to (other
        failures are reported by the writer and do not hold reads back)."""
        with self._write_lock:
            return self._write_queued() or self._write_failing

    def get_tail(
        self,
        n: int | None = 10,
        raw: bool = True,
        output: bool = False,
        include_latest: bool = False,
    ) -> list:
        args = (n, raw, output, include_latest)
        return self._read(
            lambda: list(_ipython(HistoryManager.get_tail)(self, *args)), [], queued_first=True
        )

    def search(
        self,
        pattern: str = "*",
        raw: bool = True,
        search_raw: bool = True,
        output: bool = False,
        n: int | None = None,
        unique: bool = False,
    ) -> list:
        args = (pattern, raw, search_raw, output, n, unique)
        # Read to the end: a cursor left half-read would keep the database locked.
        return self._read(
            lambda: list(_ipython(HistoryAccessor.search)(self, *args)), [], queued_first=True
        )

    def get_range(
        self,
        session: int = 0,
        start: int = 1,
        stop: int | None = None,
        raw: bool = True,
        output: bool = False,
    ) -> Any:
        if session <= 0:
            session += self.session_number
        if session == self.session_number:
            return super().get_range(session, start, stop, raw, output)
        args = (session, start, stop, raw, output)
        return self._read(lambda: list(_ipython(HistoryAccessor.get_range)(self, *args)), [])

    def get_session_info(self, session: int = 0) -> Any:
        if session <= 0:
            session += self.session_number
        return self._read(lambda: _ipython(HistoryAccessor.get_session_info)(self, session), None)
