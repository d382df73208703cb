"""The one signer: HMAC-SHA256 for expiring file URLs and direct-upload tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

from flask import current_app

URL_TTL = 3600
UNPUBLISHED_URL_TTL = 600  # files of an image still being processed (owner and admins)


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


UPLOAD_TOKEN_TTL = 30 * 60


class TokenInvalid(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_upload_token(
    user_id: int, pool_id: int, node_id: str, max_bytes: int, now: float | None = None
) -> tuple[str, int]:
    """A direct-upload token: HMAC-SHA256 over {user_id, pool_id, node_id, max_bytes, exp,
    nonce}. Returns (token, exp)."""
    exp = int((now or time.time()) + UPLOAD_TOKEN_TTL)
    payload = {
        "user_id": user_id,
        "pool_id": pool_id,
        "node_id": node_id,
        "max_bytes": int(max_bytes),
        "exp": exp,
        "nonce": secrets.token_urlsafe(16),
    }
    body = _b64(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())
    return f"{body}.{sign('upload-token:' + body)}", exp


def read_upload_token(token: str | None) -> dict:
    """Verify signature and expiry (constant-time); raises TokenInvalid (401)."""
    if not current_app.config.get("UPLOAD_TOKEN_SECRET"):
        raise TokenInvalid(
            503,
            "upload_tokens_not_configured",
            "Direct uploads are not configured (UPLOAD_TOKEN_SECRET).",
        )
    body, _, signature = (token or "").partition(".")
    if not body or not verify("upload-token:" + body, signature):
        raise TokenInvalid(401, "invalid_token", "The upload token is not valid.")
    try:
        payload = json.loads(_unb64(body))
    except ValueError as exc:
        raise TokenInvalid(401, "invalid_token", "The upload token is not valid.") from exc
    if payload.get("exp", 0) < time.time():
        raise TokenInvalid(401, "token_expired", "The upload token has expired; start again.")
    return payload
