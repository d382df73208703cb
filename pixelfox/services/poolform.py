"""The pool form (SPEC §5): validate and save a pool — a directory on a node, or a bucket of
an S3-compatible store (tested before it is saved) — delete an empty one, switch uploads."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from flask import current_app

from pixelfox.extensions import db
from pixelfox.models import Image, ImageCopy, ImageVariant, StoragePool
from pixelfox.models.storage import STORAGE_TYPES, TIERS
from pixelfox.services import objectstore
from pixelfox.storage import push, s3


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
    "s3_endpoint",
    "s3_bucket",
    "s3_region",
    "s3_prefix",
    "s3_access_key",
    "s3_addressing_style",
)  # and s3_secret_key: write-only, never shown again
S3_STYLES = ("path", "virtual")
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
    tier = data.get("storage_tier") or "hot"
    if tier not in TIERS:
        errors["storage_tier"] = "Choose hot, warm, cold or archive."
    node_id = (data.get("node_id") or "").strip()
    if storage_type == "s3" and not node_id:
        node_id = current_app.config["NODE_ID"]  # the app node runs its jobs by default
    if not node_id or len(node_id) > 64 or not all(c.isalnum() or c in "-_" for c in node_id):
        errors["node_id"] = "A node id of letters, digits, - or _ is required."
    base_path = (data.get("base_path") or "").strip()
    bucket = None
    if storage_type == "s3":
        bucket = _s3_fields(pool, data, errors)
        base_path = f"s3://{bucket['s3_bucket']}/{bucket['s3_prefix'] or ''}" if bucket else ""
    elif not base_path.startswith("/"):
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
    if storage_type == "s3" and not upload_api_url and "upload_api_url" not in errors:
        # Uploads into a bucket go through its node: that node's upload endpoint.
        upload_api_url = _node_upload_url(node_id)
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
    if not errors and bucket is not None:
        _test_bucket(pool, bucket, errors)
    if errors:
        raise PoolError(errors)

    pool = pool or StoragePool(used_size=0)
    if bucket is not None:
        secret = bucket.pop("s3_secret_key")
        for field, value in bucket.items():
            setattr(pool, field, value)
        if secret:
            pool.s3_secret_key_enc = objectstore.encrypt(secret)
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


def _node_upload_url(node_id: str) -> str | None:
    return db.session.execute(
        db.select(StoragePool.upload_api_url)
        .where(
            StoragePool.node_id == node_id,
            StoragePool.storage_type != "s3",
            StoragePool.upload_api_url.is_not(None),
        )
        .order_by(StoragePool.id)
        .limit(1)
    ).scalar_one_or_none()


def _s3_fields(pool: StoragePool | None, data: dict, errors: dict) -> dict | None:
    """The bucket's fields from the form; the secret key is write-only (empty on an edit:
    keep the stored one)."""
    out = {
        "s3_endpoint": _url(data.get("s3_endpoint"), "s3_endpoint", errors),
        "s3_bucket": (data.get("s3_bucket") or "").strip(),
        "s3_region": (data.get("s3_region") or "").strip() or "us-east-1",
        "s3_prefix": (data.get("s3_prefix") or "").strip().strip("/") or None,
        "s3_access_key": (data.get("s3_access_key") or "").strip(),
        "s3_secret_key": (data.get("s3_secret_key") or "").strip(),
        "s3_addressing_style": data.get("s3_addressing_style") or "path",
    }
    if not out["s3_endpoint"] and "s3_endpoint" not in errors:
        errors["s3_endpoint"] = "The store's endpoint URL is required (https://s3.example.org)."
    if not out["s3_bucket"] or len(out["s3_bucket"]) > 255 or "/" in out["s3_bucket"]:
        errors["s3_bucket"] = "A bucket name is required."
    prefix = out["s3_prefix"] or ""
    if ".." in prefix.split("/") or "\\" in prefix or len(prefix) > 200:
        errors["s3_prefix"] = "A key prefix of up to 200 characters, like images/pixelfox."
    if not out["s3_access_key"]:
        errors["s3_access_key"] = "The access key is required."
    if not out["s3_secret_key"] and not (pool and pool.s3_secret_key_enc):
        errors["s3_secret_key"] = "The secret key is required."  # noqa: S105  (a message)
    if out["s3_addressing_style"] not in S3_STYLES:
        errors["s3_addressing_style"] = "Choose path or virtual addressing."
    return None if errors else out


def _test_bucket(pool: StoragePool | None, bucket: dict, errors: dict) -> None:
    """Put, read back and delete a probe object; the store's answer in words if it fails."""
    probe = StoragePool(**{k: v for k, v in bucket.items() if k != "s3_secret_key"})
    secret = bucket["s3_secret_key"] or objectstore.decrypt(pool.s3_secret_key_enc)
    try:
        s3.probe(objectstore.config(probe, secret))
    except s3.S3Error as exc:
        errors["s3"] = f"The bucket could not be used: {exc.message}"


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
