"""The public API, v1 (SPEC §5): ping, health, uploads, upload sessions, images."""

from __future__ import annotations

from flask import jsonify, request
from flask_login import current_user

from pixelfox.api import api_user, bearer_token, bp, unauthorized
from pixelfox.extensions import csrf
from pixelfox.services import accounts, health, images, replication, uploads
from pixelfox.web.hooks import client_ip, error_response


@bp.get("/v1/ping")
def ping():
    """Liveness."""
    return jsonify(ping="pong")


def _may_see_details() -> bool:
    """Admins (session or API key) and other nodes (REPLICATION_SECRET) see the details."""
    token = bearer_token()
    if token and not token.startswith(accounts.API_KEY_PREFIX):
        return replication.secret_matches(token)
    user = api_user(allow_session=True)
    return bool(user and user.is_admin)


@bp.get("/v1/health")
def health_check():
    """Per-dependency status of this node (details for admins and nodes); 503 when down."""
    report = health.report()
    body = report if _may_see_details() else health.public(report)
    return jsonify(body), 200 if report["status"] == "ok" else 503


@bp.post("/v1/upload")
def upload():
    """One-shot upload through the app node (API key)."""
    user = api_user(allow_session=False)
    if user is None:
        return unauthorized()
    stored = request.files.get("file")
    if stored is None:
        return error_response(400, "no_file", "Send the image as multipart field 'file'.")
    try:
        received = uploads.receive(stored.stream, stored.filename, user, client_ip())
    except uploads.UploadRefused as exc:
        return error_response(exc.status, exc.code, exc.message, exc.retry_after)
    image = received.image
    return jsonify(
        image_uuid=image.uuid,
        view_url=images.view_url(image),
        status_url=images.status_url(image),
        duplicate=received.duplicate,
    ), 201


def _managed_image(uuid: str):
    user = api_user()
    if user is None:
        return None, unauthorized()
    image = images.by_uuid(uuid)
    if image is None or not images.is_manager(user, image):
        return None, error_response(404, "not_found", "No such image.")
    return image, None


@bp.get("/v1/images/<uuid>")
def image_detail(uuid: str):
    """An image with absolute URLs of its original and variants (owner or admin)."""
    image, err = _managed_image(uuid)
    return err or jsonify(images.detail_payload(image))


@bp.get("/v1/images/<uuid>/status")
def image_status(uuid: str):
    """Processing status; `complete` means processing has ended (check `failed`)."""
    image, err = _managed_image(uuid)
    return err or jsonify(images.status_payload(image))


# --- direct-to-storage upload sessions (SPEC §5, §7) --------------------------------------


def _session_response(user):
    data = request.get_json(silent=True) or {}
    try:
        body = uploads.open_session(user, data.get("file_size"))
    except uploads.UploadRefused as exc:
        return error_response(exc.status, exc.code, exc.message, exc.retry_after)
    return jsonify(body), 201


@bp.post("/internal/upload/sessions")
def internal_upload_session():
    """Browser flow: session cookie + X-CSRFToken; returns where and how to upload."""
    if not current_user.is_authenticated:
        return unauthorized()
    csrf.protect()
    return _session_response(current_user._get_current_object())


@bp.post("/v1/upload/sessions")
def upload_session():
    """API flow: API key; returns where and how to upload."""
    user = api_user(allow_session=False)
    return _session_response(user) if user else unauthorized()
