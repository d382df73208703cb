"""Upload page, viewer, share links, file serving and flash redirects."""

from __future__ import annotations

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

from pixelfox.htmx import is_htmx, wants_json
from pixelfox.models import Image
from pixelfox.services import images, serving, settings, uploads, viewcounts
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
    viewcounts.count_view(image.id)
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
        "grid": images.grid(image, manager) if image.ready else [],
        "preview": images.preview(image, manager),
        "original_url": original,
        "share_url": images.share_url(image),
        "can_manage": manager,
    }


@bp.get("/uploads/<path:stored_path>")
def serve_file(stored_path: str):
    """Files of this node's pools; private images only through a valid signed URL."""
    try:
        served = serving.locate(stored_path, request.args.get("exp"), request.args.get("sig"))
    except serving.NotServed:
        abort(404)
    internal = serving.accel_redirect_path(served.path)
    if internal:  # the proxy streams it from disk
        resp = make_response("")
        resp.headers["X-Accel-Redirect"] = internal
        resp.headers["Content-Type"] = served.mime
    else:
        resp = send_file(served.path, mimetype=served.mime, conditional=True, etag=True, max_age=0)
    resp.headers["Cache-Control"] = served.cache_control
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return resp


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
