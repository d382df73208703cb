"""Users: search, role and status, delete with their images (through jobs)."""

from __future__ import annotations

from flask import abort, flash, render_template, request
from flask_login import current_user

from pixelfox.admin import back_to, bp
from pixelfox.extensions import db
from pixelfox.models import User
from pixelfox.models.user import ROLES, STATUSES
from pixelfox.services import accounts, deletion

PER_PAGE = 50


@bp.get("/users")
def users_index():
    """Users: search by name or e-mail, filter by role and status."""
    q = (request.args.get("q") or "").strip()[:100]
    role = request.args.get("role") if request.args.get("role") in ROLES else ""
    status = request.args.get("status") or ""
    if status not in (*STATUSES, "deleting"):
        status = ""
    page = max(request.args.get("page", 1, type=int), 1)
    rows, has_next = accounts.admin_search(q, role, status, page, PER_PAGE)
    return render_template(
        "admin/users.html",
        users=rows,
        stats=accounts.image_stats([u.id for u in rows]),
        q=q,
        role=role,
        status=status,
        page=page,
        has_next=has_next,
        roles=ROLES,
        statuses=STATUSES,
    )


def _back():
    return back_to("/admin/users", "admin.users_index")


@bp.post("/users/<int:user_id>")
def user_update(user_id: int):
    """Change a user's role and status."""
    user = db.session.get(User, user_id) or abort(404)
    try:
        accounts.admin_update(
            current_user, user, request.form.get("role", ""), request.form.get("status", "")
        )
    except accounts.AccountError as exc:
        flash(f"{user.username}: {exc}", "error")
        return _back()
    flash(f"{user.username} is now {user.role}, {user.status}.", "success")
    return _back()


@bp.post("/users/<int:user_id>/delete")
def user_delete(user_id: int):
    """Disable an account at once; its images, then the row, are deleted by jobs."""
    user = db.session.get(User, user_id) or abort(404)
    try:
        deletion.request_account_delete(current_user, user)
    except accounts.AccountError as exc:
        flash(f"{user.username}: {exc}", "error")
        return _back()
    flash(
        f"{user.username} is disabled; their images are being deleted, then the account.",
        "success",
    )
    return _back()
