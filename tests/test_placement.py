"""Placement that spreads (issue 12.1) and the cluster's admin side, in one process: the
weights, the high-water mark, the single-copy warning, the lost-node pre-flight."""

from __future__ import annotations

from tests.conftest import Auth, csrf_from, fixture_path, run_jobs, upload


def add_pool(app, tmp_path, name, node, **extra):
    from pixelfox.services import poolform

    data = {
        "name": name,
        "node_id": node,
        "base_path": str(tmp_path / name),
        "upload_api_url": f"http://127.0.0.1:9/{name}/api/internal/upload",
        "is_active": "on",
        "accepts_uploads": "on",
    }
    data.update({k: str(v) for k, v in extra.items()})
    with app.app_context():
        return poolform.save_pool(None, data).id


def choices(app, n, **kw):
    from pixelfox.services import placement

    with app.app_context():
        out = {}
        for _ in range(n):
            pid = placement.choose_pool(1000, direct=True, **kw).id
            out[pid] = out.get(pid, 0) + 1
        return out


def test_uploads_spread_in_proportion_to_weight_times_free_space(app, client, tmp_path):
    client.get("/")  # the default pool (weight 100)
    a = add_pool(app, tmp_path, "a", "s1", weight=100)
    b = add_pool(app, tmp_path, "b", "s2", weight=300)
    c = add_pool(app, tmp_path, "c", "s3", weight=100, max_size_gb=1)
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool

    with app.app_context():  # c is half full: half the share of a
        db.session.execute(
            db.update(StoragePool).where(StoragePool.id == c).values(used_size=2**29)
        )
        db.session.commit()
    with app.app_context():
        default = db.session.execute(
            db.select(StoragePool.id).where(StoragePool.is_default.is_(True))
        ).scalar_one()
    got = choices(app, 110)
    assert got == {default: 20, a: 20, b: 60, c: 10}, got  # exact: round-robin, not dice
    # Weight 0: none; above the high-water mark (90 % full): none; a better tier wins.
    with app.app_context():
        db.session.execute(
            db.update(StoragePool).where(StoragePool.id.in_((b, default))).values(weight=0)
        )
        db.session.execute(
            db.update(StoragePool).where(StoragePool.id == c).values(used_size=int(0.95 * 2**30))
        )
        db.session.commit()
    assert choices(app, 10) == {a: 10}
    warm = add_pool(app, tmp_path, "w", "s4", storage_tier="warm")
    assert warm not in choices(app, 10)
    # Replicas: never on a node that holds a copy already.
    assert choices(app, 5, exclude_domains={"s1"}, for_replica=True) == {warm: 5}


def test_weight_is_on_the_form_and_validated(app, client):
    from pixelfox.services import accounts

    with app.app_context():
        accounts.create_user("admin", "admin@example.org", "admin pass 12", "admin")
    Auth(client).login("admin", "admin pass 12")
    page = client.get("/admin/storage/create").get_data(as_text=True)
    assert 'name="weight"' in page
    resp = client.post(
        "/admin/storage/create",
        data={
            "csrf_token": csrf_from(page),
            "name": "heavy",
            "node_id": "s9",
            "base_path": "/srv/heavy",
            "weight": "-5",
        },
    )
    assert resp.status_code == 400 and "Weight is a whole number" in resp.get_data(as_text=True)


def test_single_copy_warning_and_lost_node_preflight(app, client, tmp_path):
    from pixelfox.services import accounts, settings

    with app.app_context():
        accounts.create_user("admin", "admin@example.org", "admin pass 12", "admin")
    auth = Auth(client)
    auth.login("admin", "admin pass 12")
    uuid = upload(client, fixture_path("tiny.png")).get_json()["image_uuid"]
    run_jobs(app)
    add_pool(app, tmp_path, "s1pool", "s1")
    dashboard = client.get("/admin/").get_data(as_text=True)
    assert "The replication factor is 1 while two or more nodes" in dashboard
    with app.app_context():
        settings.update({"replication_factor": 2})
    assert "The replication factor is 1" not in client.get("/admin/").get_data(as_text=True)
    # The app node holds the only copy: marking it lost would leave the image without any.
    page = client.get("/admin/nodes/local/lost").get_data(as_text=True)
    assert "left without any copy" in page and '<strong class="error">1</strong>' in page
    assert client.get("/admin/nodes/nowhere/lost").status_code == 404
    durability = client.get("/admin/durability", headers={"Accept": "application/json"}).json
    assert durability == {
        "replication_factor": 2,
        "images": 1,
        "fully_replicated": 0,
        "under_replicated": 0,
        "without_copy": 1,  # no heartbeat yet: the app node does not count as live
        "repairing": 0,
    }
    status = client.get(f"/api/v1/images/{uuid}/status").get_json()
    assert status["copies"] == {"wanted": 2, "verified": 0, "nodes": []}
