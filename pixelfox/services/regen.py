"""Regenerate variants for a pool or for every image (after turning AVIF on, say), and re-run
processing of failed images — as a background run with a progress bar (/admin/regen).

The run row holds only what was decided at the start (scope, start time, the newest image
then, the total). Which images are done is read from the images themselves: an image has
been handled by the run when its `processed_at` is at or after the run's start. So a batch job
that crashes, runs twice or loses its queue (Redis flushed) cannot skew the counts: re-running
it skips what is done and renders the rest, and the sweeper re-plans a run whose jobs are gone.
"""

from __future__ import annotations

import logging

from flask import current_app

from pixelfox import queues
from pixelfox.extensions import db
from pixelfox.models import Image, PoolMove, RegenRun, StoragePool, User
from pixelfox.models.base import utcnow
from pixelfox.services import pools, processing

log = logging.getLogger(__name__)
BATCH = 20  # images per job: one job per image would be mostly overhead for thumbnails
PLAN_CHUNK = 500
SCOPES = {"all": "Regenerate every variant", "failed": "Re-run processing of failed images"}


class RegenError(ValueError):
    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


def _in_scope(run: RegenRun) -> list:
    cond = [Image.id <= run.max_image_id, Image.deleted_at.is_(None)]
    if run.pool_id is not None:
        cond.append(Image.storage_pool_id == run.pool_id)
    return cond


def _remaining(run: RegenRun) -> list:
    """Images the run has still to handle."""
    cond = _in_scope(run)
    cond.append(Image.processed_at.is_(None) | (Image.processed_at < run.started_at))
    if run.scope == "failed":
        cond.append(Image.status == "failed")
    return cond


def start(pool: StoragePool | None, scope: str, actor: User | None) -> RegenRun:
    if scope not in SCOPES:
        raise RegenError("Choose what to regenerate: all variants or failed images.", 400)
    overlapping = db.select(RegenRun.id).where(RegenRun.status == "running")
    if pool is not None:
        overlapping = overlapping.where(RegenRun.pool_id.is_(None) | (RegenRun.pool_id == pool.id))
    busy = db.session.execute(overlapping).first()
    if busy:
        raise RegenError(f"Regenerate run #{busy[0]} covers these images and is still running.")
    moving = db.select(PoolMove.id).where(
        PoolMove.status.in_(("planned", "running", "paused")), PoolMove.dry_run.is_(False)
    )
    if pool is not None:
        moving = moving.where(
            (PoolMove.source_pool_id == pool.id) | (PoolMove.target_pool_id == pool.id)
        )
    busy = db.session.execute(moving).first()
    if busy:
        raise RegenError(f"Pool move #{busy[0]} is not finished; regenerate after it.")
    run = RegenRun(
        pool_id=pool.id if pool else None,
        scope=scope,
        status="running",
        started_at=utcnow(),  # microseconds kept (PreciseDateTime), as in processed_at
        max_image_id=db.session.execute(db.select(db.func.max(Image.id))).scalar() or 0,
        created_by=actor.id if actor else None,
    )
    db.session.add(run)
    db.session.flush()
    run.total = db.session.execute(
        db.select(db.func.count(Image.id)).where(*_remaining(run))
    ).scalar_one()
    if run.total == 0:
        run.status, run.finished_at = "done", utcnow()
    db.session.commit()
    if run.status == "running":
        queue_planner(run)
    return run


def job_prefix(run_id: int) -> str:
    return queues.run_prefix("regen", run_id)


def queue_planner(run: RegenRun) -> None:
    node = current_app.config["NODE_ID"]
    queues.queue_planner(node, "regen", run.id, "pixelfox.jobs.regen.regen_plan")


def plan(run_id: int) -> int:
    """Queue batch jobs for every image still to do, on the node that holds it. Idempotent:
    job ids are fixed by the batch's first image, and a live job is not queued twice."""
    run = db.session.get(RegenRun, run_id)
    if run is None or run.status != "running":
        return 0
    queued, cursor = 0, 0
    while True:
        rows = db.session.execute(
            db.select(Image.id, StoragePool.node_id)
            .join(StoragePool, StoragePool.id == Image.storage_pool_id)
            .where(*_remaining(run), Image.id > cursor)
            .order_by(Image.id)
            .limit(PLAN_CHUNK)
        ).all()
        if not rows:
            break
        cursor = rows[-1][0]
        by_node: dict[str, list[int]] = {}
        for image_id, node in rows:
            by_node.setdefault(node, []).append(image_id)
        for node, ids in by_node.items():
            for i in range(0, len(ids), BATCH):
                batch = ids[i : i + BATCH]
                queues.enqueue_once(
                    node,
                    "pixelfox.jobs.regen.regen_batch",
                    queues.job_id("regen", run.id, batch[0]),
                    run.id,
                    batch,
                )
                queued += len(batch)
        db.session.expire_all()
        run = db.session.get(RegenRun, run_id)
        if run.status != "running":
            break
    maybe_finish(run)
    return queued


