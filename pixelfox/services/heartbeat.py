"""Node and pool heartbeats (SPEC §6): each node reports its pools into Redis with a TTL."""

from __future__ import annotations

import json
import os
import time

import requests
from flask import current_app
from rq import Queue

from pixelfox.extensions import db, get_redis
from pixelfox.jobs.queues import queue_name
from pixelfox.models import StoragePool
from pixelfox.services import pools as pool_service
from pixelfox.storage import local

TTL = 120
POOL_KEY = "pixelfox:heartbeat:pool:{}"
NODE_KEY = "pixelfox:heartbeat:node:{}"
NODES_SET = "pixelfox:heartbeat:nodes"


def probe_upload_api(url: str | None) -> bool | None:
    """HEAD the pool's upload endpoint (2 s); None when the pool has none."""
    if not url:
        return None
    try:
        return requests.head(url, timeout=2, allow_redirects=False).status_code < 500
    except requests.RequestException:
        return False


def pool_state(pool: StoragePool) -> dict:
    base = pool.base_path
    writable = os.path.isdir(base) and os.access(base, os.W_OK | os.X_OK)
    free, total = local.disk_usage(base) if os.path.isdir(base) else (0, 0)
    room = None if not pool.max_size else max(0, pool.max_size - (pool.used_size or 0))
    reachable = probe_upload_api(pool.upload_api_url)
    full = (room is not None and room <= 0) or (writable and free < 64 * 1024 * 1024)
    healthy = writable and not full and reachable is not False
    return {
        "pool_id": pool.id,
        "node_id": pool.node_id,
        "name": pool.name,
        "writable": writable,
        "upload_api_reachable": reachable,
        "full": full,
        "disk_free": free,
        "disk_total": total,
        "used": pool.used_size,
        "capacity": pool.max_size,
        "healthy": healthy,
        "at": time.time(),
    }


def beat() -> dict:
    """Report this node's pools and queue depth."""
    node = current_app.config["NODE_ID"]
    redis = get_redis()
    pools = (
        db.session.execute(db.select(StoragePool).where(StoragePool.node_id == node))
        .scalars()
        .all()
    )
    states = [pool_state(p) for p in pools if p.is_active]
    for state in states:
        if not state["full"]:  # room again: placement may use it before the mark expires
            pool_service.clear_full(state["pool_id"])
    temp_removed = pool_service.remove_dead_temp_files(deep=False)
    depth = Queue(queue_name(node), connection=redis).count
    node_state = {
        "node_id": node,
        "at": time.time(),
        "pools": [s["pool_id"] for s in states],
        "queue_depth": depth,
        "healthy": all(s["healthy"] for s in states),
        "temp_removed": temp_removed,
    }
    with redis.pipeline() as pipe:
        for s in states:
            pipe.set(POOL_KEY.format(s["pool_id"]), json.dumps(s), ex=TTL)
        pipe.set(NODE_KEY.format(node), json.dumps(node_state), ex=TTL)
        pipe.sadd(NODES_SET, node)
        pipe.execute()
    return node_state


def latest() -> tuple[dict[str, dict], dict[int, dict]]:
    """({node_id: state}, {pool_id: state}) from the heartbeats still alive in Redis."""
    redis = get_redis()
    nodes = sorted(n.decode() for n in redis.smembers(NODES_SET))
    node_states = {}
    for node, raw in zip(
        nodes, redis.mget([NODE_KEY.format(n) for n in nodes]) if nodes else [], strict=False
    ):
        node_states[node] = json.loads(raw) if raw else None
    pool_ids = db.session.execute(db.select(StoragePool.id)).scalars().all()
    raws = redis.mget([POOL_KEY.format(i) for i in pool_ids]) if pool_ids else []
    pool_states = {i: json.loads(r) for i, r in zip(pool_ids, raws, strict=False) if r}
    return node_states, pool_states


def badge(state: dict | None, now: float | None = None) -> tuple[str, str]:
    """(css class, label) for a pool or node heartbeat."""
    if not state:
        return "none", "no heartbeat"
    age = int((now or time.time()) - state["at"])
    if state.get("healthy"):
        return "healthy", f"healthy · {age}s ago"
    if state.get("writable") is False or state.get("full"):
        return "down", f"down · {age}s ago"
    return "degraded", f"degraded · {age}s ago"
