"""Visibility, signed URLs, editing, listing and deletion of images."""

from __future__ import annotations

import time

from tests.conftest import Auth, csrf_from, files_under, fixture_path, run_jobs, upload


def processed(app, client, name="alpha.png") -> str:
    uuid = upload(client, fixture_path(name)).get_json()["image_uuid"]
    run_jobs(app)
    return uuid


def set_visibility(client, uuid, visibility):
    token = csrf_from(client.get(f"/user/images/{uuid}/edit").get_data(as_text=True))
    return client.post(
        f"/user/images/{uuid}/edit",
        data={
            "title": "Sunset",
            "description": "Over the hills",
            "visibility": visibility,
            "csrf_token": token,
        },
    )


def test_unlisted_is_the_default_and_visible_with_the_link(app, client, auth):
    auth.register()
    uuid = processed(app, client)
    status = client.get(f"/api/v1/images/{uuid}/status").get_json()
    auth.logout()
    assert client.get(f"/image/{uuid}").status_code == 200
    path = status["original_url"].split(":4000", 1)[1]
    with client.get(path) as resp:
        assert resp.status_code == 200


def test_private_images_are_404_for_others_and_files_need_a_signature(app, client, auth):
    auth.register()
    uuid = processed(app, client)
    assert set_visibility(client, uuid, "private").status_code == 302
    status = client.get(f"/api/v1/images/{uuid}/status").get_json()
    signed = status["variants"]["thumbnail_small_webp"]
    assert "exp=" in signed and "sig=" in signed
    signed_path = signed.split(":4000", 1)[1]
    bare_path = signed_path.split("?", 1)[0]
    # The owner sees the viewer; the signed URL works for anyone until it expires.
    assert client.get(f"/image/{uuid}").status_code == 200
    auth.logout()
    assert client.get(f"/image/{uuid}").status_code == 404
    with client.get(signed_path) as resp:
        assert resp.status_code == 200 and resp.headers["Cache-Control"].startswith("private")
    with client.get(bare_path) as resp:
        assert resp.status_code == 404
    tampered = signed_path.replace("sig=", "sig=0")
    with client.get(tampered) as resp:
        assert resp.status_code == 404
    with app.test_request_context():
        from pixelfox.services import tokens

        rel = bare_path.split("/uploads/", 1)[1]
        expired = tokens.sign_path(rel, ttl=-10)
    with client.get(f"{bare_path}?exp={expired['exp']}&sig={expired['sig']}") as resp:
        assert resp.status_code == 404
    # Another user: 404 everywhere, the API included.
    other = Auth(client)
    other.register("mallory")
    assert client.get(f"/image/{uuid}").status_code == 404
    assert client.get(f"/api/v1/images/{uuid}/status").status_code == 404


def test_status_api_is_owner_or_admin_only(app, client, auth):
    auth.register()
    uuid = processed(app, client, "tiny.png")
    auth.logout()
    assert client.get(f"/api/v1/images/{uuid}/status").status_code == 401
    auth.register("eve")
    assert client.get(f"/api/v1/images/{uuid}/status").status_code == 404
    from pixelfox.extensions import db
    from pixelfox.models import User

    with app.app_context():
        db.session.execute(db.update(User).where(User.username == "eve").values(role="admin"))
        db.session.commit()
    body = client.get(f"/api/v1/images/{uuid}/status").get_json()
    assert set(body) >= {
        "uuid",
        "status",
        "complete",
        "failed",
        "view_url",
        "original_url",
        "variants",
    }
    assert body["original_url"].startswith("http://127.0.0.1:4000/uploads/original/")


def test_edit_changes_title_and_description(app, client, auth):
    auth.register()
    uuid = processed(app, client, "tiny.png")
    set_visibility(client, uuid, "public")
    page = client.get(f"/image/{uuid}").get_data(as_text=True)
    assert "Sunset" in page and "Over the hills" in page and "public" in page
    bad = client.post(
        f"/user/images/{uuid}/edit", data={"visibility": "secret", "csrf_token": csrf_from(page)}
    )
    assert bad.status_code == 400


