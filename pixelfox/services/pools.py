"""Pools: the default pool on first start, the pool form, room on a pool's disk, used bytes,
and the cleanup of temp files left by dead writers. Placement lives in `placement`."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import func

from pixelfox.extensions import db
from pixelfox.models import Image, ImageCopy, ImageVariant, StoragePool
from pixelfox.models.storage import STORAGE_TYPES, TIERS
from pixelfox.storage import local, paths, push

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
    removed = 0
    for pool in db.session.execute(
        db.select(StoragePool).where(StoragePool.node_id == current_app.config["NODE_ID"])
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


DISK_MARGIN = 64 * 1024 * 1024  # a filesystem with less free than this counts as full


def room(pool: StoragePool, disk_free: int | None = None) -> int | None:
    """Bytes the pool can still take: what its capacity leaves (max_size - used_size) and,
    when known, its filesystem's free space, whichever is smaller; None = no limit known."""
    left = None if not pool.max_size else max(0, pool.max_size - (pool.used_size or 0))
    if disk_free is None:
        return left
    return max(0, disk_free) if left is None else min(left, max(0, disk_free))


def disk_state(pool: StoragePool) -> dict:
    """What this node sees of a pool's directory: writable, free and total bytes, full."""
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


class PoolError(ValueError):
    """Field errors from saving a pool: {field: message}."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


POOL_FIELDS = (
    "name",
    "storage_type",
    "storage_tier",
    "base_path",
    "public_base_url",
    "upload_api_url",
    "node_id",
    "max_size_gb",
    "priority",
    "weight",
    "is_active",
    "is_default",
    "accepts_uploads",
    "description",
)
GB = 1024**3


def _flag(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on", "y")


def _url(value: str, field: str, errors: dict) -> str | None:
    value = (value or "").strip().rstrip("/")
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        errors[field] = "Must be an http(s) URL like https://s1.example.org (no query)."
    return value


def save_pool(pool: StoragePool | None, data: dict) -> StoragePool:
    """Validate and store a pool from form fields (SPEC §5 names). Raises PoolError."""
    errors: dict[str, str] = {}
    name = (data.get("name") or "").strip()
    if not name or len(name) > 64:
        errors["name"] = "A name of 1–64 characters is required."
    elif db.session.execute(
        db.select(StoragePool.id).where(
            StoragePool.name == name, StoragePool.id != (pool.id if pool else -1)
        )
    ).first():
        errors["name"] = "Another pool already has this name."
    storage_type = data.get("storage_type") or "local"
    if storage_type not in STORAGE_TYPES:
        errors["storage_type"] = "Choose local, nfs or s3."
    elif storage_type == "s3":
        errors["storage_type"] = "S3 pools are not supported yet; use local or nfs."
    tier = data.get("storage_tier") or "hot"
    if tier not in TIERS:
        errors["storage_tier"] = "Choose hot, warm, cold or archive."
    node_id = (data.get("node_id") or "").strip()
    if not node_id or len(node_id) > 64 or not all(c.isalnum() or c in "-_" for c in node_id):
        errors["node_id"] = "A node id of letters, digits, - or _ is required."
    base_path = (data.get("base_path") or "").strip()
    if not base_path.startswith("/"):
        errors["base_path"] = "An absolute path is required."
    elif node_id == current_app.config["NODE_ID"] and "base_path" not in errors:
        try:
            os.makedirs(base_path, exist_ok=True)
        except OSError as exc:
            errors["base_path"] = f"Cannot create this directory on this node ({exc.strerror})."
        else:
            if not os.access(base_path, os.W_OK | os.X_OK):
                errors["base_path"] = "This directory is not writable by PixelFox on this node."
    public_base_url = _url(data.get("public_base_url"), "public_base_url", errors)
    upload_api_url = _url(data.get("upload_api_url"), "upload_api_url", errors)
    if (
        upload_api_url
        and "upload_api_url" not in errors
        and not push.secret_safe_url(
            upload_api_url, current_app.config.get("ALLOW_INSECURE_NODE_URLS", False)
        )
    ):
        errors["upload_api_url"] = (
            "Use https:// — upload tokens and REPLICATION_SECRET are sent to this URL. Plain "
            "http:// is allowed only to loopback or private addresses (or with "
            "ALLOW_INSECURE_NODE_URLS=1)."
        )
    try:
        gb = float(data.get("max_size_gb") or 0)
        if gb < 0:
            raise ValueError
        max_size = int(gb * GB) or None
    except ValueError:
        errors["max_size_gb"] = "Capacity is a number of GB (0 or empty = no limit)."
        max_size = None
    try:
        priority = int(data.get("priority") or 100)
        if not 0 <= priority <= 100000:
            raise ValueError
    except ValueError:
        errors["priority"] = "Priority is a whole number from 0 to 100000 (lower first)."
        priority = 100
    try:
        weight = int(data.get("weight") if data.get("weight") not in (None, "") else 100)
        if not 0 <= weight <= 10000:
            raise ValueError
    except ValueError:
        errors["weight"] = "Weight is a whole number from 0 to 10000 (0 = no new uploads)."
        weight = 100
    is_default = _flag(data.get("is_default"))
    if pool is not None and pool.is_default and not is_default:
        errors["is_default"] = "Make another pool the default instead; one pool must be it."
    if errors:
        raise PoolError(errors)

    pool = pool or StoragePool(used_size=0)
    pool.name, pool.storage_type, pool.storage_tier = name, storage_type, tier
    pool.base_path, pool.node_id = base_path, node_id
    pool.public_base_url, pool.upload_api_url = public_base_url, upload_api_url
    pool.max_size, pool.priority, pool.weight = max_size, priority, weight
    pool.is_active = _flag(data.get("is_active"))
    pool.accepts_uploads = _flag(data.get("accepts_uploads"))
    pool.description = (data.get("description") or "").strip() or None
    if is_default:
        db.session.execute(db.update(StoragePool).values(is_default=False))
    pool.is_default = is_default
    if pool.id is None:
        db.session.add(pool)
    db.session.commit()
    return pool


def set_accepts_uploads(pool: StoragePool, accepts: bool) -> None:
    """Switch new uploads into a pool on or off (off while it drains)."""
    pool.accepts_uploads = accepts
    db.session.commit()


def delete_pool(pool: StoragePool) -> None:
    """Only an empty pool that is not the default can go."""
    if pool.is_default:
        raise PoolError({"pool": "The default pool cannot be deleted."})
    holds = (
        db.session.execute(
            db.select(Image.id).where(Image.storage_pool_id == pool.id).limit(1)
        ).first()
        or db.session.execute(
            db.select(ImageVariant.id).where(ImageVariant.storage_pool_id == pool.id).limit(1)
        ).first()
        or db.session.execute(
            db.select(ImageCopy.id)
            .where(ImageCopy.pool_id == pool.id, ImageCopy.status != "missing")
            .limit(1)
        ).first()
    )
    if holds:
        raise PoolError({"pool": "This pool still holds images or replicas; move them first."})
    # Copies known to be gone (a lost node's) go with the pool.
    db.session.execute(db.delete(ImageCopy).where(ImageCopy.pool_id == pool.id))
    db.session.delete(pool)
    db.session.commit()
