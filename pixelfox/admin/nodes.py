"""Nodes seen by heartbeat, and live pool health badges."""

from __future__ import annotations

from flask import render_template

from pixelfox.admin import bp
from pixelfox.services import dashboard


@bp.get("/storage/health")
def storage_health():
    """Badge cells for every pool; the storage page polls this fragment."""
    badges, states = dashboard.pool_badges()
    return render_template("admin/_pool_badges.html", badges=badges, states=states)


@bp.get("/nodes")
def nodes_index():
    """Every node: last beat, pools, queue depth, workers."""
    rows, pool_states = dashboard.nodes_overview()
    return render_template("admin/nodes.html", rows=rows, pool_states=pool_states)
