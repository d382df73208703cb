"""Verified copies of a pool's files into another pool: on this node by a hard link (same
filesystem) or a streamed copy, to another node by an HTTP push to its replicate endpoint, to
a bucket by an upload from this node. A bucket's file is first downloaded to a scratch file
here and checked. Pure file, HTTP and S3 code: this node's id, the replication secret, the
scratch directory and the throttle are passed in, so pool moves, replicas and repair all copy
the same way.

Every copy is checked against the SHA-256 the database records for the file, and is
idempotent: the same bytes already at the target count as copied; different bytes there are
a conflict (never overwritten). An upload to a bucket is verified by the store (Content-MD5 of
bytes hashed as they are read) and checked by size afterwards.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pixelfox.storage import local, paths, push, s3


@dataclass(frozen=True)
class FileRef:
    """One file of an image, as the database describes it."""

    rel: str
    sha256: str
    size: int


@dataclass(frozen=True)
class PoolRef:
    """The pool fields a copy needs, as plain values (safe to use in a copy thread)."""

    id: int
    node_id: str
    base_path: str
    upload_api_url: str | None
    s3: s3.S3Config | None = None  # an object-storage pool's bucket

    def same_file(self, other: PoolRef, rel: str) -> bool:
        """Do both pools name one and the same file (or object) at `rel`?"""
        if self.s3 or other.s3:
            if not (self.s3 and other.s3):
                return False
            a, b = self.s3, other.s3
            return (a.endpoint, a.bucket, a.key(rel)) == (b.endpoint, b.bucket, b.key(rel))
        if self.node_id != other.node_id:
            return False
        return paths.resolve(self.base_path, rel) == paths.resolve(other.base_path, rel)


class CopyFailed(Exception):
    """This file cannot be copied (missing, damaged, a conflict, refused); for people."""


class CopyRetry(Exception):
    """Try again later (network, target restarting, checksum refused in transit)."""


class SourceMissing(CopyFailed):
    """The source file is gone (and the target has no verified copy of it)."""


def _no_throttle(_n: int) -> None:
    return None


@dataclass
class Copier:
    """Copies files from a pool that lives on `here` (this node)."""

    here: str
    secret: str | None = None
    allow_insecure: bool = False
    throttle: Callable[[int], None] = _no_throttle
    # Replace different bytes at the target (repairing a corrupt or stale copy) instead of
    # refusing them: safe, as what is written is verified against the recorded SHA-256.
    overwrite: bool = False
    scratch: str | None = None  # where files from a bucket are downloaded to (TMP_DIR)

    def copy(self, source: PoolRef, target: PoolRef, f: FileRef, synced: set | None = None):
        """Make a verified copy of one file in the target pool. Copies on this node leave the
        directory fsync to the caller when it passes `synced` (directories collect there)."""
        if source.same_file(target, f.rel):
            return
        if target.s3 is not None:
            self._upload(source, target, f)
        elif source.s3 is not None:
            try:
                with self._download(source, f) as temp:
                    self._to_node(temp, target, f, synced)
            except SourceMissing:
                if not self._on_node(target, f):
                    raise  # (else: copied by another run before it deleted the source)
        else:
            self._to_node(paths.resolve(source.base_path, f.rel), target, f, synced)

    def _to_node(self, src: Path, target: PoolRef, f: FileRef, synced: set | None) -> None:
        if target.node_id == self.here:
            self._copy_here(src, target, f, synced)
        else:
            self._push(src, target, f)

    @contextlib.contextmanager
    def _download(self, source: PoolRef, f: FileRef) -> Iterator[Path]:
        """A scratch file with a bucket's bytes of `f`, verified against its recorded size and
        SHA-256; removed when the block ends."""
        temp = local.TempFile(Path(self.scratch or tempfile.gettempdir()), "copy-")
        try:
            try:
                s3.download(source.s3, f.rel, lambda block: temp.write([block]), self.throttle)
            except s3.S3Error as exc:
                if exc.retry:
                    raise CopyRetry(f"the source bucket: {exc.message}") from exc
                raise SourceMissing(f"{f.rel}: {exc.message}") from exc
            temp.fh.flush()
            if temp.size != f.size or temp.sha256 != f.sha256:
                raise CopyFailed(
                    f"{f.rel} in the source bucket does not match its recorded SHA-256; "
                    "it was not copied."
                )
            yield temp.path
        finally:
            temp.discard()

    def _on_node(self, target: PoolRef, f: FileRef) -> bool:
        """Does the target pool (on a node) hold `f` with its recorded SHA-256?"""
        if target.node_id == self.here:
            dst = paths.resolve(target.base_path, f.rel)
            return dst.is_file() and local.hash_file(dst)[1] == f.sha256
        try:
            url = push.replicate_url(target.upload_api_url or "")
            there = push.remote_stat(url, self.secret or "", target.id, f.rel)
        except push.PushError as exc:
            raise CopyRetry(f"cannot reach node {target.node_id}: {exc.message}") from exc
        return bool(there) and there["sha256"] == f.sha256

    def _upload(self, source: PoolRef, target: PoolRef, f: FileRef) -> None:
        """Into a bucket: kept if the same bytes are there (size and recorded SHA-256),
        else uploaded from the source file (verified as it is read, and by the store)."""
        try:
            there = s3.head(target.s3, f.rel)
            if there is not None and there["size"] == f.size and there["sha256"] == f.sha256:
                return
            if there is not None and not self.overwrite:
                raise CopyFailed(f"A different object is already at {f.rel} in the bucket.")
            if source.s3 is not None:
                with self._download(source, f) as temp:
                    s3.put_file(target.s3, f.rel, temp, f.sha256, hashed=True)  # just verified
            else:
                src = paths.resolve(source.base_path, f.rel)
                if not src.exists():
                    raise CopyFailed(
                        f"{f.rel} is missing on the source and has no copy in the bucket."
                    )
                s3.put_file(target.s3, f.rel, src, f.sha256, self.throttle)
            # Verified: the store acknowledged the bytes by their Content-MD5, and they were
            # the recorded ones (SHA-256 checked as they were read, so the size is too).
        except s3.SourceMismatch as exc:
            raise CopyFailed(
                f"{f.rel} on the source does not match its recorded SHA-256; it was not copied."
            ) from exc
        except s3.S3Error as exc:
            if exc.retry:
                raise CopyRetry(f"the target bucket: {exc.message}") from exc
            raise CopyFailed(f"The target bucket refused {f.rel}: {exc.message}") from exc

    def _copy_here(self, src: Path, target: PoolRef, f: FileRef, synced: set | None) -> None:
        dst = paths.resolve(target.base_path, f.rel)
        if dst == src:
            return  # same file: nothing to copy
        if dst.exists():
            if local.hash_file(dst)[1] == f.sha256:
                return
            if not self.overwrite:
                raise CopyFailed(f"A different file is already at the target path {f.rel}.")
        if not src.exists():
            raise CopyFailed(f"{f.rel} is missing on the source and has no copy on the target.")
        if self.overwrite or not self._link(src, dst, f):
            with open(src, "rb") as fh:
                chunks = (self.throttle(len(b)) or b for b in local.iter_file(fh))
                try:
                    local.receive_verified(
                        chunks,
                        dst,
                        src.stat().st_size,
                        f.sha256,
                        paths.tmp_dir(target.base_path),
                        sync_dir=synced is None,
                    )
                except local.Mismatch as exc:
                    raise CopyFailed(
                        f"{f.rel} on the source does not match its recorded SHA-256; "
                        "it was not copied."
                    ) from exc
        elif synced is None:
            local.fsync_dir(dst.parent)
        if synced is not None:
            synced.add(dst.parent)

    def _link(self, src: Path, dst: Path, f: FileRef) -> bool:
        """Pools on one filesystem: verify the source against its recorded SHA-256 (one read),
        then give it a second name on the target (a hard link: atomic, no bytes copied, and
        the data is already durable). False when the filesystems differ: copy instead."""
        digest = hashlib.sha256()
        with open(src, "rb") as fh:
            for block in local.iter_file(fh):
                self.throttle(len(block))
                digest.update(block)
        if digest.hexdigest() != f.sha256:
            raise CopyFailed(
                f"{f.rel} on the source does not match its recorded SHA-256; it was not copied."
            )
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except FileExistsError:
            if local.hash_file(dst)[1] == f.sha256:
                return True
            raise CopyFailed(f"A different file is already at the target path {f.rel}.") from None
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                return False
            raise
        return True

    def _push(self, src: Path, target: PoolRef, f: FileRef) -> None:
        if not self.secret:
            raise CopyFailed("REPLICATION_SECRET is not set.")
        url = push.replicate_url(target.upload_api_url or "")
        if not push.secret_safe_url(url, self.allow_insecure):
            raise CopyFailed(
                f"Node {target.node_id}'s URL is plain http:// to a public host; the "
                "replication secret is not sent there (use https://)."
            )
        if not src.exists():
            try:
                there = push.remote_stat(url, self.secret, target.id, f.rel)
            except push.PushError as exc:
                raise CopyRetry(f"cannot reach node {target.node_id}: {exc.message}") from exc
            if there and there["sha256"] == f.sha256:
                return  # copied before the source went missing
            raise CopyFailed(f"{f.rel} is missing on the source and has no copy on the target.")
        try:
            push.push_file(
                url, self.secret, target.id, f.rel, src, f.sha256, self.throttle, self.overwrite
            )
        except push.PushError as exc:
            if exc.status == 409:
                raise CopyFailed(f"A different file is already at {f.rel} on the target.") from exc
            if exc.status in (400, 401, 404, 507):
                raise CopyFailed(f"Node {target.node_id} refused {f.rel}: {exc.message}") from exc
            raise CopyRetry(f"node {target.node_id}: {exc.status} {exc.message}") from exc

    def delete(self, source: PoolRef, target: PoolRef, files: list[FileRef]) -> None:
        """Remove a pool's copies of these files (after the switch), except where source and
        target are the same file. A bucket that cannot be reached raises CopyRetry (running
        again deletes what is left)."""
        for f in files:
            if source.same_file(target, f.rel):
                continue
            if source.s3 is None:
                local.remove(paths.resolve(source.base_path, f.rel))
                continue
            try:
                s3.delete(source.s3, f.rel)
            except s3.S3Error as exc:
                raise CopyRetry(f"the source bucket: {exc.message}") from exc
