"""Object-storage pools (SPEC §10): their bucket configuration, the secret key encrypted at
rest, and the URLs minted for their files.

The secret key is encrypted (Fernet: AES-128-CBC + HMAC-SHA256) with a key derived from
SECRET_KEY, which every node shares: it is never rendered back, logged, or written to a backup
in clear text. Changing SECRET_KEY means entering the S3 secret keys again.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
from datetime import datetime, timedelta
from pathlib import PurePosixPath

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app

from pixelfox.extensions import db
from pixelfox.models import Image, StoragePool
from pixelfox.models.base import utcnow
from pixelfox.storage import s3

log = logging.getLogger(__name__)
ORPHAN_AGE = timedelta(hours=1)  # an upload's PUT and its row are seconds apart
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# Presigned URLs are signed as of the start of a window, so they stay the same (and pages and
# browsers can cache them) for the window; valid for at least TTL - window after minting.
WINDOW, TTL = 3600, 7 * 3600  # links to unlisted and public images of a private bucket
PRIVATE_WINDOW, PRIVATE_TTL = 300, 900  # private images, and files not published yet


def _fernet() -> Fernet:
    key = current_app.config["SECRET_KEY"].encode()
    digest = hashlib.sha256(b"pixelfox s3 secret keys\0" + key)
    return Fernet(base64.urlsafe_b64encode(digest.digest()))


def encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt(token: str | None) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        return ""  # SECRET_KEY changed: the store will refuse, and say so


def config(pool: StoragePool, secret: str | None = None) -> s3.S3Config:
    """The pool's bucket (with `secret` instead of the stored one, when given)."""
    return s3.S3Config(
        endpoint=pool.s3_endpoint or "",
        bucket=pool.s3_bucket or "",
        region=pool.s3_region or "us-east-1",
        prefix=pool.s3_prefix or "",
        access_key=pool.s3_access_key or "",
        secret_key=secret if secret is not None else decrypt(pool.s3_secret_key_enc),
        addressing_style=pool.s3_addressing_style or "path",
    )


def file_url(pool: StoragePool, rel: str, signed: bool, private: bool) -> str:
    """A link to one object: the public bucket's (or CDN's) URL when the pool has a
    public_base_url and the file may be public; else a presigned URL, short-lived for
    private images and files not published yet."""
    cfg = config(pool)
    if pool.public_base_url and not signed:
        return s3.public_url(pool.public_base_url, cfg, rel)
    if private or signed:
        return s3.presigned_get(cfg, rel, PRIVATE_TTL, PRIVATE_WINDOW)
    return s3.presigned_get(cfg, rel, TTL, WINDOW)


_checked: dict[s3.S3Config, tuple[float, s3.S3Error | None]] = {}
CHECK_EVERY = 20  # seconds: /health and the heartbeat ask often; the store is asked this often


def state(pool: StoragePool) -> dict:
    """A bucket's health for the heartbeat and /health (HEAD bucket, then a probe object, at
    most every CHECK_EVERY seconds per bucket); its capacity is the pool's max_size (a store
    reports no free space)."""
    cfg = config(pool)
    at, error = _checked.get(cfg, (0.0, None))
    if time.monotonic() - at > CHECK_EVERY:
        error = None
        try:
            s3.head_bucket(cfg)
            s3.probe(cfg)
        except s3.S3Error as exc:
            error = exc
        _checked[cfg] = (time.monotonic(), error)
    left = None if not pool.max_size else max(0, pool.max_size - (pool.used_size or 0))
    return {
        "writable": error is None,
        "disk_free": None,
        "disk_total": None,
        "full": (left is not None and left <= 0) or bool(error and error.full),
        "error": error.message if error else None,
    }


def sweep_orphans(pool: StoragePool, now: datetime | None = None) -> int:
    """Remove originals an upload put into the bucket but never got a row for (the process
    died between the store's acknowledgement and the commit). Uploads name their original by
    the day (UTC) they arrived, so only today's and yesterday's keys are listed; an object
    counts once it is ORPHAN_AGE old and no image, not even one being deleted, has its
    uuid. Returns how many were removed. Raises s3.S3Error."""
    now = now or utcnow()
    cfg = config(pool)
    removed = 0
    for day in (now, now - timedelta(days=1)):
        for rel in s3.listed_before(cfg, f"original/{day:%Y/%m/%d}/", now - ORPHAN_AGE):
            found = UUID.match(PurePosixPath(rel).name)
            if not found:
                continue
            known = db.session.execute(
                db.select(Image.id).where(Image.uuid == found.group(0))
            ).first()
            if known is None:
                s3.delete(cfg, rel)
                removed += 1
                log.warning("pool %s: removed %s, an upload that never got its row", pool.name, rel)
    return removed
