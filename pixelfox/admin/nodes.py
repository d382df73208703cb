"""Nodes (live, down, lost; heartbeats, scrub), marking a node lost, and durability."""

from __future__ import annotations

from flask import abort, current_app, flash, jsonify, redirect, render_template, request, url_for

from pixelfox.admin import bp
from pixelfox.htmx import wants_json
from pixelfox.services import copies, dashboard, nodes, replicas


@bp.get("/storage/health")
def storage_health():
    """Badge cells for every pool; the storage page polls this fragment."""
    badges, states = dashboard.pool_badges()
    return render_template("admin/_pool_badges.html", badges=badges, states=states)


@bp.get("/nodes")
def nodes_index():
    """Every node: state, last beat, pools, queue depth, workers, scrub."""
    rows, pool_states = dashboard.nodes_overview()
    return render_template("admin/nodes.html", rows=rows, pool_states=pool_states)


@bp.route("/nodes/<node_id>/lost", methods=["GET", "POST"])
def node_lost(node_id: str):
    """Pre-flight (what would be left without any copy), then mark the node lost: its copies
    are never linked again, replicas become primaries, repair restores the factor."""
    if node_id not in nodes.known():
        abort(404)
    status = 200
    if request.method == "POST":
        try:
            confirm = (request.form.get("confirm") or "").strip()
            nodes.mark_lost(node_id, confirm, current_app.config["NODE_ID"])
        except nodes.NodeError as exc:
            flash(str(exc), "error")
            status = 400
        else:
            replicas.repair_pass()  # promote replicas now; the copies follow through jobs
            flash(f"Node {node_id} is marked lost; repair is restoring the copies.", "success")
            return redirect(url_for("admin.durability"), 303)
    return render_template(
        "admin/node_lost.html",
        node_id=node_id,
        check=nodes.lost_preflight(node_id),
        already=node_id in nodes.lost(),
    ), status


@bp.get("/durability")
def durability():
    """Copies per image against the replication factor, and repair's progress."""
    counts = copies.durability()
    if wants_json():
        return jsonify(counts)
    return render_template(
        "admin/durability.html",
        d=counts,
        repair=replicas.progress(),
        single_copy_warning=dashboard.single_copy_warning(),
    )
