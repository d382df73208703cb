"""Bad uploads are refused with a clear 4xx, write nothing, and never hurt the worker."""

from __future__ import annotations

import shutil
import socket
import threading

import pytest

from tests.conftest import csrf_from, files_under, fixture_path, run_jobs, upload

BAD = {
    "empty.png": (400, "empty_file"),
    "html-polyglot.gif": (422, "too_many_pixels"),
    "imagetragick-msl.png": (415, "unsupported_type"),
    "imagetragick-mvg.jpg": (415, "unsupported_type"),
    "pixel-flood.png": (422, "too_many_pixels"),
    "script.svg": (415, "unsupported_type"),
    "text-named.jpg": (415, "unsupported_type"),
    "truncated.jpg": (422, "damaged_image"),
}


def image_rows(app) -> int:
    from pixelfox.extensions import db
    from pixelfox.models import Image

    with app.app_context():
        return db.session.execute(db.select(db.func.count(Image.id))).scalar()


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_fixture_refused_with_nothing_written(app, client, auth, name):
    auth.register()
    status, code = BAD[name]
    resp = upload(client, fixture_path(name, "bad"))
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["error"] == code
    assert len(body["message"]) > 10  # a sentence a person can read
    assert image_rows(app) == 0
    assert files_under(app.config["UPLOADS_DIR"]) == []
    assert files_under(app.config["TMP_DIR"]) == []
    # The browser form gets the same status with a readable page.
    page = upload(client, fixture_path(name, "bad"), accept_json=False)
    assert page.status_code == status
    assert body["message"].split(" (")[0][:30] in page.get_data(as_text=True)
    # ... and the worker is still fine: a good image processes afterwards.
    good = upload(client, fixture_path("tiny.png")).get_json()["image_uuid"]
    run_jobs(app)
    assert client.get(f"/api/v1/images/{good}/status").get_json()["status"] == "complete"


def test_pixel_limit_follows_the_setting(app, client, auth):
    from pixelfox.services import settings

    auth.register()
    with app.app_context():
        settings.update({"max_image_megapixels": 3})
    resp = upload(client, fixture_path("photo.jpg"))  # 3.84 MP
    assert resp.status_code == 422 and resp.get_json()["error"] == "too_many_pixels"
    assert image_rows(app) == 0


class Listener:
    """A TCP listener that records every connection made to it."""

    def __init__(self, port: int):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(5)
        self.sock.settimeout(0.2)
        self.hits = 0
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
                self.hits += 1
                conn.close()
            except OSError:
                continue

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


@pytest.mark.parametrize("name", ["imagetragick-mvg.jpg", "imagetragick-msl.png", "script.svg"])
def test_worker_refuses_payload_that_slipped_past_the_web(app, client, auth, tmp_path, name):
    """Defence in depth: even if such bytes reached the worker under an image type, the
    ImageMagick policy refuses them — no network call (the MVG points at 127.0.0.1:9), no
    file written, the image ends `failed` with a message."""
    from pixelfox.extensions import db
    from pixelfox.models import Image
    from pixelfox.storage import paths

    auth.register()
    uuid = upload(client, fixture_path("photo.jpg")).get_json()["image_uuid"]
    with app.app_context():
        image = db.session.execute(db.select(Image).where(Image.uuid == uuid)).scalar_one()
        target = paths.resolve(image.pool.base_path, image.stored_path)
    shutil.copyfile(fixture_path(name, "bad"), target)  # swap in the payload
    listener = Listener(9)
    try:
        run_jobs(app)
    finally:
        listener.close()
    assert listener.hits == 0
    status = client.get(f"/api/v1/images/{uuid}/status").get_json()
    assert status["status"] == "failed" and status["complete"] is True
    assert "could not" in status["error"]
    variants = [p for p in files_under(app.config["UPLOADS_DIR"]) if "variants" in p.parts]
    assert variants == []
    assert not (tmp_path / "pwned").exists()


def test_truncated_jpeg_in_worker_ends_in_a_clear_state(app, client, auth):
    """A truncated JPEG that reached storage is processed as far as it decodes (or fails with
    a message) — never a crashed worker or an image stuck in `processing`."""
    from pixelfox.extensions import db
    from pixelfox.models import Image
    from pixelfox.storage import paths

    auth.register()
    uuid = upload(client, fixture_path("photo.jpg")).get_json()["image_uuid"]
    with app.app_context():
        image = db.session.execute(db.select(Image).where(Image.uuid == uuid)).scalar_one()
        target = paths.resolve(image.pool.base_path, image.stored_path)
    shutil.copyfile(fixture_path("truncated.jpg", "bad"), target)
    run_jobs(app)
    status = client.get(f"/api/v1/images/{uuid}/status").get_json()
    assert status["complete"] is True
    assert status["status"] in ("complete", "failed")
    if status["status"] == "failed":
        assert status["error"]
    else:
        assert "thumbnail_small_webp" in status["variants"]


