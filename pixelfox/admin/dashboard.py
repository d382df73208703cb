"""The admin dashboard (/admin/) and the queues page (/admin/queues)."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for

from pixelfox.admin import bp
from pixelfox.htmx import partial_or_page
from pixelfox.services import dashboard


@bp.get("/")
def dashboard_index():
    """Totals, uploads per day, pools, nodes, queues, running moves, recent failures."""
    return partial_or_page(
        "admin/_dashboard_widgets.html", "admin/dashboard.html", **dashboard.widgets()
    )


@bp.get("/queues")
def queues_index():
    """Per node queue: queued, started, failed (with traceback), scheduled, workers."""
    return render_template(
        "admin/queues.html",
        queues=dashboard.queues_overview(),
        periodic=dashboard.periodic_jobs(),
    )


@bp.post("/queues/failed/<action>")
def queues_failed(action: str):
    """Retry or delete failed jobs (one, or all of a queue)."""
    if action not in ("retry", "delete"):
        abort(404)
    ids = request.form.getlist("job_id")
    if request.form.get("queue"):
        for q in dashboard.queues_overview():
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
