"""Numbers for the admin dashboard and the queues page (read-only)."""

from __future__ import annotations

import time
from datetime import timedelta

from rq import Queue, Worker
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from sqlalchemy import func

from pixelfox.extensions import db, get_redis
from pixelfox.jobs.queues import queue_name
from pixelfox.models import Image, ImageVariant, PoolMove, StoragePool, User
from pixelfox.models.base import utcnow
from pixelfox.services import heartbeat, moves

TOTALS_KEY = "pixelfox:stats:variants"
TOTALS_TTL = 15 * 60  # pool_stats refreshes it every 5 minutes


def variant_count(refresh: bool = False) -> tuple[int, float]:
    """(variant rows, when counted). Counting 800 000 rows takes most of a second, so the
    number is kept in Redis, refreshed by the pool_stats job (and counted here on a miss)."""
    import json

    redis = get_redis()
    if not refresh:
        raw = redis.get(TOTALS_KEY)
        if raw:
            data = json.loads(raw)
            return data["count"], data["at"]
    count = db.session.execute(db.select(func.count(ImageVariant.id))).scalar()
    at = time.time()
    redis.set(TOTALS_KEY, json.dumps({"count": count, "at": at}), ex=TOTALS_TTL)
    return count, at


def totals() -> dict:
    """Users and images are counted live (indexed); bytes are the pools' used_size, which
    every write keeps current; the variant count comes from variant_count()."""
    variants, _counted_at = variant_count()
    return {
        "users": db.session.execute(
            db.select(func.count(User.id)).where(User.deleted_at.is_(None))
        ).scalar(),
        "images": db.session.execute(
            db.select(func.count(Image.id)).where(Image.deleted_at.is_(None))
        ).scalar(),
        "variants": variants,
        "bytes": int(
            db.session.execute(
                db.select(func.coalesce(func.sum(StoragePool.used_size), 0))
            ).scalar()
        ),
    }


def uploads_per_day(days: int = 30) -> list[tuple[str, int]]:
    """[(YYYY-MM-DD, count)] for the last `days` days, zeros included."""
    since = (utcnow() - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    day = func.date(Image.created_at)
    rows = dict(
        db.session.execute(
            db.select(day, func.count(Image.id)).where(Image.created_at >= since).group_by(day)
        ).all()
    )
    counts = {str(k): int(v) for k, v in rows.items()}
    out = []
    for i in range(days):
        d = (since + timedelta(days=i)).date().isoformat()
        out.append((d, counts.get(d, 0)))
    return out


def chart(points: list[tuple[str, int]], width: int = 600, height: int = 120) -> dict:
    """Bars for a server-rendered SVG."""
    top = max([c for _d, c in points] + [1])
    bar = width / max(1, len(points))
    return {
        "width": width,
        "height": height,
        "max": top,
        "bars": [
            {
                "x": round(i * bar, 1),
                "w": round(bar * 0.8, 1),
                "h": round((c / top) * (height - 14), 1),
                "day": d,
                "count": c,
            }
            for i, (d, c) in enumerate(points)
        ],
    }


def node_names() -> list[str]:
    nodes = set(db.session.execute(db.select(StoragePool.node_id).distinct()).scalars())
    nodes |= set(heartbeat.latest()[0])
    return sorted(nodes)


def queues() -> list[dict]:
    """Per node: queued, started (with duration), failed, scheduled, workers."""
    redis = get_redis()
    workers = Worker.all(connection=redis)
    now = time.time()
    out = []
    for node in node_names():
        q = Queue(queue_name(node), connection=redis)
        started_reg = StartedJobRegistry(queue=q)
        started = []
        for job in Job.fetch_many(started_reg.get_job_ids()[:50], connection=redis):
            if job is not None:
                began = job.started_at.timestamp() if job.started_at else None
                started.append(
                    {
                        "id": job.id,
                        "description": job.description,
                        "seconds": int(now - began) if began else None,
                    }
                )
        failed_reg = FailedJobRegistry(queue=q)
        failed = []
        for job in Job.fetch_many(failed_reg.get_job_ids(0, 49), connection=redis):
            if job is not None:
                result = job.latest_result()
                failed.append(
                    {
                        "id": job.id,
                        "description": job.description,
                        "ended_at": job.ended_at,
                        "traceback": (result.exc_string if result else None) or job.exc_info or "",
                    }
                )
        node_workers = [w for w in workers if q.name in w.queue_names()]
        depth = q.count
        out.append(
            {
                "node": node,
                "queue": q.name,
                "queued": depth,
                "started": started,
                "failed_count": failed_reg.count,
                "failed": failed,
                "scheduled": ScheduledJobRegistry(queue=q).count,
                "workers": [
                    {"name": w.name, "state": w.get_state(), "last_heartbeat": w.last_heartbeat}
                    for w in node_workers
                ],
                "no_worker": (depth > 0 or started) and not node_workers,
            }
        )
    return out


def periodic_jobs() -> list[dict]:
    """Scheduled periodic jobs and their next run (rq-scheduler)."""
    from flask import current_app

    from pixelfox.jobs import schedule

    scheduler = schedule.make_scheduler(get_redis(), current_app.config["NODE_ID"])
    out = []
    for job, when in scheduler.get_jobs(with_times=True):
        out.append(
            {
                "id": job.id,
                "description": job.description,
                "next_run": when,
                "interval": job.meta.get("interval"),
            }
        )
    return sorted(out, key=lambda j: j["id"])


def running_moves() -> list[dict]:
    rows = (
        db.session.execute(
            db.select(PoolMove)
            .where(PoolMove.status.in_(("running", "paused")))
            .order_by(PoolMove.id.desc())
            .limit(10)
        )
        .scalars()
        .all()
    )
    return [{"move": m, "p": moves.progress(m)} for m in rows]


def running_regens() -> list[dict]:
    from pixelfox.models import RegenRun
    from pixelfox.services import regen

    rows = db.session.execute(
        db.select(RegenRun)
        .where(RegenRun.status == "running")
        .order_by(RegenRun.id.desc())
        .limit(5)
    ).scalars()
    return [regen.progress(r) for r in rows]


def recent_failures(limit: int = 10) -> list[Image]:
    return (
        db.session.execute(
            db.select(Image)
            .where(Image.status == "failed", Image.deleted_at.is_(None))
            .order_by(Image.updated_at.desc())
            .limit(limit)
        )
        .scalars()
        .all()
    )


def retry_failed_job(job_id: str) -> bool:
    try:
        job = Job.fetch(job_id, connection=get_redis())
    except Exception:
        return False
    FailedJobRegistry(queue=Queue(job.origin, connection=get_redis())).requeue(job_id)
    return True


def delete_failed_job(job_id: str) -> bool:
    try:
        job = Job.fetch(job_id, connection=get_redis())
    except Exception:
        return False
    job.delete()
    return True
