"""Node and pool heartbeats (SPEC §6): each node reports its pools into Redis with a TTL."""

from __future__ import annotations

import json
import logging
import time

import requests
from flask import current_app
from redis.exceptions import RedisError

from pixelfox import queues
from pixelfox.extensions import db, get_redis
from pixelfox.models import StoragePool
from pixelfox.services import nodes, placement
from pixelfox.services import pools as pool_service

log = logging.getLogger(__name__)

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
    """A pool as its node sees it (disk, upload API), for the heartbeat."""
    disk = pool_service.disk_state(pool)
    reachable = probe_upload_api(pool.upload_api_url)
    # A bucket's health is the store's: its upload endpoint is its node's (whose own pools
    # report that), and moves, replicas and processing write to the bucket directly.
    needs_api = not pool.is_s3
    return {
        "pool_id": pool.id,
        "node_id": pool.node_id,
        "name": pool.name,
        **disk,
        "upload_api_reachable": reachable,
        "used": pool.used_size,
        "capacity": pool.max_size,
        "healthy": disk["writable"]
        and not disk["full"]
        and (reachable is not False or not needs_api),
        "at": time.time(),
    }


def beat() -> dict:
    """Report this node's pools and queue depth (Redis, for the badges) and that it is alive
    (the database, for failover)."""
    node = current_app.config["NODE_ID"]
    nodes.touch(node)
    redis = get_redis()
    pools = (
        db.session.execute(db.select(StoragePool).where(StoragePool.node_id == node))
        .scalars()
        .all()
    )
    states = [pool_state(p) for p in pools if p.is_active]
    for state in states:
        if not state["full"]:  # room again: placement may use it before the mark expires
            placement.clear_full(state["pool_id"])
    temp_removed = pool_service.remove_dead_temp_files(deep=False)
    depth = queues.depth(node)
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


def pool_states() -> dict[int, dict]:
    """Latest heartbeat per pool id, for placement; empty when Redis has none or is down
    (placement then goes by the database alone)."""
    try:
        return latest()[1]
    except RedisError:
        return {}


def request_beat(node_id: str) -> None:
    """Ask a node for a heartbeat now (after its pools changed), so badges show the change
    within seconds instead of at the next scheduled beat."""
    try:
        queues.enqueue_once(
            node_id,
            "pixelfox.jobs.periodic.heartbeat",
            queues.job_id("heartbeat-now", node_id),
            timeout=60,
        )
    except RedisError:  # the scheduled beat comes anyway
        log.warning("could not queue a heartbeat for node %s", node_id)


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
