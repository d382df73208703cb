"""Pool moves: choose a target, pre-flight and dry run, start, watch, control (SPEC §5)."""

from __future__ import annotations

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from pixelfox.admin import bp
from pixelfox.extensions import db
from pixelfox.htmx import is_htmx, partial_or_page, wants_json
from pixelfox.models import PoolMove, StoragePool
from pixelfox.services import moves, poolform


@bp.route("/storage/move/<int:pool_id>", methods=["GET", "POST"])
def move_form(pool_id: int):
    """Pick a target; see the pre-flight checks and the plan; start (or dry-run)."""
    source = db.session.get(StoragePool, pool_id) or abort(404)
    targets = (
        db.session.execute(
            db.select(StoragePool).where(StoragePool.id != source.id).order_by(StoragePool.name)
        )
        .scalars()
        .all()
    )
    chosen = request.values.get("target_pool_id", type=int)
    target = next((t for t in targets if t.id == chosen), None)
    status = 200
    if request.method == "POST":
        if target is None:
            flash("Choose a target pool.", "error")
            status = 400
        else:
            try:
                move = moves.start(source, target, current_user, bool(request.form.get("dry_run")))
            except moves.MoveError as exc:
                flash(str(exc), "error")
                status = 409
            else:
                return redirect(url_for("admin.move_detail", move_id=move.id))
    check = moves.preflight(source, target) if target else None
    return render_template(
        "admin/move_form.html", source=source, targets=targets, target=target, check=check
    ), status


@bp.post("/storage/<int:pool_id>/uploads")
def pool_uploads(pool_id: int):
    """Switch a pool's accepts_uploads (recommended off while it drains)."""
    pool = db.session.get(StoragePool, pool_id) or abort(404)
    poolform.set_accepts_uploads(pool, request.form.get("accepts_uploads") == "on")
    flash(
        f"Pool {pool.name} {'accepts' if pool.accepts_uploads else 'no longer accepts'} uploads.",
        "success",
    )
    return redirect(
        request.form.get("back") == "move"
        and url_for("admin.move_form", pool_id=pool.id)
        or url_for("admin.storage_index")
    )


@bp.get("/moves")
def moves_index():
    """Running and past moves."""
    rows = (
        db.session.execute(db.select(PoolMove).order_by(PoolMove.id.desc()).limit(100))
        .scalars()
        .all()
    )
    return render_template(
        "admin/moves.html", moves=rows, progress={m.id: moves.progress(m) for m in rows}
    )


@bp.get("/moves/<int:move_id>")
def move_detail(move_id: int):
    """Live progress (HTMX polls the bar while the move runs); JSON for scripts."""
    move = db.session.get(PoolMove, move_id) or abort(404)
    data = moves.progress(move)
    if wants_json():
        return jsonify(
            {
                k: data[k]
                for k in ("id", "status", "total", "done", "failed", "skipped", "bytes_moved")
            }
        )
    return partial_or_page(
        "admin/_move_progress.html",
        "admin/move.html",
        move=move,
        p=data,
        failures=moves.failed_items(move),
    )


@bp.post("/moves/<int:move_id>/<action>")
def move_action(move_id: int, action: str):
    """pause | resume | cancel | retry."""
    if action not in ("pause", "resume", "cancel", "retry"):
        abort(404)
    move = db.session.get(PoolMove, move_id) or abort(404)
    try:
        moves.set_status(move, action)
    except moves.MoveError as exc:
        flash(str(exc), "error")
        status = 409
    else:
        flash(f"Move #{move.id}: {action} done.", "success")
        status = 200
    if is_htmx():
        return move_detail(move_id), status
    return redirect(url_for("admin.move_detail", move_id=move.id))
