"""Numbers for the admin dashboard and the queues page (read-only)."""

from __future__ import annotations

import json
import time
from datetime import timedelta

from flask import current_app
from sqlalchemy import func

from pixelfox import queues
from pixelfox.extensions import db, get_redis
from pixelfox.models import Image, ImageVariant, PoolMove, RegenRun, StoragePool, User
from pixelfox.models.base import utcnow
from pixelfox.services import (
    copies,
    heartbeat,
    moves,
    nodes,
    pools,
    regen,
    replicas,
    settings,
    tiering,
)

TOTALS_KEY = "pixelfox:stats:variants"
TOTALS_TTL = 15 * 60  # pool_stats refreshes it every 5 minutes


def variant_count(refresh: bool = False) -> tuple[int, float]:
    """(variant rows, when counted). Counting 800 000 rows takes most of a second, so the
    number is kept in Redis, refreshed by the pool_stats job (and counted here on a miss)."""
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
    """Every node: those the database knows, and any other that sends heartbeats."""
    return sorted(set(nodes.known()) | set(heartbeat.latest()[0]))


def queues_overview() -> list[dict]:
    """Per node: queued, started (with duration), failed, scheduled, workers."""
    return queues.overview(node_names())


def periodic_jobs() -> list[dict]:
    """Scheduled periodic jobs and their next run (rq-scheduler)."""
    return queues.periodic_jobs(current_app.config["NODE_ID"])


def nodes_overview() -> tuple[list[dict], dict[int, dict]]:
    """Every node with its state (live, down, lost — from the heartbeats in the database),
    last beat, pools, queue depth, workers and scrub (for /admin/nodes), and the pools'
    latest heartbeats."""
    _node_states, pool_states = heartbeat.latest()
    all_pools = db.session.execute(db.select(StoragePool).order_by(StoragePool.id)).scalars().all()
    queue_rows = {q["node"]: q for q in queues.overview(node_names(), details=False)}
    known, live = nodes.rows(), nodes.live()
    now = utcnow()
    rows = []
    for node in node_names():
        row = known.get(node)
        beat = row.last_heartbeat_at if row else None
        state = "lost" if row and row.lost_at else ("live" if node in live else "down")
        rows.append(
            {
                "node": node,
                "row": row,
                "status": state,
                "age": int((now - beat).total_seconds()) if beat else None,
                "pools": [p for p in all_pools if p.node_id == node],
                "depth": queue_rows[node]["queued"],
                "workers": len(queue_rows[node]["workers"]),
            }
        )
    return rows, pool_states


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
    return queues.retry_failed_job(job_id)


def delete_failed_job(job_id: str) -> bool:
    return queues.delete_failed_job(job_id)


def widgets() -> dict:
    """Everything the dashboard shows (the page, and its HTMX refresh)."""
    repair = replicas.progress()
    _node_states, pool_states = heartbeat.latest()
    node_rows, _ = nodes_overview()
    all_pools = (
        db.session.execute(db.select(StoragePool).order_by(StoragePool.node_id, StoragePool.id))
        .scalars()
        .all()
    )
    now = time.time()
    return {
        "totals": totals(),
        "chart": chart(uploads_per_day(30)),
        "pools": all_pools,
        "badges": {p.id: heartbeat.badge(pool_states.get(p.id), now) for p in all_pools},
        "nodes": node_rows,
        "moves": running_moves(),
        "regens": running_regens(),
        "failures": recent_failures(),
        # The repair pass's snapshot (at most a minute old): counting copies of every image
        # on each refresh would cost the dashboard most of its time budget on a big site.
        "durability": (repair or {}).get("counts") or copies.durability(),
        "repair": repair,
        "single_copy_warning": single_copy_warning(),
        "tiering": tiering_status(),
    }


def tiering_status() -> dict | None:
    """With tiering on: the last pass and, when it moved nothing, why."""
    if not settings.get("tiering_enabled"):
        return None
    runs = tiering.last_runs(1)
    return {"run": runs[0] if runs else None}


def single_copy_warning() -> bool:
    """Replication factor 1 while two or more nodes hold active pools: a dead node loses
    images that another node could have kept."""
    return copies.wanted() == 1 and len(pools.node_ids(active_only=True)) >= 2


def pool_badges() -> tuple[dict[int, tuple[str, str]], dict[int, dict]]:
    """({pool id: badge}, {pool id: latest heartbeat}) for the storage page's live cells."""
    _nodes, states = heartbeat.latest()
    now = time.time()
    ids = db.session.execute(db.select(StoragePool.id)).scalars().all()
    return {pid: heartbeat.badge(states.get(pid), now) for pid in ids}, states