def test_upload_without_login_is_401_and_writes_nothing(app, client):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    resp = upload(client, fixture_path("tiny.png"), token=token)
    assert resp.status_code == 401
    assert resp.get_json()["error"] == "unauthorized"
    assert files_under(app.config["UPLOADS_DIR"]) == []


def test_upload_without_csrf_token_is_400(app, client, auth):
    auth.register()
    resp = upload(client, fixture_path("tiny.png"), token="")
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "csrf_failed"
    resp = upload(client, fixture_path("tiny.png"), token="forged-token")
    assert resp.status_code == 400
    assert image_rows(app) == 0


def test_upload_above_size_limit_is_413_and_leaves_nothing(app, client, auth, tmp_path):
    from pixelfox.services import settings

    auth.register()
    with app.app_context():
        settings.update({"max_upload_mb": 1})
    big = tmp_path / "big.bmp"
    big.write_bytes(fixture_path("photo.bmp").read_bytes() * 2)  # 1.8 MB
    resp = upload(client, big)
    assert resp.status_code == 413
    assert resp.get_json()["error"] == "file_too_large"
    assert "1 MB" in resp.get_json()["message"]
    assert image_rows(app) == 0
    assert files_under(app.config["UPLOADS_DIR"]) == []
    assert files_under(app.config["TMP_DIR"]) == []


def test_request_body_far_above_limit_is_refused_before_parsing(app, client, auth, tmp_path):
    from pixelfox.services import settings

    auth.register()
    with app.app_context():
        settings.update({"max_upload_mb": 1})
    token = csrf_from(client.get("/").get_data(as_text=True))
    huge = tmp_path / "huge.bin"
    huge.write_bytes(b"\xff\xd8\xff" + b"\0" * (25 * 1024 * 1024))
    with open(huge, "rb") as fh:
        resp = client.post(
            "/upload",
            data={"file": (fh, "huge.jpg"), "csrf_token": token},
            headers={"Accept": "application/json"},
        )
    assert resp.status_code == 413
    assert files_under(app.config["UPLOADS_DIR"]) == []


def test_no_file_is_400(app, client, auth):
    auth.register()
    token = csrf_from(client.get("/").get_data(as_text=True))
    resp = client.post(
        "/upload", data={"csrf_token": token}, headers={"Accept": "application/json"}
    )
    assert resp.status_code == 400 and resp.get_json()["error"] == "no_file"


def test_uploads_disabled_is_503(app, client, auth):
    from pixelfox.services import settings

    auth.register()
    with app.app_context():
        settings.update({"image_upload_enabled": False})
    resp = upload(client, fixture_path("tiny.png"))
    assert resp.status_code == 503 and resp.get_json()["error"] == "uploads_disabled"
    assert "switched off" in client.get("/").get_data(as_text=True)


def test_upload_rate_limit_per_user_answers_429_with_retry_after(app, client, auth):
    from pixelfox.services import settings

    auth.register()
    with app.app_context():
        settings.update({"upload_user_rate_limit_per_minute": 2})
    assert upload(client, fixture_path("tiny.png")).status_code == 201
    assert upload(client, fixture_path("alpha.png")).status_code == 201
    resp = upload(client, fixture_path("anim.gif"))
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.get_json()["error"] == "rate_limited"
    assert image_rows(app) == 2


def test_upload_rate_limit_per_ip(app, client, auth):
    from pixelfox.services import settings

    auth.register()
    with app.app_context():
        settings.update({"upload_rate_limit_per_minute": 1})
    assert upload(client, fixture_path("tiny.png")).status_code == 201
    assert upload(client, fixture_path("alpha.png")).status_code == 429


def test_flash_routes_set_a_message_and_go_home(client):
    resp = client.get("/flash/upload-too-large")
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    assert "too large" in client.get("/").get_data(as_text=True)
    resp = client.get("/flash/upload-error?code=storage_full&next=https://evil.example")
    assert resp.headers["Location"] == "/"
    assert "The storage is full" in client.get("/").get_data(as_text=True)
    # Text from the request is never shown: an old-style ?msg= or an unknown code gets the
    # fixed default message.
    client.get("/flash/upload-error?msg=Send+your+password+to+evil.example")
    page = client.get("/").get_data(as_text=True)
    assert "evil.example" not in page and "The upload failed; please try again." in page
    client.get("/flash/upload-error?code=%3Cscript%3Ealert(1)%3C/script%3E")
    page = client.get("/").get_data(as_text=True)
    assert "alert(1)" not in page and "The upload failed; please try again." in page
    assert client.get("/flash/nope").status_code == 404


def test_imagemagick_has_no_process_lifetime_limit():
    """ImageMagick's "time" resource counts from library start and then exit()s the process:
    a worker up for longer than it would die on its next job. Per-job limits come from RQ."""
    from pixelfox.imaging.magick import limits

    assert limits["time"] >= 10**9  # unlimited
    assert limits["area"] <= 256_000_000 and limits["memory"] <= 1024**3  # the real limits stay
