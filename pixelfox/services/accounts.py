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
from pixelfox.models import User
from pixelfox.models.base import utcnow
from pixelfox.services import ratelimit

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


def authenticate(login: str, password: str, ip: str) -> User | None:
    """Check credentials; throttled per client IP and per username (RateLimited → 429)."""
    cfg = current_app.config
    ratelimit.hit("login-ip", ip, cfg["LOGIN_LIMIT_PER_IP"], "login attempts")
    ratelimit.hit(
        "login-user",
        (login or "").strip().lower(),
        cfg["LOGIN_LIMIT_PER_USERNAME"],
        "login attempts for this account",
    )
    user = find_login(login)
    ok = check_password_hash(user.password_hash if user else _DUMMY_HASH, password or "")
    if not user or not ok or not user.is_active:
        return None
    user.last_login_at = utcnow()
    db.session.commit()
    return user


def set_password(user: User, password: str) -> None:
    validate_password(password)
    user.password_hash = hash_password(password)
    db.session.commit()


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