def test_delete_removes_files_then_rows_through_a_job(app, client, auth):
    from pixelfox.extensions import db
    from pixelfox.models import Image, ImageVariant, StoragePool

    auth.register()
    uuid = processed(app, client, "photo.webp")
    keep = processed(app, client, "tiny.png")
    assert len(files_under(app.config["UPLOADS_DIR"])) > 2
    with app.app_context():
        used_before = db.session.execute(db.select(StoragePool.used_size)).scalar()
    token = csrf_from(client.get("/user/images").get_data(as_text=True))
    resp = client.post(f"/user/images/{uuid}/delete", data={"csrf_token": token})
    assert resp.status_code == 302
    assert client.get(f"/image/{uuid}").status_code == 404  # hidden at once
    assert run_jobs(app) == 1
    with app.app_context():
        image = db.session.execute(db.select(Image).where(Image.uuid == uuid)).scalar()
        assert image is None
        kept = db.session.execute(db.select(Image).where(Image.uuid == keep)).scalar_one()
        assert (
            db.session.execute(
                db.select(db.func.count(ImageVariant.id)).where(ImageVariant.image_id != kept.id)
            ).scalar()
            == 0
        )
        used_after = db.session.execute(db.select(StoragePool.used_size)).scalar()
        assert used_after < used_before
    left = files_under(app.config["UPLOADS_DIR"])
    assert left and all(keep in p.name for p in left)
    # Idempotent: running the delete job again is harmless.
    from pixelfox.jobs.images import delete_image

    with app.app_context():
        assert delete_image(kept.id + 999) == "gone"


def test_delete_needs_owner_and_csrf(app, client, auth):
    auth.register()
    uuid = processed(app, client, "tiny.png")
    assert client.post(f"/user/images/{uuid}/delete").status_code == 400
    auth.logout()
    Auth(client).register("mallory")
    token = csrf_from(client.get("/user/images").get_data(as_text=True))
    assert client.post(f"/user/images/{uuid}/delete", data={"csrf_token": token}).status_code == 404


def test_user_images_are_paged(app, client, auth):
    from pixelfox.extensions import db
    from pixelfox.models import Image, User
    from pixelfox.web.user import PER_PAGE

    auth.register()
    uuid = processed(app, client, "tiny.png")
    with app.app_context():
        user = db.session.execute(db.select(User)).scalar_one()
        template = db.session.execute(db.select(Image)).scalar_one()
        for i in range(PER_PAGE + 2):
            db.session.add(
                Image(
                    uuid=f"00000000-0000-0000-0000-{i:012d}",
                    share_link=f"pg{i:08d}",
                    user_id=user.id,
                    title=f"copy {i}",
                    stored_path=template.stored_path,
                    mime_type="image/png",
                    size=1,
                    sha256="0" * 64,
                    source_sha256=f"{i:064d}",
                    status="complete",
                    storage_pool_id=template.storage_pool_id,
                )
            )
        db.session.commit()
    first = client.get("/user/images").get_data(as_text=True)
    assert f"Page 1 of 2 ({PER_PAGE + 3} images)" in first
    second = client.get("/user/images?page=2").get_data(as_text=True)
    assert second.count('class="caption"') == 3
    assert uuid in first + second


def test_serving_guards_paths(app, client, auth):
    auth.register()
    processed(app, client, "tiny.png")
    for bad in (
        "/uploads/../secret",
        "/uploads/original/../../etc/passwd",
        "/uploads/.tmp/x.part",
        "/uploads/etc/passwd",
        "/uploads/original/%00x",
    ):
        assert client.get(bad).status_code == 404, bad
    # A file on disk with no row behind it is not served.
    from pathlib import Path

    stray = Path(app.config["UPLOADS_DIR"]) / "original" / "stray.png"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(fixture_path("tiny.png").read_bytes())
    assert client.get("/uploads/original/stray.png").status_code == 404


def test_signed_url_expiry_is_checked_against_the_clock(app):
    from pixelfox.services import tokens

    with app.test_request_context():
        good = tokens.sign_path("original/a.png", ttl=60)
        assert tokens.check_path("original/a.png", good["exp"], good["sig"])
        assert not tokens.check_path("original/b.png", good["exp"], good["sig"])
        assert not tokens.check_path("original/a.png", str(int(time.time()) + 9999), good["sig"])
        assert not tokens.check_path("original/a.png", "soon", good["sig"])
