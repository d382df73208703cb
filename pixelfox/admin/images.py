"""Images: search, filter, open, change visibility, delete, re-run processing."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from pixelfox.admin import back_to, bp
from pixelfox.extensions import db
from pixelfox.models import Image, StoragePool
from pixelfox.models.image import STATUSES, VISIBILITIES
from pixelfox.services import deletion, images, regen

PER_PAGE = 50


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
    """Images: search, filter, page; newest first."""
    f = _filters()
    page = max(request.args.get("page", 1, type=int), 1)
    rows, has_next = images.admin_search(
        f["q"], f["user"], f["pool"], f["status"], f["visibility"], page, PER_PAGE
    )
    return render_template(
        "admin/images.html",
        images=rows,
        f=f,
        page=page,
        has_next=has_next,
        pools=db.session.execute(db.select(StoragePool).order_by(StoragePool.name)).scalars().all(),
        statuses=STATUSES,
        visibilities=VISIBILITIES,
        failed=images.failed_count(),
        thumbs={i.id: images.list_thumbnail(i) for i in rows},
    )


def _image(uuid: str) -> Image:
    image = images.by_uuid(uuid)
    if image is None:
        abort(404)
    return image


def _back():
    return back_to("/admin/images", "admin.images_index")


@bp.post("/images/<uuid>/visibility")
def image_visibility(uuid: str):
    """Change an image's visibility."""
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
    """Delete an image: hidden at once, files removed by a job on its node."""
    image = _image(uuid)
    deletion.request_delete(image)
    flash(
        f"{image.title or image.uuid} deleted; its files are removed in the background.", "success"
    )
    return _back()


@bp.post("/images/<uuid>/reprocess")
def image_reprocess(uuid: str):
    """Render this image again (forced) on its node."""
    image = _image(uuid)
    images.reprocess(image)
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
