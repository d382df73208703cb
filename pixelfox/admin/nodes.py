"""Nodes seen by heartbeat, and live pool health badges."""

from __future__ import annotations

import time

from flask import render_template
from rq import Queue, Worker

from pixelfox.admin import bp
from pixelfox.extensions import db, get_redis
from pixelfox.jobs.queues import queue_name
from pixelfox.models import StoragePool
from pixelfox.services import heartbeat

STALE_AFTER = 180  # seconds: a node older than this is shown red


@bp.get("/storage/health")
def storage_health():
    """Badge cells for every pool; the storage page polls this fragment."""
    _nodes, states = heartbeat.latest()
    pool_ids = db.session.execute(db.select(StoragePool.id)).scalars().all()
    now = time.time()
    badges = {pid: heartbeat.badge(states.get(pid), now) for pid in pool_ids}
    return render_template("admin/_pool_badges.html", badges=badges, states=states)


@bp.get("/nodes")
def nodes_index():
    """Every node: last beat, pools, queue depth, workers."""
    redis = get_redis()
    node_states, pool_states = heartbeat.latest()
    pools = db.session.execute(db.select(StoragePool).order_by(StoragePool.id)).scalars().all()
    names = sorted(set(node_states) | {p.node_id for p in pools})
    workers = Worker.all(connection=redis)
    now = time.time()
    rows = []
    for node in names:
        state = node_states.get(node)
        queue = Queue(queue_name(node), connection=redis)
        age = int(now - state["at"]) if state else None
        rows.append(
            {
                "node": node,
                "state": state,
                "age": age,
                "stale": age is None or age > STALE_AFTER,
                "pools": [p for p in pools if p.node_id == node],
                "depth": queue.count,
                "workers": sum(1 for w in workers if queue.name in w.queue_names()),
            }
        )
    return render_template("admin/nodes.html", rows=rows, pool_states=pool_states)
