"""Users: creation, authentication (throttled), passwords and API keys."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from flask import current_app
from sqlalchemy import func, or_
from werkzeug.security import check_password_hash, generate_password_hash

from pixelfox.extensions import db
from pixelfox.models import Image, User
from pixelfox.models.base import utcnow
from pixelfox.models.user import ROLES, STATUSES
from pixelfox.services import like_pattern, ratelimit

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{3,64}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 8
API_KEY_PREFIX = "pxl_"
# A real hash to compare against when the user does not exist, so timing does not tell.
_DUMMY_HASH = generate_password_hash("pixelfox-dummy-password", method="scrypt")


class AccountError(ValueError):
    pass


def hash_password(password: str) -> str:
    """scrypt: a deliberately slow, memory-hard hash (werkzeug's default)."""
    return generate_password_hash(password, method="scrypt")


def validate_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise AccountError(f"The password must have at least {MIN_PASSWORD} characters.")


def create_user(username: str, email: str, password: str, role: str = "user") -> User:
    username = (username or "").strip()
    email = (email or "").strip().lower()
    if not USERNAME_RE.match(username):
        raise AccountError("Usernames have 3–64 letters, digits, dots, dashes or underscores.")
    if not EMAIL_RE.match(email) or len(email) > 255:
        raise AccountError("That does not look like an e-mail address.")
    validate_password(password)
    if role not in ("user", "admin"):
        raise AccountError("Role must be user or admin.")
    taken = db.session.execute(
        db.select(User.id).where(
            or_(func.lower(User.username) == username.lower(), User.email == email)
        )
    ).first()
    if taken:
        raise AccountError("That username or e-mail address is already registered.")
    user = User(username=username, email=email, password_hash=hash_password(password), role=role)
    db.session.add(user)
    db.session.commit()
    return user


def find_login(login: str) -> User | None:
    login = (login or "").strip()
    column = User.email if "@" in login else User.username
    value = login.lower()
    return db.session.execute(
        db.select(User).where(func.lower(column) == value)
    ).scalar_one_or_none()


def _login_limits(name: str, ip: str) -> list[tuple[str, str, int, str]]:
    """(scope, key, failures per minute, what) of the login throttles. Only failures count."""
    cfg = current_app.config
    return [
        ("login-fail-ip", ip, cfg["LOGIN_LIMIT_PER_IP"], "failed logins from your address"),
        (
            "login-fail-user-ip",
            f"{name}|{ip}",
            cfg["LOGIN_LIMIT_PER_USERNAME"],
            "failed logins for this account",
        ),
        (
            "login-fail-user",
            name,
            cfg["LOGIN_LIMIT_PER_ACCOUNT"],
            "failed logins for this account",
        ),
    ]


def authenticate(login: str, password: str, ip: str) -> User | None:
    """Check credentials, throttling failures (RateLimited → 429): per client IP, per
    (username, IP), and a much higher ceiling per username from anywhere. A client that has
    not failed is never blocked, so nobody can lock someone else out by guessing wrong."""
    name = (login or "").strip().lower()
    per_ip, per_pair, per_account = _login_limits(name, ip)
    if ratelimit.used(*per_ip[:3]):  # this client has failed recently: it is throttled
        for scope, key, limit, what in (per_ip, per_pair, per_account):
            ratelimit.check(scope, key, limit, what)
    user = find_login(login)
    ok = check_password_hash(user.password_hash if user else _DUMMY_HASH, password or "")
    if not user or not ok or not user.is_active:
        for scope, key, limit, what in (per_ip, per_pair, per_account):
            try:
                ratelimit.hit(scope, key, limit, what)
            except ratelimit.RateLimited:
                pass  # counted; the next attempt is refused
        return None
    user.last_login_at = utcnow()
    db.session.commit()
    return user


def end_sessions(user: User) -> None:
    """End every session of this account (sessions carry the generation they were made in)."""
    db.session.execute(
        db.update(User)
        .where(User.id == user.id)
        .values(session_generation=User.session_generation + 1)
    )
    db.session.commit()
    db.session.refresh(user)


def set_password(user: User, password: str) -> None:
    """Set a new password; every existing session of the account ends."""
    validate_password(password)
    user.password_hash = hash_password(password)
    db.session.commit()
    end_sessions(user)


def change_password(user: User, current: str, new: str, confirm: str) -> None:
    if not check_password_hash(user.password_hash, current or ""):
        raise AccountError("The current password is wrong.")
    if new != confirm:
        raise AccountError("The new passwords do not match.")
    set_password(user, new)


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def rotate_api_key(user: User) -> str:
    """Create or replace the user's API key; the plain key is returned once, never stored."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    user.api_key_hash = _key_hash(key)
    user.api_key_prefix = key[:10]
    db.session.commit()
    return key


def revoke_api_key(user: User) -> None:
    user.api_key_hash = None
    user.api_key_prefix = None
    db.session.commit()


def user_for_api_key(key: str | None) -> User | None:
    if not key or not key.startswith(API_KEY_PREFIX):
        return None
    digest = _key_hash(key)
    user = db.session.execute(
        db.select(User).where(User.api_key_hash == digest)
    ).scalar_one_or_none()
    # The lookup is by hash; compare again in constant time to be explicit about it.
    if user is None or not hmac.compare_digest(user.api_key_hash or "", digest):
        return None
    return user if user.is_active else None


# --- Administration (/admin/users) ---------------------------------------------------------


def admin_search(
    q: str = "", role: str = "", status: str = "", page: int = 1, per_page: int = 50
) -> tuple[list[User], bool]:
    """One page of users (newest first) matching the admin filters, and whether there is a
    next page. `status` may also be "deleting" (deletion in progress)."""
    query = db.select(User)
    if q:
        pattern = like_pattern(q)
        query = query.where(
            or_(User.username.like(pattern, escape="\\"), User.email.like(pattern, escape="\\"))
        )
    if role:
        query = query.where(User.role == role)
    if status == "deleting":
        query = query.where(User.deleted_at.is_not(None))
    elif status:
        query = query.where(User.status == status, User.deleted_at.is_(None))
    rows = (
        db.session.execute(
            query.order_by(User.id.desc()).offset((page - 1) * per_page).limit(per_page + 1)
        )
        .scalars()
        .all()
    )
    return rows[:per_page], len(rows) > per_page


def image_stats(user_ids: list[int]) -> dict[int, tuple[int, int]]:
    """{user id: (images, bytes of originals)} for these users (deleted images left out)."""
    if not user_ids:
        return {}
    rows = db.session.execute(
        db.select(Image.user_id, func.count(Image.id), func.coalesce(func.sum(Image.size), 0))
        .where(Image.user_id.in_(user_ids), Image.deleted_at.is_(None))
        .group_by(Image.user_id)
    ).all()
    return {uid: (int(n), int(size)) for uid, n, size in rows}


def other_active_admins(user: User) -> int:
    return db.session.execute(
        db.select(func.count(User.id)).where(
            User.role == "admin",
            User.status == "active",
            User.deleted_at.is_(None),
            User.id != user.id,
        )
    ).scalar_one()


def admin_update(actor: User, user: User, role: str, status: str) -> None:
    """Change a user's role and status. Admins cannot lock themselves out, and the last
    active admin stays an active admin."""
    if role not in ROLES:
        raise AccountError("Role must be user or admin.")
    if status not in STATUSES:
        raise AccountError("Status must be active, inactive or disabled.")
    if user.deleted_at is not None:
        raise AccountError("This account is being deleted.")
    losing_admin = user.is_admin and user.is_active and (role != "admin" or status != "active")
    if losing_admin and user.id == actor.id:
        raise AccountError("You cannot demote or disable your own account.")
    if losing_admin and not other_active_admins(user):
        raise AccountError("This is the last active admin; promote someone else first.")
    ending = user.status == "active" and status != "active"
    user.role, user.status = role, status
    db.session.commit()
    if ending:  # re-enabling later must not bring the old sessions back
        end_sessions(user)
