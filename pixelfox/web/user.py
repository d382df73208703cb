"""The signed-in user's images and settings."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user

from pixelfox.extensions import db
from pixelfox.forms import EmptyForm, ImageEditForm, PasswordForm
from pixelfox.models import Image
from pixelfox.services import accounts, deletion, images

bp = Blueprint("user", __name__, url_prefix="/user")
PER_PAGE = 24


@bp.get("/images", endpoint="images")
@login_required
def images_list():
    """The user's images, newest first, paged."""
    page = max(1, request.args.get("page", 1, type=int))
    query = (
        db.select(Image)
        .where(Image.user_id == current_user.id, Image.deleted_at.is_(None))
        .order_by(Image.created_at.desc(), Image.id.desc())
    )
    pager = db.paginate(query, page=page, per_page=PER_PAGE, error_out=False)
    thumbs = {}
    for image in pager.items:
        by_kind = {v.kind: v for v in image.variants}
        v = by_kind.get("thumbnail_small_webp") or by_kind.get("thumbnail_small_original")
        thumbs[image.id] = images.file_url(image, v.stored_path) if v else None
    return render_template("user/images.html", pager=pager, thumbs=thumbs, form=EmptyForm())


def _managed(uuid: str) -> Image:
    image = images.by_uuid(uuid)
    if image is None or not images.is_manager(current_user, image):
        abort(404)
    return image


@bp.route("/images/<uuid>/edit", methods=["GET", "POST"])
@login_required
def edit(uuid: str):
    """Edit title, description and visibility."""
    image = _managed(uuid)
    form = ImageEditForm(obj=image)
    if form.validate_on_submit():
        images.update(image, form.title.data, form.description.data, form.visibility.data)
        flash("Saved.", "success")
        return redirect(url_for("web.view", uuid=image.uuid))
    status = 400 if request.method == "POST" else 200
    return render_template("user/edit.html", form=form, image=image), status


@bp.post("/images/<uuid>/delete")
@login_required
def delete(uuid: str):
    """Delete an image: hidden at once, files and rows removed by a job."""
    image = _managed(uuid)
    deletion.request_delete(image)
    flash("The image was deleted.", "info")
    return redirect(url_for("user.images"))


@bp.route("/settings", methods=["GET", "POST"], endpoint="settings")
@login_required
def account_settings():
    """Password change and API key."""
    form = PasswordForm()
    status = 200
    if form.validate_on_submit():
        try:
            accounts.change_password(
                current_user,
                form.current_password.data,
                form.new_password.data,
                form.new_password_confirm.data,
            )
        except accounts.AccountError as exc:
            form.current_password.errors = [str(exc)]
            status = 400
        else:
            login_user(current_user._get_current_object())  # this session goes on
            flash("Your password was changed; your other sessions were logged out.", "success")
            return redirect(url_for("user.settings"))
    elif request.method == "POST":
        status = 400
    return render_template(
        "user/settings.html", form=form, key_form=EmptyForm(), new_key=None
    ), status


@bp.post("/settings/logout-everywhere")
@login_required
def logout_everywhere():
    """End every other session of this account (other browsers, copied cookies)."""
    user = current_user._get_current_object()
    accounts.end_sessions(user)
    login_user(user)  # a new session here, in the new generation
    flash("Every other session of your account was logged out.", "success")
    return redirect(url_for("user.settings"))


@bp.post("/settings/api-key")
@login_required
def api_key_rotate():
    """Create or rotate the API key; shown once on this response."""
    key = accounts.rotate_api_key(current_user)
    return render_template(
        "user/settings.html", form=PasswordForm(formdata=None), key_form=EmptyForm(), new_key=key
    )


@bp.post("/settings/api-key/revoke")
@login_required
def api_key_revoke():
    """Revoke the API key."""
    accounts.revoke_api_key(current_user)
    flash("Your API key was revoked.", "info")
    return redirect(url_for("user.settings"))
