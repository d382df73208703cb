"""Images: search, filter, open, change visibility, delete, re-run processing."""

from __future__ import annotations

import re

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import or_

from pixelfox.admin import back_to, bp, like_pattern
from pixelfox.extensions import db
from pixelfox.models import Image, StoragePool, User
from pixelfox.models.base import utcnow
from pixelfox.models.image import STATUSES, VISIBILITIES
from pixelfox.services import images, regen
from pixelfox.services.uploads import queue_processing

PER_PAGE = 50
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _filters() -> dict:
    args = request.args
    return {
        "q": (args.get("q") or "").strip()[:200],
        "user": (args.get("user") or "").strip()[:64],
        "pool": args.get("pool", type=int),
        "status": args.get("status") if args.get("status") in STATUSES else "",
        "visibility": args.get("visibility") if args.get("visibility") in VISIBILITIES else "",
    }


@bp.get("/images")
def images_index():
    f = _filters()
    page = max(request.args.get("page", 1, type=int), 1)
    query = db.select(Image).where(Image.deleted_at.is_(None))
    q = f["q"]
    if q and UUID_RE.match(q.lower()):
        query = query.where(Image.uuid == q.lower())
    elif q:
        query = query.where(
            or_(
                Image.title.like(like_pattern(q), escape="\\"),
                Image.original_filename.like(like_pattern(q), escape="\\"),
                Image.share_link == q,
            )
        )
    if f["user"]:
        user_id = db.session.execute(
            db.select(User.id).where(User.username == f["user"])
        ).scalar_one_or_none()
        query = query.where(Image.user_id == (user_id or 0))
    if f["pool"]:
        query = query.where(Image.storage_pool_id == f["pool"])
    if f["status"]:
        query = query.where(Image.status == f["status"])
    if f["visibility"]:
        query = query.where(Image.visibility == f["visibility"])
    rows = (
        db.session.execute(
            query.order_by(Image.id.desc()).offset((page - 1) * PER_PAGE).limit(PER_PAGE + 1)
        )
        .unique()
        .scalars()
        .all()
    )
    has_next, rows = len(rows) > PER_PAGE, rows[:PER_PAGE]
    pools = db.session.execute(db.select(StoragePool).order_by(StoragePool.name)).scalars().all()
    failed = db.session.execute(
        db.select(db.func.count(Image.id)).where(
            Image.status == "failed", Image.deleted_at.is_(None)
        )
    ).scalar_one()
    return render_template(
        "admin/images.html",
        images=rows,
        f=f,
        page=page,
        has_next=has_next,
        pools=pools,
        statuses=STATUSES,
        visibilities=VISIBILITIES,
        failed=failed,
        thumbs={i.id: _thumb(i) for i in rows},
    )


def _thumb(image: Image) -> str | None:
    """A small thumbnail URL for the list (signed for private images)."""
    if image.status != "complete":
        return None
    for v in image.variants:
        if v.kind == "thumbnail_small_webp":
            return images.file_url(image, v.stored_path)
    return None


def _image(uuid: str) -> Image:
    image = images.by_uuid(uuid)
    if image is None:
        abort(404)
    return image


def _back():
    return back_to("/admin/images", "admin.images_index")


@bp.post("/images/<uuid>/visibility")
def image_visibility(uuid: str):
    image = _image(uuid)
    try:
        images.update(image, image.title, image.description, request.form.get("visibility", ""))
    except images.ImageError as exc:
        flash(str(exc), "error")
    else:
        flash(f"{image.title or image.uuid} is now {image.visibility}.", "success")
    return _back()


@bp.post("/images/<uuid>/delete")
def image_delete(uuid: str):
    image = _image(uuid)
    images.request_delete(image)
    flash(
        f"{image.title or image.uuid} deleted; its files are removed in the background.", "success"
    )
    return _back()


@bp.post("/images/<uuid>/reprocess")
def image_reprocess(uuid: str):
    """Render this image again (forced) on its node."""
    image = _image(uuid)
    image.status, image.error, image.updated_at = "pending", None, utcnow()
    db.session.commit()
    queue_processing(image, force=True)
    flash(f"{image.title or image.uuid}: processing queued again.", "success")
    return _back()


@bp.post("/images/reprocess-failed")
def images_reprocess_failed():
    """Every failed image (or those of one pool), as a regenerate run with a progress bar."""
    pool = None
    if request.form.get("pool", type=int):
        pool = db.session.get(StoragePool, request.form.get("pool", type=int)) or abort(404)
    try:
        run = regen.start(pool, "failed", current_user)
    except regen.RegenError as exc:
        flash(str(exc), "error")
        return _back()
    return redirect(url_for("admin.regen_detail", run_id=run.id), 303)
