"""A pool's files as uploads, processing and deletion use them. A local pool's files are used
in place. An object-storage pool is worked on through a local staging directory in TMP_DIR:
what a job reads is downloaded there first (and checked against its SHA-256), what it makes
is rendered there and then uploaded — verified by the store — before any row describes it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from flask import current_app

from pixelfox.models import StoragePool
from pixelfox.services import objectstore
from pixelfox.storage import local, paths, s3
from pixelfox.storage.copy import PoolRef

STAGE_PREFIX = "stage-"  # staging directories in TMP_DIR (removed when stale by the sweeper)


def ref(pool: StoragePool) -> PoolRef:
    """A pool as the copier needs it (plain values, safe in a copy thread)."""
    cfg = objectstore.config(pool) if pool.is_s3 else None
    return PoolRef(pool.id, pool.node_id, pool.base_path, pool.upload_api_url, cfg)


def scratch() -> str:
    """Where copies from a bucket are downloaded to and checked."""
    return current_app.config["TMP_DIR"]


class PoolFiles:
    def __init__(self, pool: StoragePool):
        self.pool = pool
        self.remote = pool.is_s3
        self._base: Path | None = None if self.remote else Path(pool.base_path)
        if self.remote:
            self.cfg = objectstore.config(pool)

    def __enter__(self) -> PoolFiles:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def close(self) -> None:
        if self.remote and self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None

    @property
    def base(self) -> Path:
        """The directory the pool's relative paths resolve in (for an object-storage pool, a
        staging directory made on first use and removed by close())."""
        if self._base is None:
            scratch = Path(current_app.config["TMP_DIR"])
            scratch.mkdir(parents=True, exist_ok=True)
            self._base = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=scratch))
        return self._base

    @property
    def tmp(self) -> Path:
        """Where temp files go (same filesystem as `path()`, so renames are atomic)."""
        return paths.tmp_dir(str(self.base))

    def path(self, rel: str) -> Path:
        """The local file of `rel` (for an object-storage pool: in the staging directory)."""
        return paths.resolve(str(self.base), rel)

    def fetch(self, rel: str, sha256: str | None = None) -> Path:
        """A local file with `rel`'s bytes. From a bucket it is downloaded and checked against
        the SHA-256 recorded when it was written, and against `sha256` when given.
        s3.S3Error or local.Mismatch when it cannot be had."""
        target = self.path(rel)
        if not self.remote or target.exists():
            return target
        with local.TempFile(self.tmp, f"{target.name}.") as temp:
            recorded = s3.download(self.cfg, rel, lambda block: temp.write([block]))
            for expected in (recorded, sha256):
                if expected and temp.sha256 != expected:
                    raise local.Mismatch(f"{rel} in the bucket does not match its SHA-256")
            temp.commit(target, sync_dir=False)
        return target

    def publish(self, target: Path, sha256: str) -> None:
        """Upload a file rendered in the staging directory (no-op for a local pool, whose
        files are already in place)."""
        if self.remote:
            rel = target.relative_to(self.base.resolve()).as_posix()
            s3.put_file(self.cfg, rel, target, sha256, hashed=True)  # hashed when rendered

    def store(self, temp: local.TempFile, rel: str) -> None:
        """Put a finished temp file at `rel`: renamed into place, or uploaded (verified by the
        store) and the temp file dropped. s3.S3Error when the store refused."""
        if not self.remote:
            temp.commit(self.path(rel))
            return
        temp.fh.flush()
        s3.put_file(self.cfg, rel, temp.path, temp.sha256, hashed=True)  # hashed as written
        temp.discard()

    def exists(self, rel: str, size: int) -> bool:
        """Is `rel` there with this size?"""
        if self.remote:
            found = s3.head(self.cfg, rel)
            return found is not None and found["size"] == size
        target = self.path(rel)
        return target.is_file() and target.stat().st_size == size

    def remove(self, rel: str) -> int:
        """Delete `rel`; the bytes freed (0 if it was not there)."""
        if self.remote:
            found = s3.head(self.cfg, rel)
            if found is None:
                return 0
            s3.delete(self.cfg, rel)
            return found["size"]
        target = self.path(rel)
        try:
            size = target.stat().st_size
        except FileNotFoundError:
            return 0
        return size if local.remove(target) else 0
