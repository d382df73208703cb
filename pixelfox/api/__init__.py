"""JSON API (SPEC §5): errors are {"error": code, "message": text}."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from flask_login import current_user

from pixelfox.extensions import csrf
from pixelfox.models import User
from pixelfox.services import accounts, health, images, uploads
from pixelfox.web.hooks import client_ip, error_response

bp = Blueprint("api", __name__, url_prefix="/api")


def bearer_token() -> str | None:
    """The token of an `Authorization: Bearer …` header, if any."""
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


def api_key_from_request() -> str | None:
    return bearer_token() or request.headers.get("X-API-Key")


def api_user(allow_session: bool = True) -> User | None:
    """The caller: by API key, else (when allowed) by session cookie. A session caller of a
    state-changing method must send X-CSRFToken."""
    key = api_key_from_request()
    if key:
        return accounts.user_for_api_key(key)
    if allow_session and current_user.is_authenticated:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            csrf.protect()
        return current_user._get_current_object()
    return None


def unauthorized():
    if api_key_from_request():
        return error_response(401, "invalid_api_key", "The API key is wrong or was revoked.")
    return error_response(401, "unauthorized", "Send an API key (Authorization: Bearer pxl_…).")


@bp.get("/v1/ping")
def ping():
    """Liveness."""
    return jsonify(ping="pong")


def _may_see_details() -> bool:
    """Admins (session or API key) and other nodes (REPLICATION_SECRET) see the details."""
    from pixelfox.services import replication

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


# --- direct-to-storage upload (SPEC §5, §7) -----------------------------------------------


def _session_response(user):
    data = request.get_json(silent=True) or {}
    try:
        body = uploads.open_session(user, data.get("file_size"), health.upload_health())
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


def _cors(resp):
    origin = request.headers.get("Origin")
    if origin and origin.rstrip("/") in current_app.config["CORS_ORIGINS"]:
        resp.headers["Access-Control-Allow-Origin"] = origin
        resp.headers["Vary"] = "Origin"
        resp.headers["Access-Control-Allow-Methods"] = "POST, HEAD, OPTIONS"
        resp.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        resp.headers["Access-Control-Max-Age"] = "600"
    return resp


@bp.route("/internal/upload", methods=["HEAD", "OPTIONS"])
def internal_upload_probe():
    """Reachability probe and CORS preflight."""
    return _cors(current_app.response_class(status=204))


@bp.post("/internal/upload")
def internal_upload():
    """Storage node: receive a browser's upload with a single-use token."""
    try:
        user, pool, limit = uploads.claim_token(bearer_token())
    except uploads.UploadRefused as exc:
        return _cors(error_response(exc.status, exc.code, exc.message, exc.retry_after))
    request.max_content_length = limit + 1024 * 1024
    stored = request.files.get("file")
    if stored is None:
        return _cors(error_response(400, "no_file", "Send the image as multipart field 'file'."))
    try:
        received = uploads.receive(
            stored.stream, stored.filename, user, client_ip(), pool=pool, limit=limit
        )
    except uploads.UploadRefused as exc:
        return _cors(error_response(exc.status, exc.code, exc.message, exc.retry_after))
    image = received.image
    resp = jsonify(
        image_uuid=image.uuid, view_url=images.view_url(image), status_url=images.status_url(image)
    )
    resp.status_code = 201
    return _cors(resp)


@bp.put("/internal/replicate")
def replicate():
    """Receive a copy of one file from another node (pool moves)."""
    from werkzeug.http import parse_options_header

    from pixelfox.services import replication
    from pixelfox.web.multipart import MultipartError, MultipartReader

    try:
        replication.check_secret(bearer_token())
        mimetype, options = parse_options_header(request.headers.get("Content-Type", ""))
        if mimetype != "multipart/form-data" or "boundary" not in options:
            raise replication.ReplicationRefused(400, "bad_request", "Send multipart/form-data.")
        reader = MultipartReader(request.stream, options["boundary"])
        try:
            fields, name, chunks = reader.fields_then_file()
            if name != "file" or chunks is None:
                raise replication.ReplicationRefused(
                    400,
                    "bad_request",
                    "Send pool_id, stored_path, size and sha256 before the file part.",
                )
            result = replication.receive(fields, chunks)
        except MultipartError as exc:
            raise replication.ReplicationRefused(400, "bad_request", str(exc)) from exc
        finally:
            reader.drain()
    except replication.ReplicationRefused as exc:
        return error_response(exc.status, exc.code, exc.message)
    return jsonify(result)


@bp.get("/internal/replicate")
def replicate_stat():
    """Does this node hold a file? (Lets a move tell "already copied" from "lost".)"""
    from pixelfox.services import replication

    try:
        replication.check_secret(bearer_token())
        found = replication.stat(request.args.get("pool_id"), request.args.get("stored_path"))
    except replication.ReplicationRefused as exc:
        return error_response(exc.status, exc.code, exc.message)
    if found is None:
        return error_response(404, "not_found", "No such file.")
    return jsonify(found)
