"""Admin pages: access, CSRF, settings, storage pools."""

from __future__ import annotations

import pytest

from tests.conftest import Auth, csrf_from, fixture_path, run_jobs, upload

ADMIN_URLS = ["/admin/storage", "/admin/storage/create", "/admin/settings", "/admin/storage/edit/1"]


def make_admin(app, client, username="root"):
    from pixelfox.services import accounts

    with app.app_context():
        accounts.create_user(username, f"{username}@example.org", "admin pass 1", "admin")
    assert Auth(client).login(username, "admin pass 1").status_code == 302


def pool_form(**over) -> dict:
    data = {
        "name": "fast",
        "node_id": "local",
        "storage_type": "local",
        "storage_tier": "hot",
        "base_path": "",
        "public_base_url": "http://127.0.0.1:4000",
        "upload_api_url": "http://127.0.0.1:4000/api/internal/upload",
        "max_size_gb": "2",
        "priority": "10",
        "is_active": "on",
        "accepts_uploads": "on",
        "description": "NVMe",
    }
    data.update(over)
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.parametrize("url", ADMIN_URLS)
def test_non_admin_gets_403_and_anonymous_goes_to_login(app, client, auth, url):
    resp = client.get(url)
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    assert client.get(url, headers={"HX-Request": "true"}).status_code == 401
    auth.register()
    assert client.get(url).status_code == 403


def test_admin_post_without_csrf_is_400_htmx_included(app, client):
    make_admin(app, client)
    assert client.post("/admin/settings", data={"site_title": "X"}).status_code == 400
    resp = client.post(
        "/admin/settings",
        data={"site_title": "X"},
        headers={"HX-Request": "true", "X-CSRFToken": "forged"},
    )
    assert resp.status_code == 400
    resp = client.post("/admin/storage/delete/1", headers={"HX-Request": "true"})
    assert resp.status_code == 400


def test_settings_are_validated_saved_and_effective_at_once(app, client, tmp_path):
    make_admin(app, client)
    page = client.get("/admin/settings").get_data(as_text=True)
    from pixelfox.services import settings

    for d in settings.DEFINITIONS:
        assert f'name="{d.key}"' in page, d.key
    token = csrf_from(page)
    bad = client.post(
        "/admin/settings",
        data={"csrf_token": token, "max_upload_mb": "-3", "upload_rate_limit_per_minute": "lots"},
    )
    assert bad.status_code == 400
    assert "at least 1" in bad.get_data(as_text=True)
    form = {
        "csrf_token": token,
        "site_title": "FoxPics",
        "max_upload_mb": "1",
        "max_image_megapixels": "100",
        "upload_rate_limit_per_minute": "60",
        "upload_user_rate_limit_per_minute": "60",
        "move_max_mb_per_second": "0",
        "image_upload_enabled": "on",
        "strip_metadata": "on",
        "thumbnail_webp_enabled": "on",
    }
    assert client.post("/admin/settings", data=form).status_code == 302
    assert "FoxPics" in client.get("/").get_data(as_text=True)
    with app.app_context():
        values = settings.all_settings()
    assert values["max_upload_mb"] == 1 and values["thumbnail_avif_enabled"] is False
    big = tmp_path / "big.bmp"
    big.write_bytes(fixture_path("photo.bmp").read_bytes() * 2)
    assert upload(client, big).status_code == 413  # effective without restart
    # Turned-off thumbnail formats are not made.
    uuid = upload(client, fixture_path("alpha.png")).get_json()["image_uuid"]
    run_jobs(app)
    kinds = set(client.get(f"/api/v1/images/{uuid}/status").get_json()["variants"])
    assert kinds == {"webp", "avif", "thumbnail_small_webp", "thumbnail_medium_webp"}


def test_missing_secrets_are_warned_about(app, client):
    app.config["UPLOAD_TOKEN_SECRET"] = None
    make_admin(app, client)
    page = client.get("/admin/settings").get_data(as_text=True)
    assert "UPLOAD_TOKEN_SECRET is not set" in page and "REPLICATION_SECRET is not set" in page


