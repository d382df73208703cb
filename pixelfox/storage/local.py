"""Files on local disk: the one atomic writer (temp file hashed while written, fsynced, renamed
into place), hashing, and the cleanup of temp files left by writers that died.

Every temp file lives in its pool's `.tmp/` directory (same filesystem as the final name, so
the rename is atomic) and is `flock`ed by the process writing it: a temp file that nobody
holds a lock on belongs to a writer that crashed or was killed, and can go at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1024 * 1024
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
TEMP_SUFFIX = ".part"


class TooLarge(Exception):
    """The stream passed its byte limit; nothing was kept."""


class Mismatch(Exception):
    """The bytes written are not the bytes announced (size or SHA-256); nothing was kept."""


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC / EDQUOT: the filesystem (or the user's quota) has no room left."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL


@dataclass
class Written:
    path: Path
    size: int
    sha256: str


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def iter_file(fh, chunk: int = CHUNK) -> Iterable[bytes]:
    while True:
        block = fh.read(chunk)
        if not block:
            return
        yield block


def hash_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter_file(fh):
            size += len(block)
            digest.update(block)
    return size, digest.hexdigest()


class TempFile:
    """A new temp file in `directory`, locked by this process while it exists, hashed as it
    is written. `commit(final)` makes it durable and renames it into place; `discard()` (or
    leaving the `with` block by an exception) removes it."""

    def __init__(self, directory: Path, prefix: str = "tmp-"):
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=TEMP_SUFFIX, dir=directory)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self.fh = os.fdopen(fd, "wb")
        self.path = Path(name)
        self.size = 0
        self._digest = hashlib.sha256()
        self._produced: str | None = None  # digest of bytes another writer put there

    def __enter__(self) -> TempFile:
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if kind is not None:
            self.discard()
        return False

    @property
    def sha256(self) -> str:
        return self._produced or self._digest.hexdigest()

    def write(self, chunks: Iterable[bytes], limit: int | None = None) -> TempFile:
        """Append chunks, hashing them; TooLarge past `limit` bytes (the caller discards)."""
        for chunk in chunks:
            self.size += len(chunk)
            if limit is not None and self.size > limit:
                raise TooLarge(self.size)
            self._digest.update(chunk)
            self.fh.write(chunk)
        return self

    def produced(self, produce: Callable[[Path], None]) -> TempFile:
        """Let another writer (ImageMagick) fill the file by its path, then hash it."""
        self.fh.flush()
        produce(self.path)
        self.size, self._produced = hash_file(self.path)
        return self

    def verify(self, size: int, sha256: str | None) -> TempFile:
        """Mismatch unless the bytes written are `size` bytes with this SHA-256."""
        if self.size != size:
            raise Mismatch(f"{self.size} bytes received, {size} announced")
        if sha256 and self.sha256 != sha256.lower():
            raise Mismatch("SHA-256 does not match")
        return self

    def commit(self, final: Path, sync_dir: bool = True) -> Written:
        """fsync, rename into place, fsync the directory (or leave that to the caller, once for
        many files, with sync_dir=False). The lock goes with the file handle."""
        self.fh.flush()
        os.fsync(self.fh.fileno())
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, final)
        self.fh.close()
        if sync_dir:
            fsync_dir(final.parent)
        return Written(final, self.size, self.sha256)

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.fh.close()


def receive_verified(
    chunks: Iterable[bytes],
    final: Path,
    size: int,
    sha256: str | None,
    temp_dir: Path,
    sync_dir: bool = True,
) -> Written:
    """Write `chunks` and keep them at `final` only if size (and SHA-256 when given) match."""
    with TempFile(temp_dir, f"{final.name}.") as temp:
        try:
            temp.write(chunks, limit=size)
        except TooLarge as exc:
            raise Mismatch(f"more than the announced {size} bytes") from exc
        return temp.verify(size, sha256).commit(final, sync_dir)


def write_atomic(final: Path, produce: Callable[[Path], None], temp_dir: Path) -> Written:
    """Let `produce(tmp_path)` write the file, then hash it and rename it in: a crash leaves
    at most a temp file (removed by the cleanup), never a half-written `final`."""
    with TempFile(temp_dir, f"{final.name}.") as temp:
        return temp.produced(produce).commit(final)


def remove(path: Path) -> bool:
    """Delete a file if present; True when something was removed."""
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


def disk_usage(path: str) -> tuple[int, int]:
    """(free, total) bytes of the filesystem holding `path`."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def remove_dead_temp(path: Path, min_age: float) -> bool:
    """Remove a temp file older than `min_age` seconds whose writer is gone (nobody holds its
    lock). The age keeps a file just created, not locked yet, out of reach."""
    try:
        if time.time() - path.stat().st_mtime < min_age:
            return False
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False  # a live writer
    try:
        return remove(path)
    finally:
        os.close(fd)
