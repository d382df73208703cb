"""This node's health: database, Redis, and the pools it holds."""

from __future__ import annotations

import os

from flask import current_app
from sqlalchemy import text

from pixelfox.extensions import db, get_redis
from pixelfox.models import StoragePool
from pixelfox.storage import local


def report() -> dict:
    checks: dict[str, dict] = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["db"] = {"status": "ok"}
    except Exception as exc:
        db.session.rollback()
        checks["db"] = {"status": "down", "error": type(exc).__name__}
    try:
        get_redis().ping()
        checks["redis"] = {"status": "ok"}
    except Exception as exc:
        checks["redis"] = {"status": "down", "error": type(exc).__name__}

    pools = []
    if checks["db"]["status"] == "ok":
        node = current_app.config["NODE_ID"]
        for pool in db.session.execute(
            db.select(StoragePool).where(StoragePool.node_id == node)
        ).scalars():
            pools.append(pool_health(pool))
    ok = all(c["status"] == "ok" for c in checks.values()) and all(
        p["status"] == "ok" for p in pools if p["is_active"]
    )
    return {
        "status": "ok" if ok else "down",
        "node_id": current_app.config["NODE_ID"],
        **checks,
        "pools": pools,
    }


def public(report: dict) -> dict:
    """What anyone may see: the overall status and ok/down per dependency — no node id, pool
    names, paths or sizes."""
    pools_ok = all(p["status"] == "ok" for p in report["pools"] if p["is_active"])
    return {
        "status": report["status"],
        "db": {"status": report["db"]["status"]},
        "redis": {"status": report["redis"]["status"]},
        "storage": {"status": "ok" if pools_ok else "down"},
    }


def pool_health(pool: StoragePool) -> dict:
    base = pool.base_path
    writable = os.path.isdir(base) and os.access(base, os.W_OK | os.X_OK)
    free, total = local.disk_usage(base) if os.path.isdir(base) else (0, 0)
    room = None if not pool.max_size else max(0, pool.max_size - (pool.used_size or 0))
    full = room is not None and room <= 0
    return {
        "id": pool.id,
        "name": pool.name,
        "is_active": pool.is_active,
        "status": "ok" if writable and not full else "down",
        "writable": writable,
        "full": full,
        "disk_free": free,
        "disk_total": total,
        "used_size": pool.used_size,
        "max_size": pool.max_size,
    }


def upload_health() -> dict[int, dict]:
    """Latest heartbeat per pool id, for placement (empty when Redis has none)."""
    from pixelfox.services import heartbeat

    try:
        return heartbeat.latest()[1]
    except Exception:  # no heartbeat data: place by the DB alone
        return {}