def test_create_edit_and_delete_pools(app, client, tmp_path):
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool

    make_admin(app, client)
    client.get("/")  # first request: the node gets its default pool
    token = csrf_from(client.get("/admin/storage/create").get_data(as_text=True))
    base = tmp_path / "fast"
    resp = client.post(
        "/admin/storage/create", data={**pool_form(base_path=str(base)), "csrf_token": token}
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)
    assert base.is_dir()
    listing = client.get("/admin/storage").get_data(as_text=True)
    assert "fast" in listing and "2.0 GB" in listing
    with app.app_context():
        pool = db.session.execute(
            db.select(StoragePool).where(StoragePool.name == "fast")
        ).scalar_one()
        assert pool.max_size == 2 * 1024**3 and pool.priority == 10 and not pool.is_default
        pool_id = pool.id
    # Make it the default: exactly one default remains.
    resp = client.post(
        f"/admin/storage/edit/{pool_id}",
        data={**pool_form(base_path=str(base), is_default="on"), "csrf_token": token},
    )
    assert resp.status_code == 302
    with app.app_context():
        defaults = (
            db.session.execute(db.select(StoragePool.name).where(StoragePool.is_default.is_(True)))
            .scalars()
            .all()
        )
    assert defaults == ["fast"]
    # The default cannot be deleted, nor un-defaulted without choosing another.
    assert (
        client.post(f"/admin/storage/delete/{pool_id}", data={"csrf_token": token}).status_code
        == 409
    )
    resp = client.post(
        f"/admin/storage/edit/{pool_id}",
        data={**pool_form(base_path=str(base)), "csrf_token": token},
    )
    assert resp.status_code == 400 and "another pool the default" in resp.get_data(as_text=True)


def test_pool_form_errors_are_clear_and_nothing_is_saved(app, client, tmp_path):
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool

    make_admin(app, client)
    client.get("/")
    token = csrf_from(client.get("/admin/storage/create").get_data(as_text=True))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        (pool_form(base_path="relative/path"), "absolute path"),
        (pool_form(base_path=str(blocker / "sub")), "Cannot create this directory"),
        (pool_form(base_path=str(tmp_path / "a"), public_base_url="ftp://x"), "http(s) URL"),
        (pool_form(base_path=str(tmp_path / "a"), name="default"), "already has this name"),
        (pool_form(base_path=str(tmp_path / "a"), storage_type="s3"), "endpoint URL is required"),
        (pool_form(base_path=str(tmp_path / "a"), max_size_gb="lots"), "number of GB"),
        (pool_form(base_path=str(tmp_path / "a"), node_id="bad id!"), "node id"),
    ]
    for data, message in cases:
        resp = client.post("/admin/storage/create", data={**data, "csrf_token": token})
        assert resp.status_code == 400, data
        assert message in resp.get_data(as_text=True), message
    with app.app_context():
        assert db.session.execute(db.select(db.func.count(StoragePool.id))).scalar() == 1


def test_pool_holding_images_cannot_be_deleted(app, client, tmp_path):
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool

    make_admin(app, client)
    uuid = upload(client, fixture_path("tiny.png")).get_json()["image_uuid"]
    token = csrf_from(client.get("/admin/storage/create").get_data(as_text=True))
    client.post(
        "/admin/storage/create",
        data={**pool_form(base_path=str(tmp_path / "b"), is_default="on"), "csrf_token": token},
    )
    with app.app_context():
        old = db.session.execute(
            db.select(StoragePool).where(StoragePool.name == "default")
        ).scalar_one()
    resp = client.post(f"/admin/storage/delete/{old.id}", data={"csrf_token": token})
    assert resp.status_code == 409
    assert "still holds images" in resp.get_data(as_text=True)
    assert client.get(f"/image/{uuid}").status_code == 200
