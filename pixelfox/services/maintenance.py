"""Periodic housekeeping: pool statistics and the stuck-job sweeper (SPEC §6)."""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial

from pixelfox import queues
from pixelfox.extensions import db
from pixelfox.models import Image, StoragePool, User
from pixelfox.models.base import utcnow
from pixelfox.services import (
    dashboard,
    deletion,
    moves,
    objectstore,
    pools,
    processing,
    regen,
    uploads,
)
from pixelfox.storage import s3

log = logging.getLogger(__name__)
STUCK_AFTER = timedelta(minutes=10)
PENDING_GRACE = timedelta(seconds=30)  # the upload queues its job right after the commit


def pool_stats() -> dict[int, int]:
    """Recompute `used_size` of every pool from the rows, and the dashboard's variant count;
    clear buckets of uploads that never got their row."""
    ids = db.session.execute(db.select(StoragePool.id)).scalars().all()
    used = {pid: pools.recompute_used(pid) for pid in ids}
    dashboard.variant_count(refresh=True)
    for pool in db.session.execute(
        db.select(StoragePool).where(StoragePool.storage_type == "s3", StoragePool.is_active)
    ).scalars():
        try:
            objectstore.sweep_orphans(pool)
        except s3.S3Error as exc:
            log.warning("pool %s: orphan sweep skipped (%s)", pool.name, exc.message)
    return used


def sweep(now=None) -> dict[str, int]:
    """Put stuck work back on its queue. Safe to run on any schedule, any number of times:
    nothing whose job is still alive is queued again."""
    now = now or utcnow()
    nodes = pools.node_ids()
    counts: dict[str, int] = {}

    # 1. Jobs whose worker died: RQ moves them to failed (retrying if attempts remain).
    counts["abandoned"] = queues.fail_abandoned(nodes)
    # 2. Retries waiting for their backoff, in case no worker runs with --with-scheduler.
    queues.enqueue_due_retries(nodes)

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
    counts["requeued"] = _requeue_lost(
        (
            # Phase 1 done (ready): phase 2 was lost; else phase 1.
            (processing.finish_job_id(i), partial(processing.queue_finish, i))
            if i.ready_at is not None and i.status == "processing"
            else (uploads.process_job_id(i), partial(uploads.queue_processing, i))
            for i in stale
        ),
        now,
    )

    # 4. Deletions whose job was lost.
    doomed = db.session.execute(
        db.select(Image).where(Image.deleted_at < now - PENDING_GRACE).limit(500)
    ).scalars()
    counts["deletes"] = _requeue_lost(
        (
            (deletion.image_job_id(i, node), partial(deletion.queue_delete, i, node))
            for i in doomed
            for node in deletion.copy_nodes(i)
        ),
        now,
    )

    # 5. Accounts being deleted: carry on (their images' deletions, then the row).
    for user_id in db.session.execute(
        db.select(User.id).where(User.deleted_at < now - PENDING_GRACE).limit(100)
    ).scalars():
        deletion.continue_account_delete(user_id)
        counts["users"] = counts.get("users", 0) + 1

    # 6. Regenerate runs: finish complete ones, re-plan those whose jobs were lost.
    counts["regen_resumed"] = regen.recover()
    # 7. Pool moves whose jobs were lost (Redis flushed, worker killed mid-batch).
    counts["moves_resumed"] = moves.recover(now)
    counts["temp_removed"] = pools.remove_dead_temp_files()
    log.info("sweeper: %s", counts)
    return counts


def _requeue_lost(work, now) -> int:
    """For each (job id, queue it): queue again the work whose job is gone (not waiting, not
    running on a live worker); a live job is left alone, so nothing runs twice."""
    requeued = 0
    for job, queue in work:
        if not queues.is_live(job, now):
            queues.forget(job)
            queue()
            requeued += 1
    return requeued
