"""Images as people see them: access rules, URLs, status, edits and deletion."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from flask import current_app
from sqlalchemy import or_

from pixelfox.extensions import db
from pixelfox.models import Image, StoragePool, User
from pixelfox.models.base import utcnow
from pixelfox.models.image import is_thumbnail
from pixelfox.services import copies, like_pattern, objectstore, tokens, uploads

SIZES_ORDER = ("small", "medium", "full")
FORMAT_ORDER = ("original", "webp", "avif")


class ImageError(ValueError):
    pass


def by_uuid(uuid: str) -> Image | None:
    return db.session.execute(
        db.select(Image).where(Image.uuid == uuid, Image.deleted_at.is_(None))
    ).scalar_one_or_none()


def by_share_link(link: str) -> Image | None:
    return db.session.execute(
        db.select(Image).where(Image.share_link == link, Image.deleted_at.is_(None))
    ).scalar_one_or_none()


def is_manager(user: User | None, image: Image) -> bool:
    """Owner or admin: may edit, delete, see status and private images."""
    return bool(
        user
        and getattr(user, "is_authenticated", False)
        and (user.id == image.user_id or user.is_admin)
    )


def can_view(user: User | None, image: Image) -> bool:
    return image.visibility != "private" or is_manager(user, image)


def base_url(pool: StoragePool | None) -> str:
    return ((pool.public_base_url if pool else None) or current_app.config["PUBLIC_DOMAIN"]).rstrip(
        "/"
    )


def is_published(image: Image, stored_path: str | None = None) -> bool:
    """May this file (default: the original) be served to anyone with the link, and cached
    by anyone? Once processing has completed: the original no longer carries metadata (with
    strip_metadata on) and no file changes any more. Before that, the thumbnails as soon as
    phase 1 has published them (made without metadata, and final). Everything else — and
    everything of a failed image — only the owner and admins see, through signed URLs that no
    shared cache keeps."""
    if image.status == "complete":
        return True
    if not image.ready or stored_path is None:
        return False
    return any(v.stored_path == stored_path and is_thumbnail(v.kind) for v in image.variants)


def needs_signature(image: Image, stored_path: str | None = None) -> bool:
    return image.visibility == "private" or not is_published(image, stored_path)


def file_url(image: Image, stored_path: str) -> str:
    """Absolute URL of one file on a node that holds a good copy of it (the primary while
    its node is up, else a verified replica on a live node); private and not yet published
    images get a signed, expiring URL (mint those for the owner and admins only). "" when no
    copy can be linked."""
    pool = copies.serving_pool(image)
    if pool is None:
        return ""
    signed = needs_signature(image, stored_path)
    if pool.is_s3:  # straight from the bucket (or its CDN), never through a node
        return objectstore.file_url(pool, stored_path, signed, image.visibility == "private")
    url = f"{base_url(pool)}/uploads/{stored_path}"
    if signed:
        ttl = tokens.URL_TTL if is_published(image, stored_path) else tokens.UNPUBLISHED_URL_TTL
        try:
            url += "?" + urlencode(tokens.sign_path(stored_path, ttl))
        except tokens.SecretMissing:
            return ""
    return url


def view_url(image: Image) -> str:
    return f"{current_app.config['PUBLIC_DOMAIN']}/image/{image.uuid}"


def status_url(image: Image) -> str:
    return f"{current_app.config['PUBLIC_DOMAIN']}/api/v1/images/{image.uuid}/status"


def share_url(image: Image) -> str:
    return f"{current_app.config['PUBLIC_DOMAIN']}/i/{image.share_link}"


def variant_urls(image: Image) -> dict[str, str]:
    return {v.kind: file_url(image, v.stored_path) for v in image.variants}


def status_payload(image: Image) -> dict:
    return {
        "uuid": image.uuid,
        "status": image.status,
        "complete": image.complete,
        "failed": image.status == "failed",
        "error": image.error,
        "view_url": view_url(image),
        "original_url": file_url(image, image.stored_path),
        # Thumbnails first (processing's phase 1, "ready"), the full-size files when complete.
        "ready": image.ready,
        "variants": variant_urls(image),
        "copies": copies.summary(image),
    }


def detail_payload(image: Image) -> dict:
    data = status_payload(image)
    data.update(
        title=image.title,
        description=image.description,
        visibility=image.visibility,
        share_url=share_url(image),
        mime_type=image.mime_type,
        size=image.size,
        width=image.width,
        height=image.height,
        sha256=image.sha256,
        created_at=image.created_at.isoformat() + "Z",
        variants_detail=[
            {
                "kind": v.kind,
                "format": v.format,
                "width": v.width,
                "height": v.height,
                "size": v.size,
                "url": data["variants"].get(v.kind),
            }
            for v in image.variants
        ],
    )
    return data


def grid(image: Image, manager: bool = False) -> list[dict]:
    """Rows of sizes × formats for the viewer: [{size, cells: {format: cell|None}}]. Files
    not published yet (the original and the full-size files while processing) are cells only
    for the owner and admins (signed links); for others they stay empty until published."""
    by_kind = {v.kind: v for v in image.variants}
    rows = []
    for size in SIZES_ORDER:
        cells = {}
        for fmt in FORMAT_ORDER:
            kind = (
                (fmt if fmt != "original" else None)
                if size == "full"
                else f"thumbnail_{size}_{fmt}"
            )
            if kind is None:
                cell = {
                    "path": image.stored_path,
                    "width": image.width,
                    "height": image.height,
                    "size": image.size,
                    "format": image.mime_type.split("/")[1],
                }
            elif kind in by_kind:
                v = by_kind[kind]
                cell = {
                    "path": v.stored_path,
                    "width": v.width,
                    "height": v.height,
                    "size": v.size,
                    "format": v.format,
                }
            else:
                cell = None
            if cell is not None and (manager or is_published(image, cell["path"])):
                cell["url"] = file_url(image, cell["path"])
                cells[fmt] = cell
            else:
                cells[fmt] = None
        rows.append({"size": size, "cells": cells})
    return rows


def preview(image: Image, manager: bool = False) -> dict | None:
    """The picture the viewer shows first: the medium thumbnail with its AVIF and WebP
    siblings ({"img": cell, "avif": url|None, "webp": url|None}), falling back to the small
    one; None until phase 1 has published them."""
    if not image.ready:
        return None
    rows = {r["size"]: r["cells"] for r in grid(image, manager)}
    for size in ("medium", "small"):
        cells = rows[size]
        img = cells["original"] or cells["webp"]
        if img:
            return {
                "img": img,
                "avif": (cells["avif"] or {}).get("url"),
                "webp": (cells["webp"] or {}).get("url"),
            }
    return None


def update(image: Image, title: str | None, description: str | None, visibility: str) -> None:
    if visibility not in ("public", "unlisted", "private"):
        raise ImageError("Visibility must be public, unlisted or private.")
    image.title = (title or "").strip()[:255] or None
    image.description = (description or "").strip()[:5000] or None
    image.visibility = visibility
    db.session.commit()


# --- Administration (/admin/images) --------------------------------------------------------

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def admin_search(
    q: str = "",
    username: str = "",
    pool_id: int | None = None,
    status: str = "",
    visibility: str = "",
    page: int = 1,
    per_page: int = 50,
) -> tuple[list[Image], bool]:
    """One page of images (newest first) matching the admin filters, and whether there is a
    next page. `q` is a UUID, a share link, or text found in the title or file name."""
    query = db.select(Image).where(Image.deleted_at.is_(None))
    if q and UUID_RE.match(q.lower()):
        query = query.where(Image.uuid == q.lower())
    elif q:
        pattern = like_pattern(q)
        query = query.where(
            or_(
                Image.title.like(pattern, escape="\\"),
                Image.original_filename.like(pattern, escape="\\"),
                Image.share_link == q,
            )
        )
    if username:
        user_id = db.session.execute(
            db.select(User.id).where(User.username == username)
        ).scalar_one_or_none()
        query = query.where(Image.user_id == (user_id or 0))
    if pool_id:
        query = query.where(Image.storage_pool_id == pool_id)
    if status:
        query = query.where(Image.status == status)
    if visibility:
        query = query.where(Image.visibility == visibility)
    rows = (
        db.session.execute(
            query.order_by(Image.id.desc()).offset((page - 1) * per_page).limit(per_page + 1)
        )
        .unique()
        .scalars()
        .all()
    )
    return rows[:per_page], len(rows) > per_page


def failed_count() -> int:
    return db.session.execute(
        db.select(db.func.count(Image.id)).where(
            Image.status == "failed", Image.deleted_at.is_(None)
        )
    ).scalar_one()


def list_thumbnail(image: Image) -> str | None:
    """A small thumbnail URL for admin lists (signed for private images)."""
    if image.status != "complete":
        return None
    for v in image.variants:
        if v.kind == "thumbnail_small_webp":
            return file_url(image, v.stored_path)
    return None


def reprocess(image: Image) -> None:
    """Render an image again on its node, even if it is complete (forced). A complete image
    stays complete (and its links public) while its files are rendered again in place."""
    if image.status != "complete":
        image.status, image.error = "pending", None
    image.updated_at = utcnow()
    db.session.commit()
    uploads.queue_processing(image, force=True)
