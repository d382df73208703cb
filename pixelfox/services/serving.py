"""Which file `/uploads/<stored_path>` may serve from this node, and how it may be cached."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path

from flask import current_app

from pixelfox.extensions import db
from pixelfox.imaging.sniff import MIME_BY_EXT
from pixelfox.models import Image, ImageVariant, StoragePool
from pixelfox.services import images, nodes, tokens
from pixelfox.storage import paths

ONE_YEAR = 365 * 24 * 3600


class NotServed(Exception):
    """Answer 404: no such file here, or not for this caller."""


@dataclass
class Served:
    path: Path
    mime: str
    cache_control: str


def image_for_path(stored_path: str) -> Image | None:
    """The image a stored path belongs to (its original or one of its variants)."""
    image = db.session.execute(
        db.select(Image).where(Image.stored_path == stored_path)
    ).scalar_one_or_none()
    if image is not None:
        return image
    return db.session.execute(
        db.select(Image)
        .join(ImageVariant, ImageVariant.image_id == Image.id)
        .where(ImageVariant.stored_path == stored_path)
        .limit(1)
    ).scalar_one_or_none()


def locate(stored_path: str, exp: str | None, sig: str | None) -> Served:
    """The file on this node's disk for `stored_path`, if it belongs to an image that may be
    served to this request (private and unpublished images need a valid signature)."""
    try:
        paths.check_relative(stored_path)
    except paths.UnsafePath as exc:
        raise NotServed from exc
    image = image_for_path(stored_path)
    if image is None or image.deleted_at is not None:
        raise NotServed
    signed = images.needs_signature(image, stored_path)
    if signed and not tokens.check_path(stored_path, exp, sig):
        raise NotServed
    pool = copy_here(image)
    if pool is None:
        raise NotServed
    try:
        target = paths.resolve(pool.base_path, stored_path)
    except paths.UnsafePath as exc:
        raise NotServed from exc
    if not target.is_file():
        raise NotServed
    mime = MIME_BY_EXT.get(target.suffix.lower()) or mimetypes.guess_type(target.name)[0]
    if mime is None or not mime.startswith("image/"):
        raise NotServed
    if not images.is_published(image, stored_path):
        # Bytes that processing will still rewrite (metadata stripped): kept by no cache.
        cache = "private, no-store"
    elif signed:
        cache = "private, max-age=300"
    else:
        cache = f"public, max-age={ONE_YEAR}, immutable"
    return Served(target, mime, cache)


def copy_here(image: Image) -> StoragePool | None:
    """The pool on this node with a copy of the image that may be served: a verified copy,
    or the primary's own copy while it is being processed. Never a corrupt, missing or stale
    copy, and nothing at all on a node that was marked lost."""
    here = current_app.config["NODE_ID"]
    if here in nodes.lost():
        return None
    rows = {c.pool_id: c for c in image.copies}
    for pool in [image.pool] + [c.pool for c in image.copies]:
        if pool.node_id != here or pool.is_s3:  # (a bucket's files are linked to directly)
            continue
        row = rows.get(pool.id)
        if row is not None and row.status == "verified":
            return pool
        primary = pool.id == image.storage_pool_id
        if primary and (row is None or row.status == "pending") and image.status != "complete":
            return pool
    return None


def accel_redirect_path(target: Path) -> str | None:
    """Behind nginx/Caddy (ACCEL_REDIRECT_PREFIX + ACCEL_REDIRECT_ROOT set): the internal
    path the proxy streams the file from after the app's access check; None when the pool
    lies outside the proxy's root (the app serves it itself)."""
    prefix = current_app.config.get("ACCEL_REDIRECT_PREFIX")
    root = current_app.config.get("ACCEL_REDIRECT_ROOT")
    if not prefix or not root:
        return None
    try:
        rel = target.relative_to(Path(root).resolve())
    except ValueError:
        return None
    return f"{prefix.rstrip('/')}/{rel.as_posix()}"
