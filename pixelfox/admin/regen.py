"""Regenerate variants (a pool or everything) and re-run failed processing, with progress."""

from __future__ import annotations

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from pixelfox.admin import bp
from pixelfox.extensions import db
from pixelfox.htmx import is_htmx, partial_or_page, wants_json
from pixelfox.models import RegenRun, StoragePool
from pixelfox.services import regen


@bp.route("/regen", methods=["GET", "POST"])
def regen_index():
    """Start a run (pool or all; every variant or only failed images) and list past runs."""
    pools = db.session.execute(db.select(StoragePool).order_by(StoragePool.name)).scalars().all()
    status = 200
    if request.method == "POST":
        pool = None
        pool_id = request.form.get("pool", type=int)
        if pool_id:
            pool = db.session.get(StoragePool, pool_id)
            if pool is None:
                abort(404)
        try:
            run = regen.start(pool, request.form.get("scope", ""), current_user)
        except regen.RegenError as exc:
            flash(str(exc), "error")
            status = exc.status
        else:
            if run.status == "done":
                flash("Nothing to do: no image in that scope.", "success")
            return redirect(url_for("admin.regen_detail", run_id=run.id), 303)
    runs = (
        db.session.execute(db.select(RegenRun).order_by(RegenRun.id.desc()).limit(50))
        .scalars()
        .all()
    )
    return render_template(
        "admin/regen.html",
        pools=pools,
        runs=runs,
        progress={r.id: regen.progress(r) for r in runs[:10]},
        scopes=regen.SCOPES,
        chosen_pool=request.values.get("pool", type=int),
    ), status


@bp.get("/regen/<int:run_id>")
def regen_detail(run_id: int):
    """A run's live progress (HTMX polls the bar); JSON for scripts."""
    run = db.session.get(RegenRun, run_id) or abort(404)
    regen.maybe_finish(run)  # its last images' phase 2 may have ended since the batches
    p = regen.progress(run)
    if wants_json():
        return jsonify(p)
    return partial_or_page(
        "admin/_regen_progress.html", "admin/regen_run.html", run=run, p=p, scopes=regen.SCOPES
    )


@bp.post("/regen/<int:run_id>/cancel")
def regen_cancel(run_id: int):
    """Cancel a running run; images already rendered keep their files."""
    run = db.session.get(RegenRun, run_id) or abort(404)
    try:
        regen.cancel(run)
    except regen.RegenError as exc:
        flash(str(exc), "error")
    else:
        flash(
            f"Regenerate run #{run.id} cancelled; images already rendered keep their files.",
            "success",
        )
    if is_htmx():
        return regen_detail(run_id)
    return redirect(url_for("admin.regen_detail", run_id=run.id), 303)
