"""Upload page, viewer, share links, file serving and flash redirects."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_login import current_user

from pixelfox.extensions import db
from pixelfox.htmx import is_htmx, wants_json
from pixelfox.imaging.sniff import MIME_BY_EXT
from pixelfox.models import Image, ImageVariant, StoragePool
from pixelfox.services import images, settings, tokens, uploads
from pixelfox.storage import paths
from pixelfox.web.hooks import client_ip, error_response

bp = Blueprint("web", __name__)

FLASH_MESSAGES = {
    "upload-rate-limit": "You are uploading too fast. Wait a minute and try again.",
    "upload-too-large": "That file is too large.",
    "upload-unsupported-type": "That file type is not supported.",
}
# /flash/upload-error?code=…: fixed texts per error code; request text is never shown.
UPLOAD_ERRORS = {
    "empty_file": "That file is empty.",
    "no_file": "Choose an image file to upload.",
    "file_too_large": FLASH_MESSAGES["upload-too-large"],
    "unsupported_type": FLASH_MESSAGES["upload-unsupported-type"],
    "too_many_pixels": "That image has more pixels than this site accepts.",
    "damaged_image": "That image file is damaged or incomplete.",
    "rate_limited": FLASH_MESSAGES["upload-rate-limit"],
    "uploads_disabled": "Uploads are switched off at the moment.",
    "storage_full": "The storage is full; please try again later.",
    "pool_unavailable": "The storage node is not taking uploads; please try again.",
    "token_used": "That upload was already sent; start again.",
    "token_expired": "The upload took too long to start; please try again.",
}
UPLOAD_ERROR_DEFAULT = "The upload failed; please try again."
ONE_YEAR = 365 * 24 * 3600


@bp.get("/")
def index():
    """The upload form."""
    opts = settings.all_settings()
    return render_template(
        "index.html",
        uploads_enabled=opts["image_upload_enabled"],
        max_upload_mb=opts["max_upload_mb"],
        max_megapixels=opts["max_image_megapixels"],
        direct_upload=opts["direct_upload_enabled"]
        and bool(current_app.config.get("UPLOAD_TOKEN_SECRET")),
    )


@bp.post("/upload")
def upload():
    """Receive one or more files from the form; redirect to the (first) viewer."""
    if not current_user.is_authenticated:
        return error_response(401, "unauthorized", "Log in to upload images.")
    files = [f for f in request.files.getlist("file") if f and (f.filename or f.stream)]
    if not files:
        return error_response(400, "no_file", "Choose an image file to upload.")
    if len(files) > current_app.config["MAX_FILES_PER_UPLOAD"]:
        return error_response(400, "too_many_files", "Too many files in one upload.")
    received = []
    try:
        for f in files:
            received.append(uploads.receive(f.stream, f.filename, current_user, client_ip()))
    except uploads.UploadRefused as exc:
        if received:  # earlier files of this request are stored; say so
            exc.message += f" ({len(received)} earlier file(s) were uploaded.)"
        return error_response(exc.status, exc.code, exc.message, exc.retry_after)
    first = received[0].image
    target = url_for("web.view", uuid=first.uuid)
    if wants_json():
        body = {
            "image_uuid": first.uuid,
            "view_url": images.view_url(first),
            "status_url": images.status_url(first),
            "duplicate": received[0].duplicate,
            "images": [r.image.uuid for r in received],
        }
        return jsonify(body), 201
    if len(received) > 1:
        flash(f"{len(received)} images uploaded.", "success")
        target = url_for("user.images")
    elif received[0].duplicate:
        flash("You had already uploaded this image; here it is.", "info")
    if is_htmx():
        resp = make_response("", 200)
        resp.headers["HX-Redirect"] = target
        return resp
    return redirect(target)


def _viewable(image: Image | None) -> Image:
    if image is None or not images.can_view(current_user, image):
        abort(404)
    return image


@bp.get("/image/<uuid>")
def view(uuid: str):
    """The viewer: status while processing, then sizes × formats and copy boxes."""
    image = _viewable(images.by_uuid(uuid))
    db.session.execute(
        db.update(Image)
        .where(Image.id == image.id)
        .values(view_count=Image.view_count + 1)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return render_template("image/view.html", **_view_context(image))


@bp.get("/image/<uuid>/status")
def status_fragment(uuid: str):
    """The self-replacing status widget that HTMX polls until processing ends."""
    image = _viewable(images.by_uuid(uuid))
    return render_template("image/_status.html", **_view_context(image))


@bp.get("/i/<link>")
def share(link: str):
    """Short share link → the viewer."""
    image = _viewable(images.by_share_link(link))
    return redirect(url_for("web.view", uuid=image.uuid))


def _view_context(image: Image) -> dict:
    manager = images.is_manager(current_user, image)
    # Before processing completes the original may still carry GPS: only managers get a link.
    published = images.is_published(image)
    original = images.file_url(image, image.stored_path) if published or manager else ""
    return {
        "image": image,
        "grid": images.grid(image) if image.status == "complete" else [],
        "original_url": original,
        "share_url": images.share_url(image),
        "can_manage": manager,
    }


@bp.get("/uploads/<path:stored_path>")
def serve_file(stored_path: str):
    """Files of this node's pools; private images only through a valid signed URL."""
    try:
        paths.check_relative(stored_path)
    except paths.UnsafePath:
        abort(404)
    image = _image_for_path(stored_path)
    if image is None or image.deleted_at is not None:
        abort(404)
    signed = images.needs_signature(image)
    if signed and not tokens.check_path(
        stored_path, request.args.get("exp"), request.args.get("sig")
    ):
        abort(404)
    pool_id = image.storage_pool_id
    if stored_path != image.stored_path:
        pool_id = db.session.execute(
            db.select(ImageVariant.storage_pool_id)
            .where(ImageVariant.image_id == image.id, ImageVariant.stored_path == stored_path)
            .limit(1)
        ).scalar_one()
    pool = db.session.get(StoragePool, pool_id)
    if pool is None or pool.node_id != current_app.config["NODE_ID"]:
        abort(404)
    try:
        target = paths.resolve(pool.base_path, stored_path)
    except paths.UnsafePath:
        abort(404)
    if not target.is_file():
        abort(404)
    ext = target.suffix.lower()
    mime = MIME_BY_EXT.get(ext) or mimetypes.guess_type(target.name)[0]
    if mime is None or not mime.startswith("image/"):
        abort(404)
    resp = _accel_redirect(target, mime) or send_file(
        target, mimetype=mime, conditional=True, etag=True, max_age=0
    )
    if not images.is_published(image):
        # Bytes that processing will still rewrite (metadata stripped): kept by no cache.
        resp.headers["Cache-Control"] = "private, no-store"
    elif signed:
        resp.headers["Cache-Control"] = "private, max-age=300"
    else:
        resp.headers["Cache-Control"] = f"public, max-age={ONE_YEAR}, immutable"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return resp


