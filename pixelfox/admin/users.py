"""Users: search, role and status, delete with their images (through jobs)."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, or_

from pixelfox.admin import bp
from pixelfox.extensions import db
from pixelfox.models import Image, User
from pixelfox.models.user import ROLES, STATUSES
from pixelfox.services import accounts

PER_PAGE = 50


def _like(term: str) -> str:
    return "%" + term.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"


@bp.get("/users")
def users_index():
    q = (request.args.get("q") or "").strip()[:100]
    role = request.args.get("role") if request.args.get("role") in ROLES else ""
    status = request.args.get("status") or ""
    page = max(request.args.get("page", 1, type=int), 1)
    query = db.select(User)
    if q:
        query = query.where(
            or_(User.username.like(_like(q), escape="\\"), User.email.like(_like(q), escape="\\"))
        )
    if role:
        query = query.where(User.role == role)
    if status == "deleting":
        query = query.where(User.deleted_at.is_not(None))
    elif status in STATUSES:
        query = query.where(User.status == status, User.deleted_at.is_(None))
    else:
        status = ""
    rows = (
        db.session.execute(
            query.order_by(User.id.desc()).offset((page - 1) * PER_PAGE).limit(PER_PAGE + 1)
        )
        .scalars()
        .all()
    )
    has_next, rows = len(rows) > PER_PAGE, rows[:PER_PAGE]
    stats = {}
    if rows:
        stats = {
            uid: (n, size)
            for uid, n, size in db.session.execute(
                db.select(
                    Image.user_id, func.count(Image.id), func.coalesce(func.sum(Image.size), 0)
                )
                .where(Image.user_id.in_([u.id for u in rows]), Image.deleted_at.is_(None))
                .group_by(Image.user_id)
            ).all()
        }
    return render_template(
        "admin/users.html",
        users=rows,
        stats=stats,
        q=q,
        role=role,
        status=status,
        page=page,
        has_next=has_next,
        roles=ROLES,
        statuses=STATUSES,
    )


def _back():
    target = request.form.get("next") or ""
    # Only our own list page, never a URL from the request.
    if target.startswith("/admin/users") and "//" not in target and "\\" not in target:
        return redirect(target)
    return redirect(url_for("admin.users_index"))


@bp.post("/users/<int:user_id>")
def user_update(user_id: int):
    user = db.session.get(User, user_id) or abort(404)
    try:
        accounts.admin_update(
            current_user, user, request.form.get("role", ""), request.form.get("status", "")
        )
    except accounts.AccountError as exc:
        flash(f"{user.username}: {exc}", "error")
        return _back(), 303
    flash(f"{user.username} is now {user.role}, {user.status}.", "success")
    return _back(), 303


@bp.post("/users/<int:user_id>/delete")
def user_delete(user_id: int):
    user = db.session.get(User, user_id) or abort(404)
    try:
        accounts.request_delete(current_user, user)
    except accounts.AccountError as exc:
        flash(f"{user.username}: {exc}", "error")
        return _back(), 303
    flash(
        f"{user.username} is disabled; their images are being deleted, then the account.",
        "success",
    )
    return _back(), 303
