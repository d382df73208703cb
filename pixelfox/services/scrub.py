"""Scrub (SPEC §9): each node re-reads the files of the verified copies it holds, at
`scrub_max_mb_per_second`, compares them with the SHA-256 and size in the database, and marks
a copy `corrupt` or `missing`. A marked copy is never linked again, and replication rewrites
it from a good copy (a corrupt primary is replaced by a good replica's bytes, never the other
way round). A pass spans as many job runs as it needs: its cursor is in the `nodes` row, so
it resumes after a crash or a Redis flush.
"""

from __future__ import annotations

import hashlib
import logging
import time

from flask import current_app
from sqlalchemy.orm import selectinload

from pixelfox.extensions import db
from pixelfox.models import Image, ImageCopy, Node, StoragePool
from pixelfox.models.base import utcnow
from pixelfox.services import copies, nodes, objectstore, replicas, settings
from pixelfox.services.throttle import ByteThrottle
from pixelfox.storage import local, paths, s3

log = logging.getLogger(__name__)
JOB_BUDGET = 50  # seconds of reading per periodic run (it runs every minute)
CHUNK = 100


def _node(here: str) -> Node:
    node = db.session.get(Node, here)
    if node is None:
        nodes.touch(here)
        node = db.session.get(Node, here)
    return node


def run(budget_seconds: float | None = None, rate_mb: int | None = None) -> dict:
    """Scrub this node's copies for up to `budget_seconds` (None: to the end of the pass) at
    `rate_mb` MB/s (None: the setting; 0: unlimited). Returns what this run did."""
    here = current_app.config["NODE_ID"]
    if here in nodes.lost():
        return {"skipped": "this node was marked lost"}
    node = _node(here)
    pools = {
        p.id: p
        for p in db.session.execute(
            db.select(StoragePool).where(StoragePool.node_id == here)
        ).scalars()
    }
    limit = (lambda: rate_mb) if rate_mb is not None else (
        lambda: settings.get("scrub_max_mb_per_second", fresh=True)
    )  # fmt: skip
    throttle = ByteThrottle(f"pixelfox:scrub-rate:{here}", limit)
    if node.scrub_started_at is None:
        node.scrub_started_at, node.scrub_cursor = utcnow(), 0
        node.scrub_checked = node.scrub_bytes = node.scrub_findings = 0
        db.session.commit()
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    out = {"checked": 0, "corrupt": 0, "missing": 0, "bytes": 0, "pass_finished": False}
    while deadline is None or time.monotonic() < deadline:
        rows = (
            db.session.execute(
                db.select(ImageCopy)
                .where(
                    ImageCopy.pool_id.in_(pools or {0}),
                    ImageCopy.status == copies.USABLE,
                    ImageCopy.image_id > node.scrub_cursor,
                )
                .order_by(ImageCopy.image_id)
                .limit(CHUNK)
            )
            .scalars()
            .all()
        )
        if not rows:
            _finish_pass(node)
            out["pass_finished"] = True
            break
        images = {
            i.id: i
            for i in db.session.execute(
                db.select(Image)
                .options(selectinload(Image.variants))
                .where(Image.id.in_([r.image_id for r in rows]))
            ).scalars()
        }
        for row in rows:
            if deadline is not None and time.monotonic() >= deadline:
                break
            image = images.get(row.image_id)
            if image is not None and image.status == "complete" and image.deleted_at is None:
                finding, nbytes = _check(image, pools[row.pool_id], throttle)
                out["bytes"] += nbytes
                node.scrub_bytes += nbytes
                if finding and _still_the_same(row, image):
                    status, error = finding
                    copies.mark(row, status, f"scrub: {error}")
                    out[status] += 1
                    node.scrub_findings += 1
                    _repair_soon(image)
            out["checked"] += 1
            node.scrub_checked += 1
            node.scrub_cursor = row.image_id
        db.session.commit()
    return out


def _check(image: Image, pool: StoragePool, throttle) -> tuple[tuple[str, str] | None, int]:
    """((status, what) or None, bytes read) for one copy."""
    if pool.is_s3:
        return _check_bucket(image, pool), 0
    read = 0
    for f in copies.files_of(image):
        path = paths.resolve(pool.base_path, f.rel)
        digest = hashlib.sha256()
        size = 0
        try:
            with open(path, "rb") as fh:
                for block in local.iter_file(fh):
                    throttle(len(block))
                    digest.update(block)
                    size += len(block)
        except FileNotFoundError:
            return ("missing", f"{f.rel} is missing"), read
        read += size
        if size != f.size or digest.hexdigest() != f.sha256:
            return ("corrupt", f"{f.rel} does not match its SHA-256"), read
    return None, read


def _check_bucket(image: Image, pool: StoragePool) -> tuple[str, str] | None:
    """A bucket keeps checksums of its own bytes and repairs them itself: scrub asks it for
    each object's size and the SHA-256 recorded at upload (no bytes are read back)."""
    cfg = objectstore.config(pool)
    for f in copies.files_of(image):
        try:
            there = s3.head(cfg, f.rel)
        except s3.S3Error as exc:
            log.warning("scrub: pool %s cannot be asked (%s)", pool.name, exc.message)
            return None  # the store is down, not the copy: the heartbeat says so
        if there is None:
            return "missing", f"{f.rel} is missing from the bucket"
        if there["size"] != f.size or (there["sha256"] and there["sha256"] != f.sha256):
            return "corrupt", f"{f.rel} in the bucket does not match its size or SHA-256"
    return None


def _still_the_same(row: ImageCopy, image: Image) -> bool:
    """A finding counts only if nothing changed meanwhile (re-processing rewrote the files,
    a move switched the copy away): re-read both rows."""
    checked_sha = image.sha256
    db.session.refresh(row)
    db.session.refresh(image)
    return (
        row.status == copies.USABLE and image.status == "complete" and (image.sha256 == checked_sha)
    )


def _repair_soon(image: Image) -> None:
    """Queue replication from a good copy now instead of at the next repair pass."""
    source = replicas.source_copy(image, nodes.live())
    if source is not None:
        replicas.queue_replication(image, source.pool.node_id)


def _finish_pass(node: Node) -> None:
    node.last_scrub_at = utcnow()
    node.last_scrub_checked = node.scrub_checked
    node.last_scrub_findings = node.scrub_findings
    node.last_scrub_note = (
        f"{node.scrub_checked} copies, {node.scrub_bytes} bytes read, "
        f"{node.scrub_findings} corrupt or missing"
    )
    node.scrub_started_at, node.scrub_cursor = None, 0
    db.session.commit()
    log.info("scrub pass on %s: %s", node.node_id, node.last_scrub_note)