def _accel_redirect(target, mime: str):
    """Behind nginx/Caddy (ACCEL_REDIRECT_PREFIX + ACCEL_REDIRECT_ROOT set): the app decides
    who may see a file, the proxy streams it from disk via X-Accel-Redirect."""
    prefix = current_app.config.get("ACCEL_REDIRECT_PREFIX")
    root = current_app.config.get("ACCEL_REDIRECT_ROOT")
    if not prefix or not root:
        return None
    try:
        rel = target.relative_to(Path(root).resolve())
    except ValueError:
        return None  # a pool outside the proxy's root: serve it ourselves
    resp = make_response("")
    resp.headers["X-Accel-Redirect"] = f"{prefix.rstrip('/')}/{rel.as_posix()}"
    resp.headers["Content-Type"] = mime
    return resp


def _image_for_path(stored_path: str) -> Image | None:
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


@bp.get("/flash/<name>")
def flash_redirect(name: str):
    """Set a message, then go home (never to a URL taken from the request)."""
    if name == "upload-error":
        message = UPLOAD_ERRORS.get(request.args.get("code", ""), UPLOAD_ERROR_DEFAULT)
    elif name in FLASH_MESSAGES:
        message = FLASH_MESSAGES[name]
    else:
        abort(404)
    flash(message, "error")
    return redirect(url_for("web.index"))
