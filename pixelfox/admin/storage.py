"""Storage pools: list, create, edit, delete (SPEC §5)."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for

from pixelfox.admin import bp
from pixelfox.extensions import db
from pixelfox.models import StoragePool
from pixelfox.models.storage import STORAGE_TYPES, TIERS
from pixelfox.services import heartbeat, placement, poolform


def _form_values(pool: StoragePool | None) -> dict:
    if request.method == "POST":
        values = request.form.to_dict()
        values.pop("s3_secret_key", None)  # write-only: never rendered back
        return values
    if pool is None:
        return {
            "storage_type": "local",
            "storage_tier": "hot",
            "priority": 100,
            "weight": 100,
            "is_active": True,
            "accepts_uploads": True,
            "max_size_gb": "",
            "s3_region": "us-east-1",
            "s3_addressing_style": "path",
            "node_id": current_app.config["NODE_ID"],
        }
    values = {f: getattr(pool, f) for f in poolform.POOL_FIELDS if f != "max_size_gb"}
    values["max_size_gb"] = f"{pool.max_size / poolform.GB:g}" if pool.max_size else ""
    return {k: ("" if v is None else v) for k, v in values.items()}


@bp.get("/storage")
def storage_index():
    """Pools with used/max bars."""
    rows = (
        db.session.execute(
            db.select(StoragePool).order_by(
                StoragePool.node_id, StoragePool.priority, StoragePool.id
            )
        )
        .scalars()
        .all()
    )
    return render_template("admin/storage.html", pools=rows, shares=placement.upload_shares(24))


@bp.route("/storage/create", methods=["GET", "POST"])
def storage_create():
    """Create a pool."""
    return _edit(None)


@bp.route("/storage/edit/<int:pool_id>", methods=["GET", "POST"])
def storage_edit(pool_id: int):
    """Edit a pool."""
    pool = db.session.get(StoragePool, pool_id) or abort(404)
    return _edit(pool)


def _edit(pool: StoragePool | None):
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            saved = poolform.save_pool(pool, request.form)
        except poolform.PoolError as exc:
            errors = exc.errors
        else:
            heartbeat.request_beat(saved.node_id)
            flash(f"Pool {saved.name} saved.", "success")
            return redirect(url_for("admin.storage_index"))
    return render_template(
        "admin/storage_form.html",
        pool=pool,
        values=_form_values(pool),
        errors=errors,
        types=STORAGE_TYPES,
        tiers=TIERS,
    ), (400 if errors else 200)


@bp.post("/storage/delete/<int:pool_id>")
def storage_delete(pool_id: int):
    """Delete an empty, non-default pool."""
    pool = db.session.get(StoragePool, pool_id) or abort(404)
    try:
        poolform.delete_pool(pool)
    except poolform.PoolError as exc:
        flash(exc.errors["pool"], "error")
        return storage_index(), 409
    flash(f"Pool {pool.name} deleted.", "success")
    return redirect(url_for("admin.storage_index"))
