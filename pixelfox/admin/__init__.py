"""Admin pages (/admin): role admin only, CSRF on every POST (HTMX included)."""

from __future__ import annotations

from flask import Blueprint, abort, redirect, request, url_for
from flask_login import current_user

from pixelfox.extensions import login_manager

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def require_admin():
    """Anonymous → login (401 for API/HTMX callers); signed-in non-admins → 403."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if not current_user.is_admin:
        abort(403)


def back_to(prefix: str, endpoint: str):
    """303 to the list page the form came from (its `next` field, only if it is that page
    of ours: never a URL from elsewhere), else to `endpoint`."""
    target = request.form.get("next") or ""
    if target.startswith(prefix) and "//" not in target and "\\" not in target:
        return redirect(target, 303)
    return redirect(url_for(endpoint), 303)


from pixelfox.admin import (  # noqa: E402,F401  (register the views)
    dashboard,
    images,
    moves,
    nodes,
    regen,
    settings,
    storage,
    tiering,
    users,
)
