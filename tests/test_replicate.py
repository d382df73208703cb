"""PUT /api/internal/replicate: verified, idempotent, and refusing bad calls with nothing
written."""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.conftest import files_under, fixture_path

SECRET = "test-replication-secret"


@pytest.fixture
def pool(app, client):
    app.config["REPLICATION_SECRET"] = SECRET
    client.get("/")  # the node's default pool
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool

    with app.app_context():
        p = db.session.execute(db.select(StoragePool)).scalar_one()
        return {"id": p.id, "base": p.base_path}


def body_for(fields: dict, data: bytes, tmp_path, file_first=False):
    from pixelfox.storage.push import MultipartFile

    src = tmp_path / "payload.bin"
    src.write_bytes(data)
    mp = MultipartFile(fields, src, len(data))
    chunks = []
    while True:
        block = mp.read()
        if not block:
            break
        chunks.append(block)
    raw = b"".join(chunks)
    if file_first:  # move the file part before the fields
        marker = f"--{mp.boundary}".encode()
        parts = raw.split(marker)
        raw = marker.join([parts[0], parts[-2], *parts[1:-2], parts[-1]])
    return raw, mp.content_type


def put(client, tmp_path, fields, data, secret=SECRET, file_first=False):
    raw, ctype = body_for(fields, data, tmp_path, file_first)
    return client.put(
        "/api/internal/replicate",
        data=raw,
        content_type=ctype,
        headers={"Authorization": f"Bearer {secret}"},
    )


def fields(pool, rel, data, **over):
    f = {
        "pool_id": str(pool["id"]),
        "stored_path": rel,
        "size": str(len(data)),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    f.update(over)
    return {k: v for k, v in f.items() if v is not None}


def no_leftovers(pool):
    return [p for p in files_under(pool["base"]) if p.suffix == ".part"] == []


def test_copy_is_verified_idempotent_and_conflicts_are_409(app, client, pool, tmp_path):
    data = fixture_path("photo.jpg").read_bytes()
    rel = "original/2026/01/02/abc.jpg"
    resp = put(client, tmp_path, fields(pool, rel, data), data)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["status"] == "ok"
    target = os.path.join(pool["base"], rel)
    assert open(target, "rb").read() == data
    again = put(client, tmp_path, fields(pool, rel, data), data)
    assert again.status_code == 200
    assert again.get_json() == {"status": "ok", "skipped": True, "reason": "exists"}
    other = b"different bytes"
    conflict = put(client, tmp_path, fields(pool, rel, other), other)
    assert conflict.status_code == 409
    assert open(target, "rb").read() == data
    assert no_leftovers(pool)


def test_secret_is_required_and_checked(app, client, pool, tmp_path):
    data = b"x" * 10
    rel = "original/a/b.png"
    assert put(client, tmp_path, fields(pool, rel, data), data, secret="wrong").status_code == 401
    app.config["REPLICATION_SECRET"] = None
    resp = put(client, tmp_path, fields(pool, rel, data), data)
    assert resp.status_code == 503 and resp.get_json()["error"] == "replication_not_configured"
    assert files_under(pool["base"]) == []


@pytest.mark.parametrize(
    "rel",
    [
        "../escape.jpg",
        "/etc/passwd",
        "original/../../escape.jpg",
        "thumbs/a.jpg",
        "original/a\x00b.jpg",
        "original\\..\\..\\x.jpg",
        "original/.hidden/x.jpg",
        "original",
        "variants/link/escape.jpg",
    ],
)
def test_bad_paths_are_400_and_nothing_is_written(app, client, pool, tmp_path, rel):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.makedirs(os.path.join(pool["base"], "variants"), exist_ok=True)
    os.symlink(outside, os.path.join(pool["base"], "variants", "link"))
    data = b"payload"
    resp = put(client, tmp_path, fields(pool, rel, data), data)
    assert resp.status_code == 400, rel
    assert list(outside.iterdir()) == []
    assert [p for p in files_under(pool["base"]) if not p.is_symlink()] == []


@pytest.mark.parametrize(
    "over,code",
    [
        ({"size": "3"}, "mismatch"),
        ({"size": "999999"}, "mismatch"),
        ({"sha256": "0" * 64}, "mismatch"),
    ],
)
def test_size_or_checksum_mismatch_is_422_with_nothing_left(
    app, client, pool, tmp_path, over, code
):
    data = fixture_path("alpha.png").read_bytes()
    resp = put(client, tmp_path, fields(pool, "original/x/y.png", data, **over), data)
    assert resp.status_code == 422 and resp.get_json()["error"] == code
    assert files_under(pool["base"]) == []


def test_foreign_or_unknown_pool_is_404(app, client, pool, tmp_path):
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool

    with app.app_context():
        other = StoragePool(name="far", node_id="s9", base_path=str(tmp_path / "far"))
        db.session.add(other)
        db.session.commit()
        other_id = other.id
    data = b"z" * 100
    for pool_id in (other_id, 999999):
        f = fields(pool, "original/a/b.png", data, pool_id=str(pool_id))
        assert put(client, tmp_path, f, data).status_code == 404
    assert not (tmp_path / "far").exists()


def test_checksum_toggle(app, client, pool, tmp_path):
    from pixelfox.services import settings

    data = b"q" * 50
    resp = put(client, tmp_path, fields(pool, "original/c/d.png", data, sha256=None), data)
    assert resp.status_code == 400 and resp.get_json()["error"] == "sha256_required"
    with app.app_context():
        settings.update({"replication_require_checksum": False})
    resp = put(client, tmp_path, fields(pool, "original/c/d.png", data, sha256=None), data)
    assert resp.status_code == 200


def test_no_room_is_507(app, client, pool, tmp_path):
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool

    with app.app_context():
        db.session.execute(db.update(StoragePool).values(max_size=10, used_size=0))
        db.session.commit()
    data = b"w" * 100
    resp = put(client, tmp_path, fields(pool, "original/e/f.png", data), data)
    assert resp.status_code == 507
    assert files_under(pool["base"]) == []


def test_file_before_fields_is_400(app, client, pool, tmp_path):
    data = b"abc" * 10
    resp = put(client, tmp_path, fields(pool, "original/g/h.png", data), data, file_first=True)
    assert resp.status_code == 400
    assert files_under(pool["base"]) == []
