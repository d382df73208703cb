"""Admin settings page (SPEC §8): every key, grouped, typed, effective at once."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for

from pixelfox.admin import bp
from pixelfox.services import settings

SECTIONS = ("general", "uploads", "limits", "processing", "replication", "cluster", "tiering")


def secret_warnings() -> list[str]:
    cfg = current_app.config
    warnings = []
    if not cfg.get("UPLOAD_TOKEN_SECRET"):
        warnings.append(
            "UPLOAD_TOKEN_SECRET is not set: direct uploads and private image "
            "URLs are disabled. Set the same value on every node."
        )
    if not cfg.get("REPLICATION_SECRET"):
        warnings.append(
            "REPLICATION_SECRET is not set: copying images between nodes (pool "
            "moves) is disabled. Set the same value on every node."
        )
    return warnings


@bp.route("/settings", methods=["GET", "POST"])
def settings_page():
    """Show and save the run-time settings."""
    values = settings.all_settings()
    errors: dict[str, str] = {}
    if request.method == "POST":
        changes = {}
        for d in settings.DEFINITIONS:
            if d.type is bool:
                changes[d.key] = d.key in request.form
            elif d.key in request.form:
                changes[d.key] = request.form[d.key]
        for key, raw in changes.items():
            try:
                settings.parse(key, raw)
            except settings.InvalidSetting as exc:
                errors[key] = str(exc)
        if not errors:
            settings.update(changes)
            flash("Settings saved; they apply on every node now.", "success")
            return redirect(url_for("admin.settings_page"))
        values = {**values, **{k: request.form.get(k, "") for k in changes if k in errors}}
    groups = [(s, [d for d in settings.DEFINITIONS if d.section == s]) for s in SECTIONS]
    return render_template(
        "admin/settings.html",
        groups=groups,
        values=values,
        errors=errors,
        warnings=secret_warnings(),
    ), (400 if errors else 200)
