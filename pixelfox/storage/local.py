"""Atomic writes and hashing on local disk: the one writer every path goes through."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1024 * 1024


class TooLarge(Exception):
    """The stream passed its byte limit; nothing was kept."""


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


def stream_to_temp(chunks: Iterable[bytes], directory: Path, limit: int | None = None) -> Written:
    """Write chunks to a new temp file in `directory`, hashing as they pass.
    Raises TooLarge (and removes the temp file) past `limit` bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="up-", suffix=".part", dir=directory)
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                size += len(chunk)
                if limit is not None and size > limit:
                    raise TooLarge(size)
                digest.update(chunk)
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise
    return Written(Path(name), size, digest.hexdigest())


def iter_file(fh, chunk: int = CHUNK) -> Iterable[bytes]:
    while True:
        block = fh.read(chunk)
        if not block:
            return
        yield block


def commit_temp(temp: Path, final: Path) -> None:
    """Move a finished temp file into place atomically and make the rename durable."""
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp, final)
    fsync_dir(final.parent)


def write_atomic(final: Path, produce: Callable[[Path], None]) -> Written:
    """Let `produce(tmp_path)` write a file next to `final`, then hash it and rename it in.
    A crash leaves at most a `.part` file, never a half-written `final`."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        produce(tmp)
        size, digest = hash_file(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        commit_temp(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return Written(final, size, digest)


def hash_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter_file(fh):
            size += len(block)
            digest.update(block)
    return size, digest.hexdigest()


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


class Mismatch(Exception):
    """The bytes written are not the bytes announced (size or SHA-256); nothing was kept."""


def receive_verified(
    chunks: Iterable[bytes], final: Path, size: int, sha256: str | None, sync_dir: bool = True
) -> Written:
    """Write `chunks` next to `final`, hashing as they pass; keep them only if size (and
    SHA-256 when given) match, then fsync, rename into place and fsync the directory (the
    caller may fsync directories itself, once for many files, with sync_dir=False)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    tmp = Path(name)
    digest = hashlib.sha256()
    written = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                written += len(chunk)
                if written > size:
                    raise Mismatch(f"more than the announced {size} bytes")
                digest.update(chunk)
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        if written != size:
            raise Mismatch(f"{written} bytes received, {size} announced")
        if sha256 and digest.hexdigest() != sha256.lower():
            raise Mismatch("SHA-256 does not match")
        if sync_dir:
            commit_temp(tmp, final)
        else:
            os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return Written(final, written, digest.hexdigest())
