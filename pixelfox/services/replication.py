"""Receiving copies from other nodes (`PUT /api/internal/replicate`, SPEC §5)."""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterator

from flask import current_app

from pixelfox.extensions import db
from pixelfox.models import StoragePool
from pixelfox.services import placement, pools, settings
from pixelfox.storage import local, paths

SHA_RE = re.compile(r"^[0-9a-fA-F]{64}$")


class ReplicationRefused(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def secret_matches(presented: str | None) -> bool:
    """Constant-time check of a presented REPLICATION_SECRET (False when none is set)."""
    secret = current_app.config.get("REPLICATION_SECRET")
    return bool(secret) and hmac.compare_digest((presented or "").encode(), secret.encode())


def check_secret(presented: str | None) -> None:
    if not current_app.config.get("REPLICATION_SECRET"):
        raise ReplicationRefused(
            503, "replication_not_configured", "REPLICATION_SECRET is not set on this node."
        )
    if not secret_matches(presented):
        raise ReplicationRefused(401, "unauthorized", "Wrong replication secret.")


def receive(fields: dict[str, str], chunks: Iterator[bytes]) -> dict:
    """Validate, then stream into place with size and SHA-256 verified; idempotent."""
    rel = fields.get("stored_path", "")
    try:
        paths.check_relative(rel)
    except paths.UnsafePath as exc:
        raise ReplicationRefused(
            400, "bad_path", "stored_path must be a relative path under original/ or variants/."
        ) from exc
    try:
        size = int(fields.get("size", ""))
        pool_id = int(fields.get("pool_id", ""))
    except ValueError as exc:
        raise ReplicationRefused(400, "bad_request", "pool_id and size must be integers.") from exc
    if size < 0:
        raise ReplicationRefused(400, "bad_request", "size must not be negative.")
    sha = (fields.get("sha256") or "").strip().lower() or None
    if sha is not None and not SHA_RE.match(sha):
        raise ReplicationRefused(400, "bad_request", "sha256 must be 64 hex digits.")
    if sha is None and settings.get("replication_require_checksum"):
        raise ReplicationRefused(
            400, "sha256_required", "sha256 is required (replication_require_checksum is on)."
        )
    pool = _pool_here(pool_id)
    try:
        final = paths.resolve(pool.base_path, rel)
    except paths.UnsafePath as exc:
        raise ReplicationRefused(400, "bad_path", "stored_path leaves the pool.") from exc

    if final.exists():
        if sha is not None:
            _size, have = local.hash_file(final)
            if have == sha:
                return {"status": "ok", "skipped": True, "reason": "exists"}
        # Repair replaces a corrupt or stale copy: only with bytes verified against a SHA-256.
        if not (sha is not None and fields.get("overwrite") == "1"):
            raise ReplicationRefused(
                409, "conflict", "A different file already exists at that path."
            )

    free, _total = local.disk_usage(pool.base_path)
    room = pools.room(pool, free - pools.DISK_MARGIN)
    if room is not None and room < size:
        raise ReplicationRefused(507, "no_room", "Not enough room in the target pool.")
    try:
        written = local.receive_verified(chunks, final, size, sha, paths.tmp_dir(pool.base_path))
    except local.Mismatch as exc:
        raise ReplicationRefused(422, "mismatch", f"Rejected: {exc}.") from exc
    except OSError as exc:
        if not local.is_disk_full(exc):
            raise
        placement.mark_full(pool.id)
        raise ReplicationRefused(507, "no_room", "The target pool's disk is full.") from exc
    return {"status": "ok", "size": written.size, "sha256": written.sha256}


def stat(pool_id, rel: str) -> dict | None:
    """What this node holds at `rel` in a local pool: {size, sha256}, or None."""
    pool = _pool_here(pool_id)
    try:
        final = paths.resolve(pool.base_path, rel or "")
    except paths.UnsafePath as exc:
        raise ReplicationRefused(400, "bad_path", "Bad stored_path.") from exc
    if not final.is_file():
        return None
    size, digest = local.hash_file(final)
    return {"size": size, "sha256": digest}


def _pool_here(pool_id) -> StoragePool:
    """A pool on this node's disks (buckets are written by the sender itself)."""
    try:
        pool = db.session.get(StoragePool, int(pool_id))
    except (TypeError, ValueError):
        pool = None
    if pool is None or pool.node_id != current_app.config["NODE_ID"] or pool.is_s3:
        raise ReplicationRefused(404, "pool_not_here", "That pool does not live on this node.")
    return pool