def run_batch(run_id: int, image_ids: list[int]) -> dict:
    """Render the images of one batch that the run has not handled yet (on their node)."""
    node = current_app.config["NODE_ID"]
    counts = {"rendered": 0, "failed": 0, "skipped": 0}
    for image_id in image_ids:
        db.session.expire_all()
        run = db.session.get(RegenRun, run_id)
        if run is None or run.status != "running":
            break
        image = db.session.get(Image, image_id)
        if (
            image is None
            or image.deleted_at is not None
            or (image.processed_at is not None and image.processed_at >= run.started_at)
            or (run.scope == "failed" and image.status != "failed")
        ):
            counts["skipped"] += 1
            continue
        if image.pool.node_id != node:  # moved since planning: the sweeper re-plans it
            counts["skipped"] += 1
            continue
        if image.status in ("pending", "processing"):
            counts["skipped"] += 1  # its processing job is queued; the image counts when it ends
            continue
        try:
            result = processing.process(image_id, force=True)
        except Exception as exc:  # one bad image must not stop the run
            log.exception("regenerating image %s failed", image_id)
            processing.fail(image_id, f"Regenerating failed ({type(exc).__name__}: {exc}).")
            result = "failed"
        counts["failed" if result == "failed" else "rendered"] += 1
    run = db.session.get(RegenRun, run_id)
    if run is not None:
        maybe_finish(run)
    return counts


def counts(run: RegenRun) -> dict[str, int]:
    rows = db.session.execute(
        db.select(Image.status, db.func.count(Image.id))
        .where(*_in_scope(run), Image.processed_at >= run.started_at)
        .group_by(Image.status)
    ).all()
    by_status = dict(rows)
    return {"done": by_status.get("complete", 0), "failed": by_status.get("failed", 0)}


def maybe_finish(run: RegenRun) -> bool:
    """Mark a running run done once no image in its scope is left to do."""
    if run.status != "running":
        return run.status == "done"
    left = db.session.execute(
        db.select(Image.id)
        .where(*_remaining(run))  # includes uploads whose first processing is still queued
        .limit(1)
    ).first()
    if left:
        return False
    run.status, run.finished_at = "done", utcnow()
    db.session.commit()
    return True


def cancel(run: RegenRun) -> None:
    if run.status != "running":
        raise RegenError("Only a running regenerate run can be cancelled.")
    run.status, run.finished_at = "cancelled", utcnow()
    db.session.commit()


def progress(run: RegenRun) -> dict:
    c = counts(run)
    handled = c["done"] + c["failed"]
    total = max(run.total, handled)
    if run.status == "done":
        total = handled if handled else run.total
    end = run.finished_at or utcnow()
    elapsed = max((end - run.started_at).total_seconds(), 1)
    rate = handled / elapsed
    left = max(total - handled, 0)
    return {
        "id": run.id,
        "status": run.status,
        "scope": run.scope,
        "pool": run.pool.name if run.pool else None,
        "total": total,
        "done": c["done"],
        "failed": c["failed"],
        "remaining": left,
        "percent": 100 if run.status == "done" else (int(handled * 100 / total) if total else 0),
        "rate_per_second": round(rate, 1),
        "eta_seconds": int(left / rate) if rate and run.status == "running" else None,
    }


def recover() -> int:
    """Finish runs with nothing left; re-plan running runs none of whose jobs is alive."""
    resumed = 0
    nodes = pools.node_ids()
    for run in db.session.execute(
        db.select(RegenRun).where(RegenRun.status == "running")
    ).scalars():
        if maybe_finish(run) or queues.has_live_jobs(job_prefix(run.id), nodes):
            continue
        queues.forget(queues.job_id("regen", run.id, "plan"))
        queue_planner(run)
        resumed += 1
    return resumed
