"""Direct-to-storage upload: sessions, tokens and the storage node's endpoint (one process;
the multi-node test runs it across real processes)."""

from __future__ import annotations

import base64
import json
import time

import pytest

from tests.conftest import csrf_from, files_under, fixture_path, run_jobs
from tests.test_bad_input import BAD


def session(client, size, **headers):
    return client.post("/api/internal/upload/sessions", json={"file_size": size}, headers=headers)


def logged_in_token(client, auth):
    auth.register()
    return csrf_from(client.get("/").get_data(as_text=True))


def send(client, token, path, name=None, origin=None):
    headers = {"Authorization": f"Bearer {token}"}
    if origin:
        headers["Origin"] = origin
    with open(path, "rb") as fh:
        return client.post(
            "/api/internal/upload", data={"file": (fh, name or path.name)}, headers=headers
        )


def new_session(client, auth, path):
    csrf = logged_in_token(client, auth)
    resp = session(client, path.stat().st_size, **{"X-CSRFToken": csrf})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()


def test_session_then_direct_upload_then_processing(app, client, auth):
    path = fixture_path("photo.jpg")
    body = new_session(client, auth, path)
    assert set(body) == {"upload_url", "token", "pool_id", "expires_at", "max_bytes"}
    assert body["upload_url"] == "http://127.0.0.1:4000/api/internal/upload"
    assert body["max_bytes"] == path.stat().st_size
    resp = send(client, body["token"], path, origin="http://127.0.0.1:4000")
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert resp.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:4000"
    uuid = resp.get_json()["image_uuid"]
    run_jobs(app)
    assert client.get(f"/api/v1/images/{uuid}/status").get_json()["status"] == "complete"


def test_probe_and_preflight_answer_204_with_cors(client):
    assert client.head("/api/internal/upload").status_code == 204
    resp = client.options(
        "/api/internal/upload",
        headers={"Origin": "http://127.0.0.1:4000", "Access-Control-Request-Method": "POST"},
    )
    assert resp.status_code == 204
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    other = client.options("/api/internal/upload", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_session_needs_login_and_csrf(client, auth):
    assert session(client, 100).status_code == 401
    auth.register()
    assert session(client, 100).status_code == 400  # no X-CSRFToken
    assert session(client, 100, **{"X-CSRFToken": "forged"}).status_code == 400


def test_session_validates_size(app, client, auth):
    csrf = logged_in_token(client, auth)
    assert session(client, 0, **{"X-CSRFToken": csrf}).status_code == 400
    resp = session(client, 51 * 1024 * 1024, **{"X-CSRFToken": csrf})
    assert resp.status_code == 413 and resp.get_json()["error"] == "file_too_large"


def test_api_key_session(app, client):
    from pixelfox.services import accounts

    with app.app_context():
        user = accounts.create_user("robot", "robot@example.org", "long password 1")
        key = accounts.rotate_api_key(user)
    resp = client.post(
        "/api/v1/upload/sessions",
        json={"file_size": 376},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert resp.status_code == 201
    assert send(client, resp.get_json()["token"], fixture_path("tiny.png")).status_code == 201
    bad = client.post(
        "/api/v1/upload/sessions", json={"file_size": 1}, headers={"X-API-Key": "pxl_nope"}
    )
    assert bad.status_code == 401 and bad.get_json()["error"] == "invalid_api_key"


def test_replayed_token_is_409(app, client, auth):
    body = new_session(client, auth, fixture_path("tiny.png"))
    assert send(client, body["token"], fixture_path("tiny.png")).status_code == 201
    resp = send(client, body["token"], fixture_path("tiny.png"))
    assert resp.status_code == 409 and resp.get_json()["error"] == "token_used"


def _forge(app, **changes) -> str:
    from pixelfox.services import tokens

    with app.test_request_context():
        token, _ = tokens.issue_upload_token(1, 1, "local", 1000)
        body, sig = token.split(".")
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        payload.update(changes)
        new_body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
        return f"{new_body}.{sig}"


def test_tampered_expired_and_other_node_tokens_are_refused(app, client, auth):
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool, User
    from pixelfox.services import tokens

    auth.register()
    client.get("/")
    with app.test_request_context():
        user_id = db.session.execute(db.select(User.id)).scalar()
        pool_id = db.session.execute(db.select(StoragePool.id)).scalar()
        expired, _ = tokens.issue_upload_token(
            user_id, pool_id, "local", 1000, now=time.time() - 3600
        )
        other, _ = tokens.issue_upload_token(user_id, pool_id, "s9", 1000)
    cases = [
        ("garbage", 401, "invalid_token"),
        (_forge(app, max_bytes=10**12), 401, "invalid_token"),
        (expired, 401, "token_expired"),
        (other, 401, "wrong_node"),
    ]
    for token, status, code in cases:
        resp = send(client, token, fixture_path("tiny.png"))
        assert resp.status_code == status and resp.get_json()["error"] == code, code
    assert send(client, "", fixture_path("tiny.png")).status_code == 401
    assert files_under(app.config["UPLOADS_DIR"]) == []


def test_inactive_or_full_pool_and_oversized_file(app, client, auth):
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool

    small = fixture_path("tiny.png")
    body = new_session(client, auth, small)
    with app.app_context():
        db.session.execute(db.update(StoragePool).values(is_active=False))
        db.session.commit()
    resp = send(client, body["token"], small)
    assert resp.status_code == 503 and resp.get_json()["error"] == "pool_unavailable"
    with app.app_context():
        db.session.execute(
            db.update(StoragePool).values(is_active=True, max_size=100, used_size=100)
        )
        db.session.commit()
    csrf = csrf_from(client.get("/").get_data(as_text=True))
    assert session(client, 376, **{"X-CSRFToken": csrf}).status_code == 507
    with app.app_context():
        db.session.execute(db.update(StoragePool).values(max_size=None, used_size=0))
        db.session.commit()
    body = session(client, 100, **{"X-CSRFToken": csrf}).get_json()  # declares 100 bytes
    resp = send(client, body["token"], fixture_path("alpha.png"))  # sends 4663
    assert resp.status_code == 413
    assert files_under(app.config["UPLOADS_DIR"]) == []


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_fixtures_by_direct_upload_get_the_form_answers(app, client, auth, name):
    path = fixture_path(name, "bad")
    csrf = logged_in_token(client, auth)
    body = session(client, max(1, path.stat().st_size), **{"X-CSRFToken": csrf}).get_json()
    resp = send(client, body["token"], path)
    status, code = BAD[name]
    assert resp.status_code == status and resp.get_json()["error"] == code
    assert files_under(app.config["UPLOADS_DIR"]) == []
    assert files_under(app.config["TMP_DIR"]) == []


def test_direct_upload_counts_against_the_same_rate_limit(app, client, auth):
    from pixelfox.services import settings

    csrf = logged_in_token(client, auth)
    with app.app_context():
        settings.update({"upload_user_rate_limit_per_minute": 1})
    path = fixture_path("tiny.png")
    body = session(client, path.stat().st_size, **{"X-CSRFToken": csrf}).get_json()
    assert send(client, body["token"], path).status_code == 201
    body = session(client, 4663, **{"X-CSRFToken": csrf}).get_json()
    resp = send(client, body["token"], fixture_path("alpha.png"))
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1


def test_upload_page_uses_direct_upload_when_enabled(app, client, auth):
    from pixelfox.services import settings

    auth.register()
    assert 'data-direct="0"' in client.get("/").get_data(as_text=True)
    with app.app_context():
        settings.update({"direct_upload_enabled": True})
    assert 'data-direct="1"' in client.get("/").get_data(as_text=True)
