"""Periodic housekeeping: pool statistics and the stuck-job sweeper (SPEC §6)."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from rq import Queue
from rq.registry import StartedJobRegistry
from rq.scheduler import RQScheduler

from pixelfox.extensions import db, get_redis
from pixelfox.jobs.queues import delete_job_id, forget, is_live, process_job_id, queue_name
from pixelfox.models import Image, StoragePool
from pixelfox.models.base import utcnow
from pixelfox.services import images as image_service
from pixelfox.services import pools
from pixelfox.services.uploads import queue_processing

log = logging.getLogger(__name__)
STUCK_AFTER = timedelta(minutes=10)
PENDING_GRACE = timedelta(seconds=30)  # the upload queues its job right after the commit


def pool_stats() -> dict[int, int]:
    """Recompute `used_size` of every pool from the rows, and the dashboard's variant count."""
    from pixelfox.services import dashboard

    ids = db.session.execute(db.select(StoragePool.id)).scalars().all()
    used = {pid: pools.recompute_used(pid) for pid in ids}
    dashboard.variant_count(refresh=True)
    return used


def node_ids() -> list[str]:
    return sorted(set(db.session.execute(db.select(StoragePool.node_id).distinct()).scalars()))


def sweep(now=None) -> dict[str, int]:
    """Put stuck work back on its queue. Safe to run on any schedule, any number of times."""
    now = now or utcnow()
    redis = get_redis()
    counts = {"requeued": 0, "deletes": 0, "abandoned": 0, "temp_removed": 0, "moves_resumed": 0}
    names = [queue_name(n) for n in node_ids()]

    # 1. Jobs whose worker died: RQ moves them to failed (retrying if attempts remain).
    for name in names:
        registry = StartedJobRegistry(queue=Queue(name, connection=redis))
        before = registry.count
        registry.cleanup()
        counts["abandoned"] += max(0, before - registry.count)

    # 2. Retries waiting for their backoff, in case no worker runs with --with-scheduler.
    scheduler = RQScheduler(names, connection=redis)
    scheduler.acquire_locks()
    if scheduler.acquired_locks:
        try:
            scheduler.enqueue_scheduled_jobs()
        finally:
            scheduler.release_locks()

    # 3. Images left pending/processing with no live job (Redis flushed, worker killed).
    stale = db.session.execute(
        db.select(Image)
        .where(
            Image.deleted_at.is_(None),
            ((Image.status == "pending") & (Image.updated_at < now - PENDING_GRACE))
            | ((Image.status == "processing") & (Image.updated_at < now - STUCK_AFTER)),
        )
        .limit(500)
    ).scalars()
    for image in stale:
        job_id = process_job_id(image.uuid)
        if not is_live(job_id, now):
            forget(job_id)
            queue_processing(image)
            counts["requeued"] += 1

    # 4. Deletions whose job was lost.
    doomed = db.session.execute(
        db.select(Image).where(Image.deleted_at < now - PENDING_GRACE).limit(500)
    ).scalars()
    for image in doomed:
        job_id = delete_job_id(image.uuid)
        if not is_live(job_id, now):
            forget(job_id)
            image_service.queue_delete(image)
            counts["deletes"] += 1

    # 5. Accounts being deleted: carry on (their images' deletions, then the row).
    from pixelfox.models import User
    from pixelfox.services import accounts

    for user_id in db.session.execute(
        db.select(User.id).where(User.deleted_at < now - PENDING_GRACE).limit(100)
    ).scalars():
        accounts.continue_delete(user_id)
        counts["users"] = counts.get("users", 0) + 1

    # 6. Regenerate runs: finish complete ones, re-plan those whose jobs were lost.
    from pixelfox.services import regen

    counts["regen_resumed"] = regen.recover()

    # 7. Pool moves whose jobs were lost (Redis flushed, worker killed mid-batch).
    from pixelfox.services import moves

    counts["moves_resumed"] = moves.recover(now)

    counts["temp_removed"] = pools.remove_dead_temp_files()
    # New nodes get their heartbeat without restarting the scheduler.
    from pixelfox.jobs import schedule

    node = current_app.config["NODE_ID"]
    schedule.sync(
        schedule.make_scheduler(redis, node), schedule.definitions(node, pools.active_nodes())
    )
    log.info("sweeper: %s", counts)
    return counts
