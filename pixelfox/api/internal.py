"""Storage-node endpoints (exempt from CSRF; a token or the replication secret instead):
direct uploads from browsers, and copies from other nodes."""

from __future__ import annotations

from flask import current_app, jsonify, request
from werkzeug.http import parse_options_header

from pixelfox.api import bearer_token, bp
from pixelfox.api.multipart import MultipartError, MultipartReader
from pixelfox.services import images, replication, uploads
from pixelfox.web.hooks import client_ip, error_response


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
    """Receive a copy of one file from another node (pool moves, replicas)."""
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
    try:
        replication.check_secret(bearer_token())
        found = replication.stat(request.args.get("pool_id"), request.args.get("stored_path"))
    except replication.ReplicationRefused as exc:
        return error_response(exc.status, exc.code, exc.message)
    if found is None:
        return error_response(404, "not_found", "No such file.")
    return jsonify(found)
