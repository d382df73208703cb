"""The admin dashboard (/admin/) and the queues page (/admin/queues)."""

from __future__ import annotations

import time

from flask import abort, flash, redirect, render_template, request, url_for

from pixelfox.admin import bp
from pixelfox.extensions import db
from pixelfox.htmx import is_htmx
from pixelfox.models import StoragePool
from pixelfox.services import dashboard, heartbeat


def _widgets() -> dict:
    nodes, pool_states = heartbeat.latest()
    pools = (
        db.session.execute(db.select(StoragePool).order_by(StoragePool.node_id, StoragePool.id))
        .scalars()
        .all()
    )
    now = time.time()
    queues = {q["node"]: q for q in dashboard.queues()}
    return {
        "totals": dashboard.totals(),
        "chart": dashboard.chart(dashboard.uploads_per_day(30)),
        "pools": pools,
        "badges": {p.id: heartbeat.badge(pool_states.get(p.id), now) for p in pools},
        "nodes": [
            {
                "node": n,
                "age": int(now - s["at"]) if s else None,
                "depth": queues.get(n, {}).get("queued", 0),
                "workers": len(queues.get(n, {}).get("workers", [])),
            }
            for n, s in ((n, nodes.get(n)) for n in dashboard.node_names())
        ],
        "moves": dashboard.running_moves(),
        "regens": dashboard.running_regens(),
        "failures": dashboard.recent_failures(),
    }


@bp.get("/")
def dashboard_index():
    """Totals, uploads per day, pools, nodes, queues, running moves, recent failures."""
    template = "admin/_dashboard_widgets.html" if is_htmx() else "admin/dashboard.html"
    return render_template(template, **_widgets())


@bp.get("/queues")
def queues_index():
    """Per node queue: queued, started, failed (with traceback), scheduled, workers."""
    return render_template(
        "admin/queues.html", queues=dashboard.queues(), periodic=dashboard.periodic_jobs()
    )


@bp.post("/queues/failed/<action>")
def queues_failed(action: str):
    """Retry or delete failed jobs (one, or all of a queue)."""
    if action not in ("retry", "delete"):
        abort(404)
    ids = request.form.getlist("job_id")
    if request.form.get("queue"):
        for q in dashboard.queues():
            if q["queue"] == request.form["queue"]:
                ids = [j["id"] for j in q["failed"]]
    done = 0
    for job_id in ids:
        ok = (dashboard.retry_failed_job if action == "retry" else dashboard.delete_failed_job)(
            job_id
        )
        done += int(ok)
    flash(f"{done} failed job(s) {'re-queued' if action == 'retry' else 'deleted'}.", "success")
    return redirect(url_for("admin.queues_index"))
