"""Copies of images on several nodes: which copy a link points at, how many an image has and
wants, and the cluster's durability (SPEC §9).

Every image has a row per copy in `image_copies` — its primary (`images.storage_pool_id`)
included — holding the original and every variant at the same relative paths. A copy is
`pending` until its bytes are verified, `verified` after, `missing` or `corrupt` when scrub
or a lost node says so. Only verified copies on live nodes count and are ever linked.

Copies must lie in distinct failure domains: a node (all its disks), or a bucket of an
object-storage pool — which outlives any node, so "one copy on a node + one in a bucket" is an
offsite copy. A bucket's copies stay readable while the node that runs its jobs is down.
"""

from __future__ import annotations

from flask import g, has_request_context

from pixelfox.extensions import db
from pixelfox.models import Image, ImageCopy, ImageVariant, StoragePool
from pixelfox.models.base import utcnow
from pixelfox.services import nodes, settings
from pixelfox.storage.copy import FileRef

USABLE = "verified"


def wanted() -> int:
    return int(settings.get("replication_factor"))


def image_bytes(image: Image) -> int:
    """Bytes of one copy: the original and its distinct variant files."""
    return int(image.size or 0) + sum({v.stored_path: v.size for v in image.variants}.values())


def files_of(image: Image) -> list[FileRef]:
    """Every file of one copy: the original and the distinct variant files."""
    seen, out = set(), []
    refs = [FileRef(image.stored_path, image.sha256, image.size)]
    refs += [FileRef(v.stored_path, v.sha256, v.size) for v in image.variants]
    for f in refs:
        if f.rel not in seen:
            seen.add(f.rel)
            out.append(f)
    return out


def primary_copy(image: Image) -> ImageCopy | None:
    return next((c for c in image.copies if c.pool_id == image.storage_pool_id), None)


def live_verified(image: Image, live: set[str] | None = None) -> list[ImageCopy]:
    """Verified copies that can be read now (on live nodes, or in buckets), one per failure
    domain (the primary first)."""
    live = nodes.live() if live is None else live
    out, seen = [], set()
    ordered = sorted(image.copies, key=lambda c: c.pool_id != image.storage_pool_id)
    for c in ordered:
        domain = c.pool.failure_domain
        if c.status == USABLE and c.pool.reachable(live) and domain not in seen:
            seen.add(domain)
            out.append(c)
    return out


def serving_pool(image: Image) -> StoragePool | None:
    """The pool whose node a link to this image's files should name: the primary while its
    node is up and its copy is good, else a verified copy on a live node, else the primary
    (nothing better exists); None when every known copy is corrupt or missing."""
    cache = g.setdefault("pixelfox_serving", {}) if has_request_context() else {}
    if image.id in cache:
        return cache[image.id]
    primary = primary_copy(image)
    primary_bad = primary is not None and primary.status in ("missing", "corrupt")
    choice = None
    live = nodes.live()
    if image.pool.reachable(live) and not primary_bad:
        choice = image.pool
    else:
        good = live_verified(image, live)
        if good:
            choice = good[0].pool
        elif not primary_bad:
            choice = image.pool
    cache[image.id] = choice
    return choice


def summary(image: Image) -> dict:
    """`copies` of the status API: wanted, verified (on live nodes or in buckets), and where:
    node ids, and "s3:<pool name>" for a copy in a bucket."""
    good = live_verified(image)
    return {
        "wanted": wanted(),
        "verified": len(good),
        "nodes": sorted(f"s3:{c.pool.name}" if c.pool.is_s3 else c.pool.node_id for c in good),
    }


def add_primary(image: Image) -> None:
    """The upload's own copy (pending until processing verifies it), in the caller's
    transaction."""
    db.session.add(ImageCopy(image_id=image.id, pool_id=image.storage_pool_id, status="pending"))


def files_changed(image: Image) -> None:
    """Processing wrote (new) files: the primary's copy is verified as written, every other
    copy is stale until replication pushes the new files (caller commits)."""
    now = utcnow()
    primary = primary_copy(image)
    if primary is None:
        primary = ImageCopy(image_id=image.id, pool_id=image.storage_pool_id)
        db.session.add(primary)
        image.copies.append(primary)
    primary.status, primary.verified_at, primary.error = USABLE, now, None
    for c in image.copies:
        if c is not primary and c.status == USABLE:
            c.status = "pending"


def needs_replication(image: Image, live: set[str] | None = None) -> bool:
    """Fewer verified copies on live nodes than wanted, or a copy that is not verified."""
    if image.status != "complete" or image.deleted_at is not None:
        return False
    short = len(live_verified(image, live)) < wanted()
    return short or any(c.status != USABLE for c in image.copies)


