"""Accounts."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from pixelfox.extensions import db
from pixelfox.models.base import utcnow

ROLES = ("user", "admin")
STATUSES = ("active", "inactive", "disabled")


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user")
    status: Mapped[str] = mapped_column(String(16), default="active")
    api_key_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    api_key_prefix: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Set when an admin deletes the account: it is disabled at once, its images are deleted
    # by jobs, and the row goes when the last image has gone.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Part of every session's identity: bumping it ends every session of the account (log
    # out, "log out everywhere", password change, disabled by an admin).
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    def get_id(self) -> str:  # Flask-Login stores this in the session cookie
        return f"{self.id}.{self.session_generation}"

    @property
    def is_active(self) -> bool:  # Flask-Login: inactive/disabled users cannot log in
        return self.status == "active"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def __repr__(self) -> str:
        return f"<User {self.username}>"
