"""Receiving an upload: the one code path for the web form and the API (SPEC §5, §7)."""

from __future__ import annotations

import logging
import secrets
import string
import time
import uuid as uuidlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError

from pixelfox import queues
from pixelfox.extensions import db, get_redis
from pixelfox.imaging.sniff import Refused, sniff
from pixelfox.models import Image, StoragePool, User
from pixelfox.models.base import utcnow
from pixelfox.services import copies, heartbeat, placement, pools, ratelimit, settings, tokens
from pixelfox.services.poolfiles import PoolFiles
from pixelfox.storage import local, paths, s3

log = logging.getLogger(__name__)
BASE62 = string.digits + string.ascii_letters
MB = 1024 * 1024


class UploadRefused(Exception):
    """An upload we will not take; carries the HTTP status and API error code."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


@dataclass
class Received:
    image: Image
    duplicate: bool


def max_bytes() -> int:
    return int(settings.get("max_upload_mb")) * MB


def too_large() -> UploadRefused:
    return UploadRefused(
        413, "file_too_large", f"The file is larger than {settings.get('max_upload_mb')} MB."
    )


def admit(user: User, ip: str) -> None:
    """Checks before any byte is stored: uploads enabled, per-IP and per-user rate limits."""
    if not settings.get("image_upload_enabled"):
        raise UploadRefused(503, "uploads_disabled", "Uploads are switched off at the moment.")
    try:
        ratelimit.hit("upload-ip", ip, int(settings.get("upload_rate_limit_per_minute")), "uploads")
        ratelimit.hit(
            "upload-user",
            str(user.id),
            int(settings.get("upload_user_rate_limit_per_minute")),
            "uploads",
        )
    except ratelimit.RateLimited as exc:
        raise UploadRefused(429, "rate_limited", exc.message, exc.retry_after) from exc
    except ratelimit.Unavailable as exc:
        # Redis restarting: take the upload uncounted (only signed-in users upload); its job
        # is queued by the sweeper once Redis is back.
        log.warning("upload rate limits unavailable (%s); not counted", exc)


def share_link() -> str:
    return "".join(secrets.choice(BASE62) for _ in range(10))


def receive(
    stream,
    filename: str | None,
    user: User,
    ip: str,
    pool: StoragePool | None = None,
    limit: int | None = None,
) -> Received:
    """Store one uploaded file and queue its processing. `stream` is a readable binary file.
    Refusals raise UploadRefused and leave no file and no row behind. Every upload route
    (form, API, direct-to-storage) comes through here."""
    admit(user, ip)
    limit = min(limit, max_bytes()) if limit else max_bytes()
    if pool is None:
        try:
            pool = placement.choose_pool(0, node_id=current_app.config["NODE_ID"])
        except placement.NoPoolAvailable as exc:
            raise UploadRefused(exc.status, exc.code, exc.message) from exc
    files = PoolFiles(pool)  # an object-storage pool: the file is staged in TMP_DIR
    try:
        with files, local.TempFile(files.tmp, "up-") as temp:
            try:
                temp.write(local.iter_file(stream), limit)
            except local.TooLarge as exc:
                raise too_large() from exc
            received = _place(temp, filename, user, pool, files)
            if received.duplicate:
                temp.discard()
            return received
    except OSError as exc:
        if local.is_disk_full(exc):
            if not pool.is_s3:  # (a full TMP_DIR says nothing about the bucket)
                placement.mark_full(pool.id)  # the next upload goes to a pool with room
            raise storage_full() from exc
        raise


def storage_full() -> UploadRefused:
    return UploadRefused(507, "storage_full", "The storage pool is full.")


def _place(
    temp: local.TempFile, filename: str | None, user: User, pool: StoragePool, files: PoolFiles
) -> Received:
    """Check the bytes, then write the row and store the file in one step: into a disk pool
    the row is flushed first (uuid/share-link collisions show there), the file renamed into
    place, then the commit; into a bucket the object is uploaded and acknowledged first, then
    the row written. A failure of either undoes both."""
    temp.fh.flush()
    try:
        with open(temp.path, "rb") as fh:
            found = sniff(fh, float(settings.get("max_image_megapixels")))
    except Refused as exc:
        raise UploadRefused(exc.status, exc.code, exc.message) from exc

    existing = _existing(user, temp.sha256)
    if existing is not None:
        return Received(existing, True)
    room = pools.room(pool)
    if room is not None and room < temp.size:
        raise storage_full()

    now = utcnow()
    uuid = str(uuidlib.uuid4())
    rel = paths.original_path(uuid, found.kind.ext, now)
    # A bucket is written before the pool's row is locked below (the store may take a
    # while, and every upload into the pool would wait on that lock); the row follows only
    # once the store has acknowledged the object. A disk is written inside the transaction.
    stored = False
    if files.remote:
        try:
            files.store(temp, rel)
        except s3.S3Error as exc:
            raise store_refused(pool, exc) from exc
        stored = True
    try:
        for attempt in range(5):
            if attempt and not stored:
                uuid = str(uuidlib.uuid4())
                rel = paths.original_path(uuid, found.kind.ext, now)
            image = _new_image(uuid, rel, found, temp, filename, user, pool)
            try:
                # Lock the pool row before inserting its child row: the insert's foreign-key
                # check takes a shared lock, and upgrading it later deadlocks with a worker
                # doing the same (MySQL/MariaDB).
                db.session.execute(
                    db.update(StoragePool)
                    .where(StoragePool.id == pool.id)
                    .values(used_size=StoragePool.used_size + temp.size)
                )
                db.session.add(image)
                db.session.flush()
                copies.add_primary(image)
                db.session.flush()
            except IntegrityError:
                db.session.rollback()
                existing = _existing(user, temp.sha256)
                if existing is not None:  # the same file arrived twice at once
                    if stored:
                        _unstore(files, rel)
                    return Received(existing, True)
                continue  # uuid/share_link collision: new names
            if not stored:
                stored = True  # (a rename that failed half-way is undone below as well)
                files.store(temp, rel)
            db.session.commit()
            break
        else:
            raise UploadRefused(
                500, "upload_failed", "The upload could not be stored; please retry."
            )
    except BaseException:
        db.session.rollback()
        if stored:
            _unstore(files, rel)
        raise
    queue_processing(image)
    return Received(image, False)


def _new_image(uuid, rel, found, temp, filename, user, pool) -> Image:
    return Image(
        uuid=uuid,
        share_link=share_link(),
        user_id=user.id,
        title=_title(filename),
        original_filename=_clean_name(filename),
        stored_path=rel,
        mime_type=found.kind.mime,
        size=temp.size,
        width=found.width,
        height=found.height,
        sha256=temp.sha256,
        source_sha256=temp.sha256,
        status="pending",
        visibility="unlisted",
        storage_pool_id=pool.id,
    )


def store_refused(pool: StoragePool, exc: s3.S3Error) -> UploadRefused:
    """An object store that refused an upload, in words for the uploader (its own answer goes
    to the log, for the admin)."""
    log.warning("pool %s refused an upload: %s", pool.name, exc.message)
    if exc.full:
        placement.mark_full(pool.id)
        return storage_full()
    return UploadRefused(
        503,
        "storage_unavailable",
        "The storage pool could not store the file (its object store refused it); "
        "please try again later.",
    )


def _unstore(files: PoolFiles, rel: str) -> None:
    """Undo a stored file after the row could not be written."""
    try:
        files.remove(rel)
    except s3.S3Error as exc:  # the object stays; nothing points at it
        log.warning("could not remove %s after a failed upload: %s", rel, exc.message)


def _existing(user: User, source_sha256: str) -> Image | None:
    return db.session.execute(
        db.select(Image).where(
            Image.user_id == user.id,
            Image.source_sha256 == source_sha256,
            Image.deleted_at.is_(None),
        )
    ).scalar_one_or_none()


def process_job_id(image: Image) -> str:
    return queues.job_id("process-image", image.uuid)


def queue_processing(image: Image, force: bool = False) -> None:
    """Queue `process_image` (phase 1: the thumbnails) on the node that holds the bytes, ahead
    of the work already queued there — phase 2 of earlier uploads, moves, copies — so a new
    picture appears within a second also under a backlog. If Redis is down the image stays
    `pending` and the sweeper queues it later. `force` renders a complete image again."""
    try:
        queues.enqueue_once(
            image.pool.node_id,
            "pixelfox.jobs.images.process_image",
            process_job_id(image),
            *((image.id, True) if force else (image.id,)),
            at_front=True,
        )
    except Exception:  # Redis down: the row is safe, the sweeper re-queues pending images
        log.exception("could not queue processing of %s", image.uuid)


def _clean_name(filename: str | None) -> str | None:
    if not filename:
        return None
    name = Path(filename.replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:255] or None


def _title(filename: str | None) -> str | None:
    name = _clean_name(filename)
    return Path(name).stem[:255] if name else None


def open_session(user: User, file_size) -> dict:
    """Direct-to-storage upload (SPEC §7): pick the pool, sign a token for its node."""
    if not current_app.config.get("UPLOAD_TOKEN_SECRET"):
        raise UploadRefused(
            503, "upload_tokens_not_configured", "Direct uploads are not configured on this server."
        )
    if not settings.get("image_upload_enabled"):
        raise UploadRefused(503, "uploads_disabled", "Uploads are switched off at the moment.")
    try:
        size = int(file_size)
    except (TypeError, ValueError):
        size = 0
    if size <= 0:
        raise UploadRefused(400, "bad_file_size", "Send the file's size in bytes as file_size.")
    if size > max_bytes():
        raise too_large()
    try:
        pool = placement.choose_pool(size, health=heartbeat.pool_states(), direct=True)
    except placement.NoPoolAvailable as exc:
        raise UploadRefused(exc.status, exc.code, exc.message) from exc
    token, exp = tokens.issue_upload_token(user.id, pool.id, pool.node_id, size)
    return {
        "upload_url": pool.upload_api_url,
        "token": token,
        "pool_id": pool.id,
        "expires_at": datetime.fromtimestamp(exp, UTC).isoformat().replace("+00:00", "Z"),
        "max_bytes": size,
    }


def claim_token(token: str | None) -> tuple[User, StoragePool, int]:
    """Check a direct-upload token on the storage node and use it up (single use)."""
    try:
        payload = tokens.read_upload_token(token)
    except tokens.TokenInvalid as exc:
        raise UploadRefused(exc.status, exc.code, exc.message) from exc
    node = current_app.config["NODE_ID"]
    if payload.get("node_id") != node:
        raise UploadRefused(401, "wrong_node", "This upload token is for another storage node.")
    pool = db.session.get(StoragePool, payload.get("pool_id"))
    if pool is None or pool.node_id != node:
        raise UploadRefused(404, "pool_not_here", "The token's pool does not live on this node.")
    user = db.session.get(User, payload.get("user_id"))
    if user is None or not user.is_active:
        raise UploadRefused(401, "invalid_token", "The upload token is not valid.")
    if not pool.is_active or not pool.accepts_uploads:
        raise UploadRefused(503, "pool_unavailable", "This storage pool is not taking uploads.")
    room = pools.room(pool)
    if room is not None and room < int(payload["max_bytes"]):
        raise UploadRefused(507, "storage_full", "The storage pool is full.")
    ttl = max(1, int(payload["exp"] - time.time()) + 60)
    try:
        fresh = get_redis().set(f"pixelfox:upload-token:{payload['nonce']}", 1, nx=True, ex=ttl)
    except RedisError as exc:  # single use cannot be checked: refuse rather than allow replays
        raise UploadRefused(
            503, "try_again", "Uploads are briefly unavailable; try again in a minute."
        ) from exc
    if not fresh:
        raise UploadRefused(409, "token_used", "This upload token was already used.")
    return user, pool, int(payload["max_bytes"])
