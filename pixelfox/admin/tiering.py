"""Tiering (SPEC §10): the rules, a dry-run preview, the last runs and "run now"."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user

from pixelfox.admin import bp
from pixelfox.models.base import utcnow
from pixelfox.services import tiering


@bp.get("/tiering")
def tiering_index():
    """What the rules are, what a pass would move today, and what the last passes did."""
    preview = tiering.plan(utcnow().date())
    runs = tiering.last_runs()
    return render_template(
        "admin/tiering.html",
        rules=tiering.rules(),
        preview=preview,
        runs=runs,
        run_moves=tiering.moves_of([r.id for r in runs]),
    )


@bp.post("/tiering/run")
def tiering_run():
    """One pass now (also when the daily job is off): its moves appear in /admin/moves."""
    run = tiering.run(trigger="admin", user=current_user)
    if run.moves:
        flash(
            f"Tiering run #{run.id}: {run.images} images in {run.moves} moves started.",
            "success",
        )
    else:
        flash(f"Tiering run #{run.id} moved nothing: {run.notes or ''}", "success")
    return redirect(url_for("admin.tiering_index"), 303)
