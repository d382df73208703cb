"""JSON API (SPEC §5): errors are {"error": code, "message": text}. The public v1 API lives
in `v1`, the storage-node endpoints (direct uploads, node-to-node copies) in `internal`; this
module holds the blueprint and how callers authenticate."""

from __future__ import annotations

from flask import Blueprint, request
from flask_login import current_user

from pixelfox.extensions import csrf
from pixelfox.models import User
from pixelfox.services import accounts
from pixelfox.web.hooks import error_response

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


from pixelfox.api import internal, v1  # noqa: E402,F401  (register the views)
