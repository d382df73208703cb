"""Pools: the default pool on first start, the pool form, room on a pool's disk, used bytes,
and the cleanup of temp files left by dead writers. Placement lives in `placement`."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from flask import current_app
from sqlalchemy import func

from pixelfox.extensions import db
from pixelfox.models import Image, ImageCopy, ImageVariant, StoragePool
from pixelfox.services import objectstore
from pixelfox.services.poolfiles import STAGE_PREFIX
from pixelfox.storage import local, paths

log = logging.getLogger(__name__)
TIER_ORDER = {"hot": 0, "warm": 1, "cold": 2, "archive": 3}


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


def node_ids(active_only: bool = False) -> list[str]:
    """The nodes that hold pools (only active pools, with `active_only`)."""
    q = db.select(StoragePool.node_id).distinct()
    if active_only:
        q = q.where(StoragePool.is_active.is_(True))
    return sorted(db.session.execute(q).scalars())


TEMP_MAX_AGE = 60  # a temp file's lock tells a live writer; the age covers its first instant


def remove_dead_temp_files(max_age: int = TEMP_MAX_AGE, deep: bool = True) -> int:
    """Delete temp files in this node's pools whose writer is gone (nobody holds their lock)
    and that are older than `max_age` seconds. Temp files live in each pool's `.tmp/`;
    `deep` also looks for `.*.part` files left next to final names by older versions."""
    removed = _remove_stale_staging() + _remove_dead_scratch(max_age)
    for pool in db.session.execute(
        db.select(StoragePool).where(
            StoragePool.node_id == current_app.config["NODE_ID"], StoragePool.storage_type != "s3"
        )
    ).scalars():
        candidates = []
        tmp = paths.tmp_dir(pool.base_path)
        if tmp.is_dir():
            candidates += list(tmp.glob("*.part"))
        for top in paths.TOP_DIRS if deep else ():
            root = Path(pool.base_path) / top
            if root.is_dir():
                candidates += list(root.rglob(".*.part"))
        removed += sum(local.remove_dead_temp(path, max_age) for path in candidates)
    return removed


STAGING_MAX_AGE = 6 * 3600  # no job works on an object-storage file for that long


def _remove_dead_scratch(max_age: int) -> int:
    """Scratch files of copies from a bucket (TMP_DIR/copy-*.part) whose writer is gone."""
    scratch = Path(current_app.config["TMP_DIR"])
    if not scratch.is_dir():
        return 0
    return sum(local.remove_dead_temp(p, max_age) for p in scratch.glob("*.part"))


def _remove_stale_staging(max_age: int = STAGING_MAX_AGE) -> int:
    """Staging directories of object-storage pools in TMP_DIR left by a killed worker."""
    removed = 0
    scratch = Path(current_app.config["TMP_DIR"])
    if not scratch.is_dir():
        return 0
    now = time.time()
    for stage in scratch.glob(f"{STAGE_PREFIX}*"):
        try:
            stale = stage.is_dir() and now - stage.stat().st_mtime > max_age
        except FileNotFoundError:
            continue
        if stale:
            shutil.rmtree(stage, ignore_errors=True)
            removed += 1
    return removed


DISK_MARGIN = 64 * 1024 * 1024  # a filesystem with less free than this counts as full


def room(pool: StoragePool, disk_free: int | None = None) -> int | None:
    """Bytes the pool can still take: what its capacity leaves (max_size - used_size) and,
    when known, its filesystem's free space, whichever is smaller; None = no limit known."""
    left = None if not pool.max_size else max(0, pool.max_size - (pool.used_size or 0))
    if disk_free is None:
        return left
    return max(0, disk_free) if left is None else min(left, max(0, disk_free))


def disk_state(pool: StoragePool) -> dict:
    """What this node sees of a pool's directory (or bucket): writable, free and total bytes,
    full."""
    if pool.is_s3:
        return objectstore.state(pool)
    base = pool.base_path
    writable = os.path.isdir(base) and os.access(base, os.W_OK | os.X_OK)
    free, total = local.disk_usage(base) if os.path.isdir(base) else (0, 0)
    left = room(pool)
    full = (left is not None and left <= 0) or (writable and free < DISK_MARGIN)
    return {"writable": writable, "disk_free": free, "disk_total": total, "full": full}


def recompute_used(pool_id: int) -> int:
    """Sum of the bytes the DB says this pool holds: its images' originals and variant files,
    and the replicas of other pools' images kept here."""
    replicas = db.select(ImageCopy.image_id).where(
        ImageCopy.pool_id == pool_id, ImageCopy.status != "missing"
    )
    originals = db.session.execute(
        db.select(func.coalesce(func.sum(Image.size), 0)).where(
            (Image.storage_pool_id == pool_id)
            | (Image.id.in_(replicas) & (Image.storage_pool_id != pool_id))
        )
    ).scalar_one()
    # Variants may share a file (a WebP original's "original" thumbnail is the WebP one).
    files = (
        db.select(ImageVariant.stored_path, func.max(ImageVariant.size).label("size"))
        .where(
            (ImageVariant.storage_pool_id == pool_id)
            | (ImageVariant.image_id.in_(replicas) & (ImageVariant.storage_pool_id != pool_id))
        )
        .group_by(ImageVariant.stored_path)
        .subquery()
    )
    variants = db.session.execute(db.select(func.coalesce(func.sum(files.c.size), 0))).scalar_one()
    used = int(originals) + int(variants)
    db.session.execute(
        db.update(StoragePool).where(StoragePool.id == pool_id).values(used_size=used)
    )
    db.session.commit()
    return used
