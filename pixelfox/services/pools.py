"""Pools: the default pool on first start, and the one placement function (SPEC §7)."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import func

from pixelfox.extensions import db
from pixelfox.models import Image, ImageVariant, StoragePool

TIER_ORDER = {"hot": 0, "warm": 1, "cold": 2, "archive": 3}


class NoPoolAvailable(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def ensure_default_pool() -> StoragePool | None:
    """Give this node a pool named `default` if it has none (SPEC §7). Idempotent."""
    cfg = current_app.config
    node = cfg["NODE_ID"]
    exists = db.session.execute(
        db.select(StoragePool.id).where(StoragePool.node_id == node).limit(1)
    ).first()
    if exists:
        return None
    name = "default" if not _name_taken("default") else f"default-{node}"
    has_default = db.session.execute(
        db.select(StoragePool.id).where(StoragePool.is_default.is_(True)).limit(1)
    ).first()
    domain = cfg["PUBLIC_DOMAIN"]
    pool = StoragePool(
        name=name,
        storage_type="local",
        storage_tier="hot",
        base_path=cfg["UPLOADS_DIR"],
        public_base_url=domain,
        upload_api_url=f"{domain}/api/internal/upload",
        node_id=node,
        is_default=not has_default,
        is_active=True,
        accepts_uploads=True,
        priority=100,
    )
    db.session.add(pool)
    db.session.commit()
    return pool


def _name_taken(name: str) -> bool:
    return (
        db.session.execute(db.select(StoragePool.id).where(StoragePool.name == name)).first()
        is not None
    )


def free_bytes(pool: StoragePool) -> int | None:
    if not pool.max_size:
        return None
    return max(0, pool.max_size - (pool.used_size or 0))


def choose_pool(size: int, node_id: str | None = None, health: dict | None = None) -> StoragePool:
    """Pick the pool for an upload of `size` bytes: active pools accepting uploads, hot before
    warm, then by priority, skipping pools that are full or reported unhealthy; the default
    pool last. `node_id` restricts to pools of one node (the web form on this node)."""
    q = db.select(StoragePool).where(
        StoragePool.is_active.is_(True), StoragePool.accepts_uploads.is_(True)
    )
    if node_id:
        q = q.where(StoragePool.node_id == node_id)
    pools = list(db.session.execute(q).scalars())
    if not pools:
        raise NoPoolAvailable(503, "no_pool", "No storage pool accepts uploads right now.")
    health = health or {}
    pools.sort(key=lambda p: (p.is_default, TIER_ORDER.get(p.storage_tier, 9), p.priority, p.id))
    full = False
    for pool in pools:
        state = health.get(pool.id)
        if state is not None and not state.get("healthy", True):
            continue
        room = free_bytes(pool)
        if room is not None and room < size:
            full = True
            continue
        return pool
    if full:
        raise NoPoolAvailable(507, "storage_full", "Every storage pool is full.")
    raise NoPoolAvailable(503, "no_pool", "No healthy storage pool accepts uploads right now.")


def recompute_used(pool_id: int) -> int:
    """Sum of the bytes the DB says this pool holds (originals + variant files)."""
    originals = db.session.execute(
        db.select(func.coalesce(func.sum(Image.size), 0)).where(Image.storage_pool_id == pool_id)
    ).scalar_one()
    # Variants may share a file (a WebP original's "original" thumbnail is the WebP one).
    paths = (
        db.select(ImageVariant.stored_path, func.max(ImageVariant.size).label("size"))
        .where(ImageVariant.storage_pool_id == pool_id)
        .group_by(ImageVariant.stored_path)
        .subquery()
    )
    variants = db.session.execute(db.select(func.coalesce(func.sum(paths.c.size), 0))).scalar_one()
    used = int(originals) + int(variants)
    db.session.execute(
        db.update(StoragePool).where(StoragePool.id == pool_id).values(used_size=used)
    )
    db.session.commit()
    return used
