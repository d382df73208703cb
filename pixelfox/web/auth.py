"""Register, log in, log out."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user

from pixelfox.forms import LoginForm, RegisterForm
from pixelfox.services import accounts, ratelimit
from pixelfox.web.hooks import client_ip

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths; anything else goes home."""
    if not target:
        return url_for("web.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("web.index")
    return target


@bp.route("/register", methods=["GET", "POST"])
def register():
    """Create an account; active at once (no SMTP configured for activation mails)."""
    if current_user.is_authenticated:
        return redirect(url_for("web.index"))
    form = RegisterForm()
    status = 200
    if form.validate_on_submit():
        try:
            user = accounts.create_user(form.username.data, form.email.data, form.password.data)
        except accounts.AccountError as exc:
            form.username.errors = [*form.username.errors, str(exc)]
            status = 400
        else:
            login_user(user)
            flash(f"Welcome, {user.username}!", "success")
            return redirect(url_for("web.index"))
    elif request.method == "POST":
        status = 400
    return render_template("auth/register.html", form=form), status


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Log in with a username or an e-mail address."""
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        try:
            user = accounts.authenticate(form.username.data, form.password.data, client_ip())
        except ratelimit.RateLimited as exc:
            form.password.errors = [exc.message]
            headers = {"Retry-After": str(exc.retry_after)}
            return render_template("auth/login.html", form=form), 429, headers
        except ratelimit.Unavailable:  # no throttle, no login: guessing stays expensive
            form.password.errors = ["Logging in is briefly unavailable; try again in a minute."]
            return render_template("auth/login.html", form=form), 503, {"Retry-After": "30"}
        if user is None:
            form.password.errors = ["Wrong username/e-mail or password."]
            status = 401
        else:
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
    elif request.method == "POST":
        status = 400
    return render_template("auth/login.html", form=form), status


@bp.post("/logout")
@login_required
def logout():
    """End the session (POST with CSRF, so no link can log someone out). Sessions are signed
    cookies, so ending this one means ending every session of the account: a copied cookie
    must not outlive the logout."""
    accounts.end_sessions(current_user._get_current_object())
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("web.index"))