def new_replica(image: Image, pool: StoragePool) -> ImageCopy:
    """A new replica row (pending) in the caller's transaction; its bytes count into the
    pool's used_size at once, so placement sees the room taken."""
    db.session.execute(
        db.update(StoragePool)
        .where(StoragePool.id == pool.id)
        .values(used_size=StoragePool.used_size + image_bytes(image))
    )
    row = ImageCopy(image_id=image.id, pool_id=pool.id, status="pending", pool=pool)
    db.session.add(row)
    image.copies.append(row)
    return row


def mark(copy: ImageCopy, status: str, error: str | None = None) -> None:
    copy.status, copy.error = status, error
    if status == USABLE:
        copy.verified_at = utcnow()
    db.session.commit()


# --- the cluster's durability ------------------------------------------------------------


def _counted_images():
    return db.select(Image.id).where(Image.status == "complete", Image.deleted_at.is_(None))


def in_domain(pool: StoragePool):
    """SQL: the copy's pool (joined as StoragePool) lies in `pool`'s failure domain."""
    if pool.is_s3:
        return StoragePool.id == pool.id
    return (StoragePool.node_id == pool.node_id) & (StoragePool.storage_type != "s3")


def live_copy_counts(live: set[str]):
    """Subquery: image_id → distinct failure domains holding a verified copy that can be read
    (live nodes, buckets)."""
    is_bucket = StoragePool.storage_type == "s3"
    return (
        db.select(
            ImageCopy.image_id.label("image_id"),
            (  # distinct failure domains: nodes, plus buckets
                db.func.count(db.distinct(db.case((is_bucket, None), else_=StoragePool.node_id)))
                + db.func.count(db.distinct(db.case((is_bucket, StoragePool.id), else_=None)))
            ).label("n"),
        )
        .join(StoragePool, StoragePool.id == ImageCopy.pool_id)
        .where(
            ImageCopy.status == USABLE,
            StoragePool.node_id.in_(live or {""}) | (StoragePool.storage_type == "s3"),
        )
        .group_by(ImageCopy.image_id)
        .subquery()
    )


def durability() -> dict:
    """{"replication_factor","images","fully_replicated","under_replicated","without_copy",
    "repairing"} over complete images; `repairing` = images with a copy being made."""
    rf = wanted()
    counts = live_copy_counts(nodes.live())
    n = db.func.coalesce(counts.c.n, 0)
    row = db.session.execute(
        db.select(
            db.func.count(Image.id),
            db.func.coalesce(db.func.sum(db.case((n >= rf, 1), else_=0)), 0),
            db.func.coalesce(db.func.sum(db.case(((n > 0) & (n < rf), 1), else_=0)), 0),
            db.func.coalesce(db.func.sum(db.case((n == 0, 1), else_=0)), 0),
        )
        .select_from(Image)
        .outerjoin(counts, counts.c.image_id == Image.id)
        .where(Image.status == "complete", Image.deleted_at.is_(None))
    ).one()
    repairing = db.session.execute(
        db.select(db.func.count(db.distinct(ImageCopy.image_id))).where(
            ImageCopy.status == "pending", ImageCopy.image_id.in_(_counted_images())
        )
    ).scalar_one()
    return {
        "replication_factor": rf,
        "images": int(row[0]),
        "fully_replicated": int(row[1]),
        "under_replicated": int(row[2]),
        "without_copy": int(row[3]),
        "repairing": int(repairing),
    }


def under_replicated_ids(after: int, limit: int) -> list[int]:
    """Complete images (by id, after a cursor) with fewer verified copies on live nodes than
    wanted, or with a copy that is not verified."""
    counts = live_copy_counts(nodes.live())
    stale = db.select(ImageCopy.image_id).where(ImageCopy.status != USABLE)
    return list(
        db.session.execute(
            db.select(Image.id)
            .outerjoin(counts, counts.c.image_id == Image.id)
            .where(
                Image.status == "complete",
                Image.deleted_at.is_(None),
                Image.id > after,
                (db.func.coalesce(counts.c.n, 0) < wanted()) | Image.id.in_(stale),
            )
            .order_by(Image.id)
            .limit(limit)
        ).scalars()
    )


def bytes_of(image_ids: list[int]) -> int:
    """Bytes of one copy of each of these images (for the repair ETA)."""
    if not image_ids:
        return 0
    originals = db.session.execute(
        db.select(db.func.coalesce(db.func.sum(Image.size), 0)).where(Image.id.in_(image_ids))
    ).scalar_one()
    variants = db.session.execute(
        db.select(db.func.coalesce(db.func.sum(ImageVariant.size), 0)).where(
            ImageVariant.image_id.in_(image_ids)
        )
    ).scalar_one()
    return int(originals) + int(variants)
