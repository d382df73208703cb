"""Deleting images and accounts. A deletion hides at once (`deleted_at`); a job on every node
that holds a copy removes that copy's files and row, and the last one the image's rows; an
account's row goes when its last image has gone. Every step is idempotent, and the sweeper
carries on after lost jobs."""

from __future__ import annotations

import logging

from flask import current_app

from pixelfox import queues
from pixelfox.extensions import db
from pixelfox.models import Image, PoolMove, RegenRun, StoragePool, User
from pixelfox.models.base import utcnow
from pixelfox.services import accounts, nodes
from pixelfox.services.poolfiles import PoolFiles

log = logging.getLogger(__name__)


def image_job_id(image: Image, node: str) -> str:
    return queues.job_id("delete-image", image.uuid, node)


def copy_nodes(image: Image) -> list[str]:
    """The nodes that still hold a copy of the image (lost nodes hold nothing we can reach)."""
    held = {image.pool.node_id} | {c.pool.node_id for c in image.copies}
    return sorted(held - nodes.lost())


def request_delete(image: Image) -> None:
    """Hide the image at once; the delete job on the pool's node removes files, then rows."""
    if image.deleted_at is None:
        image.deleted_at = utcnow()
        db.session.commit()
    queue_delete(image)


def queue_delete(image: Image, node: str | None = None) -> None:
    """Queue the delete job on every node holding a copy (or on one)."""
    for target in [node] if node else copy_nodes(image):
        try:
            queues.enqueue_once(
                target,
                "pixelfox.jobs.images.delete_image",
                image_job_id(image, target),
                image.id,
            )
        except Exception:  # Redis down: the sweeper picks up images marked deleted
            log.exception("could not queue deletion of %s on %s", image.uuid, target)


def delete_now(image_id: int) -> str:
    """Remove this node's copies of an image (files, then rows); the last copy gone, the
    image's rows go too. Idempotent: a missing file or row is fine."""
    image = db.session.get(Image, image_id)
    if image is None:
        return "gone"
    if image.deleted_at is None:
        return "not-requested"
    here = current_app.config["NODE_ID"]
    lost = nodes.lost()
    rels = {image.stored_path} | {v.stored_path for v in image.variants}
    held = {c.pool_id: c for c in image.copies}
    pools_here = {
        p.id: p for p in [image.pool] + [c.pool for c in image.copies] if p.node_id == here
    }
    for pool in pools_here.values():
        freed = _remove(pool, rels)
        db.session.execute(
            db.update(StoragePool)
            .where(StoragePool.id == pool.id)
            .values(
                used_size=db.case(
                    (StoragePool.used_size > freed, StoragePool.used_size - freed), else_=0
                )
            )
        )
        if pool.id in held:
            db.session.delete(held.pop(pool.id))
    for pool_id, row in list(held.items()):
        if row.pool.node_id in lost:  # nothing to remove there: the node is gone
            db.session.delete(held.pop(pool_id))
    primary_unlisted = image.storage_pool_id not in pools_here and not any(
        c.pool_id == image.storage_pool_id for c in image.copies
    )
    db.session.commit()
    waiting = {row.pool.node_id for row in held.values()}
    if primary_unlisted and image.pool.node_id not in lost:  # (every image has a primary row)
        waiting.add(image.pool.node_id)
    if waiting:
        return f"waiting for {', '.join(sorted(waiting))}"
    user_id = image.user_id
    db.session.delete(image)  # variant rows go with it (ORM cascade)
    db.session.commit()
    finish_account_delete(user_id)  # the last image of a deleted account takes the row along
    return "deleted"


def _remove(pool: StoragePool, rels: set[str]) -> int:
    """Delete these files of one pool (objects, for an object-storage pool; a store that
    cannot be reached raises and the job is retried); the bytes freed."""
    with PoolFiles(pool) as files:
        return sum(files.remove(rel) for rel in rels)


def request_account_delete(actor: User, user: User) -> None:
    """Disable the account at once (sessions and API key stop working), hide its images, and
    let jobs delete the files; the row goes when its last image has gone."""
    if user.id == actor.id:
        raise accounts.AccountError("You cannot delete your own account here.")
    if user.is_admin and user.is_active and not accounts.other_active_admins(user):
        raise accounts.AccountError("This is the last active admin; promote someone else first.")
    if user.deleted_at is None:
        user.deleted_at = utcnow()
    user.status = "disabled"
    user.api_key_hash = user.api_key_prefix = None
    user.session_generation = (user.session_generation or 0) + 1
    db.session.execute(  # hidden everywhere at once; files go with the delete jobs
        db.update(Image)
        .where(Image.user_id == user.id, Image.deleted_at.is_(None))
        .values(deleted_at=user.deleted_at)
    )
    db.session.commit()
    try:
        queues.enqueue_once(
            current_app.config["NODE_ID"],
            "pixelfox.jobs.images.delete_user",
            queues.job_id("delete-user", user.id),
            user.id,
        )
    except Exception:  # Redis down: the sweeper carries on with users marked deleted
        log.exception("could not queue deletion of user %s", user.id)


def continue_account_delete(user_id: int) -> str:
    """One idempotent step of deleting a user: mark their images deleted and queue the file
    deletions; drop the row once no image is left. Run by the job and by the sweeper."""
    user = db.session.get(User, user_id)
    if user is None:
        return "gone"
    if user.deleted_at is None:
        return "not-requested"
    now = utcnow()
    db.session.execute(
        db.update(Image)
        .where(Image.user_id == user.id, Image.deleted_at.is_(None))
        .values(deleted_at=now)
    )
    db.session.commit()
    left = db.session.execute(
        db.select(Image).where(Image.user_id == user.id).order_by(Image.id).limit(5000)
    ).scalars()
    waiting = 0
    for image in left:
        waiting += 1
        for node in copy_nodes(image):
            if not queues.is_live(image_job_id(image, node)):
                queue_delete(image, node)
    if waiting:
        return f"waiting for {waiting} images"
    return finish_account_delete(user.id)


def finish_account_delete(user_id: int) -> str:
    """Drop a deleted user's row if none of their images is left."""
    user = db.session.get(User, user_id)
    if user is None or user.deleted_at is None:
        return "gone" if user is None else "not-requested"
    if db.session.execute(db.select(Image.id).where(Image.user_id == user.id).limit(1)).first():
        return "images left"
    db.session.execute(
        db.update(PoolMove).where(PoolMove.created_by == user.id).values(created_by=None)
    )
    db.session.execute(
        db.update(RegenRun).where(RegenRun.created_by == user.id).values(created_by=None)
    )
    db.session.delete(user)
    db.session.commit()
    return "deleted"
