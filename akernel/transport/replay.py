"""The replay guard kept on disk, so that a restarted kernel still refuses old messages.

A restart (``KernelManager.restart_kernel``) starts a new kernel process with
the same connection file, hence the same key: a message captured before the
restart is correctly signed for the new kernel too. The signatures a kernel
accepts are therefore appended to a file, which the next kernel with the same
key loads before it serves. Header dates are not used for this: through
jupyter_server they come from the browser's clock, which may be wrong.

The file lives in Jupyter's runtime directory, named after a digest of the
key (never the key itself), is readable by its owner only, and holds raw
signature digests. It is removed when a client shuts the kernel down for
good, kept across restarts (requested or not: a crashed kernel is restarted
too), and files no kernel has touched for a week are removed at start.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

from ..wire import SignatureHistory

log = logging.getLogger("akernel")

PREFIX = "akernel-replay-"
_STALE_AFTER = 7 * 24 * 3600


def guard_file(runtime_dir: str | os.PathLike[str], key: bytes) -> Path:
    """Where the replay guard of kernels signing with ``key`` is kept."""
    digest = hashlib.sha256(b"akernel replay guard\0" + key).hexdigest()[:24]
    return Path(runtime_dir) / f"{PREFIX}{digest}.bin"


class PersistentSignatureHistory(SignatureHistory):
    """A :class:`SignatureHistory` that also appends what it accepts to a file."""

    def __init__(self, path: str | os.PathLike[str], digest_size: int, size: int = 2**16):
        self.path = Path(path)
        self._record = digest_size
        _remove_stale(self.path.parent)
        super().__init__(size, self._load(size))
        self._fd = _open_for_append(self.path)
        self._records_in_file = os.fstat(self._fd).st_size // digest_size

    def _load(self, count: int) -> list[bytes]:
        """The last ``count`` signatures in the file."""
        try:
            with open(self.path, "rb") as f:
                f.seek(0, os.SEEK_END)
                length = f.tell()
                keep = min(length - length % self._record, count * self._record)
                f.seek(length - length % self._record - keep)
                data = f.read(keep)
        except FileNotFoundError:
            return []
        except OSError as e:
            log.warning("replay guard %s unreadable (%s): starting afresh", self.path, e)
            return []
        size = self._record
        # Signatures travel as hex: remember them in that form.
        return [data[i : i + size].hex().encode() for i in range(0, len(data), size)]

    def accepted(self, signature: bytes) -> None:
        try:
            os.write(self._fd, bytes.fromhex(signature.decode("ascii")))
        except (ValueError, OSError) as e:
            log.warning("replay guard %s not updated: %s", self.path, e)
            return
        self._records_in_file += 1
        if self._records_in_file > 2 * self.size:
            self._compact()

    def _compact(self) -> None:
        """Rewrite the file with what is remembered (it only ever grew)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        recent = self.recent()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"".join(bytes.fromhex(s.decode("ascii")) for s in recent))
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        os.close(self._fd)
        self._fd = _open_for_append(self.path)
        self._records_in_file = len(recent)

    def close(self, *, forget: bool) -> None:
        """Stop recording; with ``forget`` (a final shutdown), remove the file."""
        os.close(self._fd)
        if forget:
            self.path.unlink(missing_ok=True)


def _open_for_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def _remove_stale(directory: Path) -> None:
    now = time.time()
    try:
        for path in directory.glob(f"{PREFIX}*.bin"):
            try:
                if now - path.stat().st_mtime > _STALE_AFTER:
                    path.unlink()
            except OSError:
                pass
    except OSError:
        pass
