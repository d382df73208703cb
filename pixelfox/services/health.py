"""This node's health: database, Redis, and the pools it holds."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import text

from pixelfox.extensions import db, get_redis
from pixelfox.models import StoragePool
from pixelfox.services import pools


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
    disk = pools.disk_state(pool)
    return {
        "id": pool.id,
        "name": pool.name,
        "is_active": pool.is_active,
        "status": "ok" if disk["writable"] and not disk["full"] else "down",
        **disk,
        "used_size": pool.used_size,
        "max_size": pool.max_size,
    }
