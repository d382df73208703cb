"""Request hooks, error pages and template globals shared by every blueprint."""

from __future__ import annotations

from flask import (
    Flask,
    flash,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from pixelfox.extensions import db, login_manager
from pixelfox.htmx import is_htmx, wants_json
from pixelfox.models import User
from pixelfox.services import pools, settings, uploads
from pixelfox.storage import local

UPLOAD_ENDPOINTS = {"web.upload", "api.upload"}
FORM_LIMIT = 1024 * 1024

MESSAGES = {
    400: "The request was not understood.",
    401: "Please log in first.",
    403: "You are not allowed to do that.",
    404: "There is nothing here.",
    405: "That method is not allowed here.",
    413: "The upload is too large.",
    429: "Too many requests; please slow down.",
    500: "Something went wrong on our side.",
    507: "The storage is full; please try again later.",
}


def client_ip() -> str:
    return request.remote_addr or "unknown"


def is_api_request() -> bool:
    return request.path.startswith("/api/") or wants_json()


def error_response(status: int, code: str, message: str, retry_after: int | None = None):
    """JSON for API callers, an error page (or fragment, for HTMX) for people."""
    if is_api_request():
        resp = make_response(jsonify(error=code, message=message), status)
    else:
        template = "_error_fragment.html" if is_htmx() else "error.html"
        resp = make_response(render_template(template, status=status, message=message), status)
    if retry_after:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def init_app(app: Flask) -> None:
    if app.config.get("PROXY_COUNT"):
        n = int(app.config["PROXY_COUNT"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)

    @app.before_request
    def first_start():
        """On the first request, give this node its default pool (SPEC §7)."""
        if app.extensions.get("pixelfox_pool_checked"):
            return
        try:
            pools.ensure_default_pool()
            app.extensions["pixelfox_pool_checked"] = True
        except SQLAlchemyError:  # not migrated yet: /api/v1/health will say so
            db.session.rollback()

    @app.before_request
    def limit_body_size():
        """Refuse oversized bodies from the Content-Length, before anything is parsed."""
        if request.endpoint in UPLOAD_ENDPOINTS:
            per_file = uploads.max_bytes()
            request.max_content_length = per_file * app.config["MAX_FILES_PER_UPLOAD"] + FORM_LIMIT
        elif request.endpoint not in ("api.internal_upload", "api.replicate"):
            request.max_content_length = FORM_LIMIT

    @app.after_request
    def security_headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        if resp.mimetype == "text/html":
            resp.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data: https: http:; style-src 'self'; "
                "script-src 'self'; connect-src 'self' https: http:; frame-ancestors 'none'; "
                "form-action 'self'",
            )
        return resp

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return error_response(
            400,
            "csrf_failed",
            "The form expired or is missing its security token; reload the page.",
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = exc.code or 500
        if code == 413:
            return error_response(413, "file_too_large", upload_too_large_message())
        if code == 401 and not is_api_request() and not is_htmx():
            flash(MESSAGES[401], "error")
            return redirect(url_for("auth.login", next=request.full_path))
        name = (exc.name or "error").lower().replace(" ", "_")
        return error_response(code, name, MESSAGES.get(code, exc.description or exc.name))

    @app.errorhandler(Exception)
    def unexpected(exc):
        db.session.rollback()
        if local.is_disk_full(exc):  # e.g. TMP_DIR filled up while a form was parsed
            app.logger.error("no room left on a disk on %s: %s", request.path, exc)
            return error_response(507, "storage_full", MESSAGES[507])
        app.logger.exception("unhandled error on %s", request.path)
        return error_response(500, "internal_error", MESSAGES[500])

    @login_manager.user_loader
    def load_user(session_id: str):
        """A session names the user and the session generation it was made in; a bumped
        generation (logout, password change, ...) ends it."""
        user_id, _, generation = session_id.partition(".")
        if not user_id.isdigit() or not generation.isdigit():
            return None
        user = db.session.get(User, int(user_id))
        if user is None or not user.is_active or user.session_generation != int(generation):
            return None
        return user

    @login_manager.unauthorized_handler
    def unauthorized():
        if is_api_request() or is_htmx():
            return error_response(401, "unauthorized", "Log in or send an API key.")
        flash(MESSAGES[401], "error")
        return redirect(url_for("auth.login", next=request.full_path))

    @app.context_processor
    def globals_for_templates():
        try:
            title = settings.get("site_title")
        except Exception:  # DB down: pages still render their error
            title = "PixelFox"
        return {"site_title": title, "is_htmx": is_htmx()}

    app.jinja_env.filters["filesize"] = filesize

    @app.teardown_appcontext
    def forget_settings(exc):
        g.pop("pixelfox_settings", None)


def upload_too_large_message() -> str:
    try:
        return f"The file is larger than {settings.get('max_upload_mb')} MB."
    except Exception:
        return MESSAGES[413]


def filesize(num: int | None) -> str:
    if num is None:
        return "–"
    size = float(num)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{num} B"
