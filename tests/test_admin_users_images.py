"""/admin/users, /admin/images and regenerate runs (/admin/regen)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import Auth, csrf_from, files_under, run_jobs
from tests.test_admin import make_admin
from tests.test_moves import add_pool, make_images


def _token(client, path="/admin/users") -> str:
    return csrf_from(client.get(path).get_data(as_text=True))


def _user(app, username):
    from pixelfox.extensions import db
    from pixelfox.models import User

    with app.app_context():
        return db.session.execute(
            db.select(User).where(User.username == username)
        ).scalar_one_or_none()


def test_users_search_role_status_and_lockout_guards(app, client):
    from pixelfox.services import accounts

    with app.app_context():
        for name in ("bob", "carol", "dave"):
            accounts.create_user(name, f"{name}@example.org", "user pass 12")
    make_admin(app, client)
    html = client.get("/admin/users?q=car").get_data(as_text=True)
    assert "carol@example.org" in html and "bob@example.org" not in html
    html = client.get("/admin/users?role=admin").get_data(as_text=True)
    assert "root@example.org" in html and "carol@example.org" not in html

    bob = _user(app, "bob")
    token = _token(client)
    resp = client.post(
        f"/admin/users/{bob.id}", data={"role": "user", "status": "disabled", "csrf_token": token}
    )
    assert resp.status_code == 303
    assert _user(app, "bob").status == "disabled"
    assert "bob is now user, disabled." in client.get("/admin/users").get_data(as_text=True)
    other = app.test_client()
    assert Auth(other).login("bob", "user pass 12").status_code == 401  # refused
    assert other.get("/user/images").status_code == 302

    # An admin cannot lock themselves out, and the last admin stays an admin.
    root = _user(app, "root")
    client.post(
        f"/admin/users/{root.id}", data={"role": "user", "status": "active", "csrf_token": token}
    )
    assert _user(app, "root").role == "admin"
    assert "cannot demote or disable your own" in client.get("/admin/users").get_data(as_text=True)
    resp = client.post(
        f"/admin/users/{bob.id}", data={"role": "boss", "status": "active", "csrf_token": token}
    )
    assert _user(app, "bob").role == "user"
    resp = client.post(f"/admin/users/{bob.id}", data={"role": "user", "status": "active"})
    assert resp.status_code == 400  # no CSRF token


def test_a_disabled_users_session_ends(app, client):
    from pixelfox.extensions import db

    make_admin(app, client)
    user_client = app.test_client()
    Auth(user_client).register("erin")
    assert user_client.get("/user/images").status_code == 200
    erin = _user(app, "erin")
    client.post(
        f"/admin/users/{erin.id}",
        data={"role": "user", "status": "disabled", "csrf_token": _token(client)},
    )
    assert user_client.get("/user/images").status_code == 302
    with app.app_context():
        assert db.session.get(type(erin), erin.id).status == "disabled"


def test_deleting_a_user_deletes_their_images_through_jobs_then_the_account(
    app, client, auth, tmp_path
):
    from pixelfox.extensions import db
    from pixelfox.models import Image

    uuids = make_images(app, client, auth, tmp_path, 2)  # as "mover"
    uploads = Path(app.config["UPLOADS_DIR"])
    assert len(files_under(uploads / "original")) == 2
    auth.logout()
    make_admin(app, client)
    mover = _user(app, "mover")
    resp = client.post(f"/admin/users/{mover.id}/delete", data={"csrf_token": _token(client)})
    assert resp.status_code == 303
    # Disabled and hidden at once, before any job ran.
    assert _user(app, "mover").status == "disabled"
    assert client.get(f"/image/{uuids[0]}").status_code == 404
    run_jobs(app)  # delete_user, then each image's delete_image
    assert _user(app, "mover") is None
    with app.app_context():
        assert db.session.execute(db.select(db.func.count(Image.id))).scalar_one() == 0
    assert files_under(uploads / "original") == [] and files_under(uploads / "variants") == []
    # An admin cannot delete themselves.
    root = _user(app, "root")
    client.post(f"/admin/users/{root.id}/delete", data={"csrf_token": _token(client)})
    assert _user(app, "root") is not None


def test_images_search_filter_visibility_delete(app, client, auth, tmp_path):
    uuids = make_images(app, client, auth, tmp_path, 3)
    auth.logout()
    make_admin(app, client)
    html = client.get("/admin/images").get_data(as_text=True)
    assert all(f'id="image-{u}"' in html for u in uuids)
    html = client.get(f"/admin/images?q={uuids[1]}").get_data(as_text=True)
    assert f'id="image-{uuids[1]}"' in html and f'id="image-{uuids[0]}"' not in html
    html = client.get("/admin/images?q=img2").get_data(as_text=True)  # title from the name
    assert f'id="image-{uuids[2]}"' in html and f'id="image-{uuids[0]}"' not in html
    assert "No images match." in client.get("/admin/images?user=nobody").get_data(as_text=True)
    assert "No images match." in client.get("/admin/images?status=failed").get_data(as_text=True)
    html = client.get("/admin/images?user=mover&status=complete").get_data(as_text=True)
    assert html.count('id="image-') == 3

    token = _token(client, "/admin/images")
    resp = client.post(
        f"/admin/images/{uuids[0]}/visibility", data={"visibility": "private", "csrf_token": token}
    )
    assert resp.status_code == 303
    html = client.get("/admin/images?visibility=private").get_data(as_text=True)
    assert html.count('id="image-') == 1
    anon = app.test_client()
    assert anon.get(f"/image/{uuids[0]}").status_code == 404
    client.post(
        f"/admin/images/{uuids[0]}/visibility", data={"visibility": "secret", "csrf_token": token}
    )
    assert "Visibility must be" in client.get("/admin/images").get_data(as_text=True)

    client.post(f"/admin/images/{uuids[2]}/delete", data={"csrf_token": token})
    assert f'id="image-{uuids[2]}"' not in client.get("/admin/images").get_data(as_text=True)
    run_jobs(app)
    originals = files_under(Path(app.config["UPLOADS_DIR"]) / "original")
    assert len(originals) == 2 and not any(uuids[2] in p.name for p in originals)


def test_reprocess_one_image_renders_it_again(app, client, auth, tmp_path):
    from pixelfox.extensions import db
    from pixelfox.models import Image

    (uuid,) = make_images(app, client, auth, tmp_path, 1)
    auth.logout()
    make_admin(app, client)
    webp = next(p for p in files_under(Path(app.config["UPLOADS_DIR"])) if p.suffix == ".webp")
    webp.unlink()  # a variant lost on disk
    with app.app_context():
        image = db.session.execute(db.select(Image).where(Image.uuid == uuid)).scalar_one()
        image.processed_at = image.processed_at.replace(year=2020)
        db.session.commit()
    client.post(
        f"/admin/images/{uuid}/reprocess", data={"csrf_token": _token(client, "/admin/images")}
    )
    # A complete image stays complete (its links public) while it is rendered again.
    assert client.get(f"/api/v1/images/{uuid}/status").get_json()["status"] == "complete"
    assert run_jobs(app) == 1
    assert webp.exists()
    with app.app_context():
        image = db.session.execute(db.select(Image).where(Image.uuid == uuid)).scalar_one()
        assert image.status == "complete" and image.processed_at.year > 2020


def _default_pool(app) -> str:
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool

    with app.app_context():
        return str(
            db.session.execute(
                db.select(StoragePool.id).where(StoragePool.name == "default")
            ).scalar_one()
        )


def _regen_json(client, run_id):
    return client.get(f"/admin/regen/{run_id}", headers={"Accept": "application/json"}).get_json()


def _start_regen(client, **form) -> int:
    resp = client.post("/admin/regen", data={"csrf_token": _token(client, "/admin/regen"), **form})
    assert resp.status_code == 303, resp.get_data(as_text=True)
    return int(re.search(r"/admin/regen/(\d+)$", resp.headers["Location"]).group(1))


def test_regenerate_a_pool_after_turning_avif_on(app, client, auth, tmp_path):
    from pixelfox.services import settings

    with app.app_context():
        settings.update({"thumbnail_avif_enabled": False})
    uuids = make_images(app, client, auth, tmp_path, 4)
    uploads = Path(app.config["UPLOADS_DIR"])
    before = [p for p in files_under(uploads) if p.name.endswith("_small.avif")]
    assert before == []
    auth.logout()
    make_admin(app, client)
    with app.app_context():
        settings.update({"thumbnail_avif_enabled": True})
    run_id = _start_regen(client, scope="all", pool=_default_pool(app))
    data = _regen_json(client, run_id)
    assert data["status"] == "running" and data["total"] == 4 and data["done"] == 0
    page = client.get(f"/admin/regen/{run_id}", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    assert 'hx-trigger="every 1s"' in page and 'aria-label="regenerate progress"' in page
    run_jobs(app)  # the planner, then the batch it queued
    data = _regen_json(client, run_id)
    assert (data["status"], data["done"], data["failed"], data["percent"]) == ("done", 4, 0, 100)
    small_avif = [p for p in files_under(uploads) if p.name.endswith("_small.avif")]
    assert sorted(p.name.split("_")[0] for p in small_avif) == sorted(uuids)
    for uuid in uuids:
        variants = client.get(f"/api/v1/images/{uuid}/status").get_json()["variants"]
        assert "thumbnail_small_avif" in variants
    page = client.get(f"/admin/regen/{run_id}", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    assert "hx-trigger" not in page  # polling stops when the run is done


def test_regenerate_is_idempotent_counts_failures_and_survives_lost_jobs(
    app, client, auth, tmp_path
):
    from pixelfox.extensions import db
    from pixelfox.models import Image, RegenRun
    from pixelfox.services import maintenance, regen

    uuids = make_images(app, client, auth, tmp_path, 3)
    auth.logout()
    make_admin(app, client)
    with app.app_context():
        broken = db.session.execute(db.select(Image).where(Image.uuid == uuids[0])).scalar_one()
        (Path(app.config["UPLOADS_DIR"]) / broken.stored_path).unlink()  # original lost
    run_id = _start_regen(client, scope="all")
    app.extensions["pixelfox_redis"].flushdb()  # the planner job is lost
    with app.app_context():
        assert regen.recover() == 1  # re-planned: no live job
        assert regen.recover() == 0  # its planner is queued now: nothing to do
    run_jobs(app)
    data = _regen_json(client, run_id)
    assert (data["status"], data["done"], data["failed"]) == ("done", 2, 1)
    with app.app_context():
        ids = [i.id for i in db.session.execute(db.select(Image)).scalars()]
        # A batch that runs again while the run is open (a retried job) renders nothing twice.
        run = db.session.get(RegenRun, run_id)
        run.status = "running"
        db.session.commit()
        assert regen.run_batch(run_id, ids) == {"rendered": 0, "failed": 0, "skipped": 3}
        assert maintenance.sweep()["regen_resumed"] == 0
        assert db.session.get(RegenRun, run_id).status == "done"
    # Re-run the failed one: the "failed" scope picks only it.
    with app.app_context():
        src = next(p for p in files_under(Path(app.config["UPLOADS_DIR"]) / "original"))
        broken = db.session.execute(db.select(Image).where(Image.uuid == uuids[0])).scalar_one()
        target = Path(app.config["UPLOADS_DIR"]) / broken.stored_path
        target.write_bytes(src.read_bytes())  # restored from a backup
    html = client.get("/admin/images").get_data(as_text=True)
    assert "Re-run all failed (1)" in html
    resp = client.post(
        "/admin/images/reprocess-failed", data={"csrf_token": _token(client, "/admin/images")}
    )
    run_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    assert _regen_json(client, run_id)["total"] == 1
    run_jobs(app)
    data = _regen_json(client, run_id)
    assert (data["status"], data["done"], data["failed"]) == ("done", 1, 0)
    assert client.get(f"/api/v1/images/{uuids[0]}/status").get_json()["status"] == "complete"


def test_regenerate_and_moves_do_not_overlap(app, client, auth, tmp_path):
    make_images(app, client, auth, tmp_path, 2)
    auth.logout()
    make_admin(app, client)
    cold = add_pool(app, tmp_path)
    run_id = _start_regen(client, scope="all", pool=_default_pool(app))
    token = _token(client, "/admin/regen")
    resp = client.post(
        f"/admin/storage/move/{_default_pool(app)}",
        data={"target_pool_id": cold, "csrf_token": token},
    )
    assert resp.status_code == 409
    assert f"Regenerate run #{run_id}" in resp.get_data(as_text=True)
    resp = client.post("/admin/regen", data={"scope": "all", "csrf_token": token})
    assert resp.status_code == 409 and "still running" in resp.get_data(as_text=True)
    resp = client.post("/admin/regen", data={"scope": "everything", "csrf_token": token})
    assert resp.status_code == 400 and "Choose what to regenerate" in resp.get_data(as_text=True)
    client.post(f"/admin/regen/{run_id}/cancel", data={"csrf_token": token})
    assert _regen_json(client, run_id)["status"] == "cancelled"
    run_jobs(app)  # the planner sees the cancelled run and queues nothing
    assert _regen_json(client, run_id)["done"] == 0


def test_every_admin_form_posts_csrf_and_destructive_ones_ask_first(app, client, auth, tmp_path):
    """Scan the rendered admin pages: each POST form carries csrf_token, and each form with a
    danger button (delete, cancel) asks for confirmation."""
    from rq import Queue

    make_images(app, client, auth, tmp_path, 1)
    auth.logout()
    make_admin(app, client)
    cold = add_pool(app, tmp_path)
    with app.app_context():
        Queue("node-local", connection=app.extensions["pixelfox_redis"]).enqueue(
            "os.path.getsize", "/nonexistent"
        )
    run_jobs(app)  # one failed job for the queues page
    run_id = _start_regen(client, scope="all")
    pages = [
        "/admin/",
        "/admin/storage",
        f"/admin/storage/move/{_default_pool(app)}?target_pool_id={cold}",
        "/admin/queues",
        "/admin/users",
        "/admin/images",
        "/admin/regen",
        f"/admin/regen/{run_id}",
        "/admin/settings",
    ]
    checked = 0
    for url in pages:
        html = client.get(url).get_data(as_text=True)
        for form in re.findall(r"<form\b[^>]*>.*?</form>", html, flags=re.S):
            head = form[: form.index(">") + 1]
            if 'method="post"' not in head and "hx-post" not in head:
                continue
            checked += 1
            assert 'name="csrf_token"' in form, (url, head)
            if 'class="danger"' in form or 'class="link danger"' in form:
                assert "hx-confirm=" in head or "data-confirm=" in head, (url, head)
    assert checked >= 10
