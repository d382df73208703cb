"""The JSON API: ping, health, API-key uploads and image reads."""

from __future__ import annotations

from tests.conftest import fixture_path, run_jobs


def make_key(app, username="api-user") -> str:
    from pixelfox.services import accounts

    with app.app_context():
        user = accounts.create_user(username, f"{username}@example.org", "long password 1")
        return accounts.rotate_api_key(user)


def test_ping(client):
    assert client.get("/api/v1/ping").get_json() == {"ping": "pong"}


def test_health_reports_db_redis_and_pools(app, client):
    # Anyone: overall status and ok/down per dependency, nothing about the node's layout.
    body = client.get("/api/v1/health").get_json()
    assert body == {
        "status": "ok",
        "db": {"status": "ok"},
        "redis": {"status": "ok"},
        "storage": {"status": "ok"},
    }
    # A user's API key is not enough for the details; an admin's is.
    assert (
        "pools" not in client.get("/api/v1/health", headers={"X-API-Key": make_key(app)}).get_json()
    )
    admin_key = make_key(app, "api-admin")
    with app.app_context():
        from pixelfox.extensions import db
        from pixelfox.models import User

        db.session.execute(db.update(User).where(User.username == "api-admin").values(role="admin"))
        db.session.commit()
    body = client.get("/api/v1/health", headers={"Authorization": f"Bearer {admin_key}"}).json
    assert body["status"] == "ok" and body["node_id"] == "local"
    assert body["db"]["status"] == "ok" and body["redis"]["status"] == "ok"
    assert body["pools"][0]["name"] == "default" and body["pools"][0]["writable"] is True
    # Other nodes: the replication secret (compared in constant time); a wrong one is anonymous.
    app.config["REPLICATION_SECRET"] = "health-check-replication-secret-0123456789"
    node = client.get(
        "/api/v1/health", headers={"Authorization": f"Bearer {app.config['REPLICATION_SECRET']}"}
    ).get_json()
    assert node["pools"][0]["name"] == "default"
    wrong = client.get("/api/v1/health", headers={"Authorization": "Bearer not-the-secret"})
    assert "pools" not in wrong.get_json() and "node_id" not in wrong.get_json()


def test_health_is_503_when_redis_is_down(app, client):
    from redis import Redis

    app.extensions["pixelfox_redis"] = Redis(host="127.0.0.1", port=1, socket_timeout=0.5)
    resp = client.get("/api/v1/health")
    assert resp.status_code == 503
    assert resp.get_json()["redis"] == {"status": "down"}  # no error details for anyone


def test_upload_with_api_key_bearer_and_header(app, client):
    key = make_key(app)
    with open(fixture_path("photo.webp"), "rb") as fh:
        resp = client.post(
            "/api/v1/upload",
            data={"file": (fh, "photo.webp")},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert resp.status_code == 201, resp.get_data(as_text=True)
    uuid = resp.get_json()["image_uuid"]
    run_jobs(app)
    status = client.get(
        resp.get_json()["status_url"].split(":4000", 1)[1], headers={"X-API-Key": key}
    ).get_json()
    assert status["status"] == "complete" and status["variants"]["webp"].startswith("http://")
    detail = client.get(f"/api/v1/images/{uuid}", headers={"X-API-Key": key}).get_json()
    assert detail["width"] == 1200 and detail["visibility"] == "unlisted"
    assert {v["kind"] for v in detail["variants_detail"]} >= {"webp", "avif"}


def test_wrong_or_revoked_key_is_401_json(app, client):
    key = make_key(app)
    for headers in ({"Authorization": "Bearer pxl_wrong"}, {"X-API-Key": "nope"}, {}):
        with open(fixture_path("tiny.png"), "rb") as fh:
            resp = client.post("/api/v1/upload", data={"file": (fh, "t.png")}, headers=headers)
        assert resp.status_code == 401
        assert resp.get_json()["error"] in ("invalid_api_key", "unauthorized")
    from pixelfox.extensions import db
    from pixelfox.models import User
    from pixelfox.services import accounts

    with app.app_context():
        accounts.revoke_api_key(db.session.execute(db.select(User)).scalar_one())
    with open(fixture_path("tiny.png"), "rb") as fh:
        resp = client.post(
            "/api/v1/upload",
            data={"file": (fh, "t.png")},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_api_key"


def test_api_upload_bad_file_is_json_error(app, client):
    key = make_key(app)
    with open(fixture_path("script.svg", "bad"), "rb") as fh:
        resp = client.post(
            "/api/v1/upload", data={"file": (fh, "x.png")}, headers={"X-API-Key": key}
        )
    assert resp.status_code == 415
    assert resp.get_json()["error"] == "unsupported_type"
    resp = client.post("/api/v1/upload", data={}, headers={"X-API-Key": key})
    assert resp.status_code == 400 and resp.get_json()["error"] == "no_file"


def test_unknown_api_route_is_json_404(client):
    resp = client.get("/api/v1/nope")
    assert resp.status_code == 404 and resp.get_json()["error"] == "not_found"
