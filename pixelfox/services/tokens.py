"""The one signer: HMAC-SHA256 for expiring file URLs (and, later, upload tokens)."""

from __future__ import annotations

import hashlib
import hmac
import time

from flask import current_app

URL_TTL = 3600


class SecretMissing(Exception):
    """UPLOAD_TOKEN_SECRET is not configured on this node."""


def _key() -> bytes:
    secret = current_app.config.get("UPLOAD_TOKEN_SECRET")
    if not secret:
        raise SecretMissing("UPLOAD_TOKEN_SECRET is not set")
    return secret.encode()


def sign(message: str) -> str:
    return hmac.new(_key(), message.encode(), hashlib.sha256).hexdigest()


def verify(message: str, signature: str) -> bool:
    """Constant-time comparison of a presented signature."""
    try:
        expected = sign(message)
    except SecretMissing:
        return False
    return hmac.compare_digest(expected, signature or "")


def sign_path(stored_path: str, ttl: int = URL_TTL, now: float | None = None) -> dict[str, str]:
    exp = int((now or time.time()) + ttl)
    return {"exp": str(exp), "sig": sign(f"uploads:{stored_path}:{exp}")}


def check_path(stored_path: str, exp: str | None, sig: str | None) -> bool:
    try:
        expires = int(exp or "")
    except ValueError:
        return False
    if expires < time.time():
        return False
    return verify(f"uploads:{stored_path}:{expires}", sig or "")
