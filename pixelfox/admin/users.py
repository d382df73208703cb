"""Users: search, role and status, delete with their images (through jobs)."""

from __future__ import annotations

from flask import abort, flash, render_template, request
from flask_login import current_user
from sqlalchemy import func, or_

from pixelfox.admin import back_to, bp, like_pattern
from pixelfox.extensions import db
from pixelfox.models import Image, User
from pixelfox.models.user import ROLES, STATUSES
from pixelfox.services import accounts

PER_PAGE = 50


@bp.get("/users")
def users_index():
    q = (request.args.get("q") or "").strip()[:100]
    role = request.args.get("role") if request.args.get("role") in ROLES else ""
    status = request.args.get("status") or ""
    page = max(request.args.get("page", 1, type=int), 1)
    query = db.select(User)
    if q:
        query = query.where(
            or_(
                User.username.like(like_pattern(q), escape="\\"),
                User.email.like(like_pattern(q), escape="\\"),
            )
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
    return back_to("/admin/users", "admin.users_index")


@bp.post("/users/<int:user_id>")
def user_update(user_id: int):
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
    user = db.session.get(User, user_id) or abort(404)
    try:
        accounts.request_delete(current_user, user)
    except accounts.AccountError as exc:
        flash(f"{user.username}: {exc}", "error")
        return _back()
    flash(
        f"{user.username} is disabled; their images are being deleted, then the account.",
        "success",
    )
    return _back()
