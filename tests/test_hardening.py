"""What an attacker or a failing disk found (issue 10): privacy before processing, a full
disk, production secrets, chunked bodies, sessions that must end, login lockouts, plain-http
node URLs and GIF frames."""

from __future__ import annotations

import http.client
import os
import re
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import requests

from tests.conftest import (
    DATABASE_URL,
    REDIS_URL,
    ROOT,
    csrf_from,
    files_under,
    fixture_path,
    free_port,
    node_env,
    run_jobs,
    upload,
)


def noise_png(path: Path, width: int = 640, height: int = 640, seed: int = 0) -> Path:
    """An incompressible PNG of about width × height × 3 bytes (distinct per seed)."""
    import random

    gen = random.Random(seed)
    rows = b"".join(b"\x00" + gen.randbytes(width * 3) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows, 0))
        + chunk(b"IEND", b"")
    )
    return path


def has_gps(data: bytes) -> bool:
    from pixelfox.imaging.magick import Image as WandImage

    with WandImage(blob=data, format="jpeg") as img:
        return any(k.startswith("exif:GPS") for k in img.metadata)


def make_gif(frames: int = 1, frame=(1, 1), screen=(1, 1)) -> bytes:
    """A valid GIF of 1×1-pixel frames whose image descriptors declare `frame`."""
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", screen[0], screen[1], 0x80, 0, 0))
    out += b"\x00\x00\x00\xff\xff\xff"
    for _ in range(frames):
        out += b"\x21\xf9\x04\x00\x0a\x00\x00\x00"
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, frame[0], frame[1], 0)
        out += b"\x02\x02\x44\x01\x00"
    return bytes(out + b"\x3b")


def image_rows(app) -> list:
    from pixelfox.extensions import db
    from pixelfox.models import Image

    with app.app_context():
        db.session.remove()
        return db.session.execute(db.select(Image)).scalars().all()


# --- 1. nothing with metadata is public before processing has ended ------------------------


def test_unprocessed_original_is_served_only_to_its_owner_and_never_cached(app, client, auth):
    from pixelfox.extensions import db
    from pixelfox.models import Image

    auth.register()
    uuid = upload(client, fixture_path("photo.jpg")).get_json()["image_uuid"]
    with app.app_context():
        rel = db.session.execute(db.select(Image.stored_path).where(Image.uuid == uuid)).scalar()
    raw = (Path(app.config["UPLOADS_DIR"]) / rel).read_bytes()
    assert has_gps(raw)  # the fixture carries GPS in its EXIF

    anonymous = app.test_client()
    assert anonymous.get(f"/uploads/{rel}").status_code == 404
    page = anonymous.get(f"/image/{uuid}").get_data(as_text=True)
    assert rel not in page  # the viewer shows no link to it either
    # The owner gets a signed, short-lived URL whose answer no shared cache keeps.
    status = client.get(f"/api/v1/images/{uuid}/status").get_json()
    assert status["status"] == "pending" and "sig=" in status["original_url"]
    signed = status["original_url"].split(":4000", 1)[1]
    resp = anonymous.get(signed)
    assert resp.status_code == 200 and resp.data == raw
    assert resp.headers["Cache-Control"] == "private, no-store"

    run_jobs(app)
    resp = anonymous.get(f"/uploads/{rel}")
    assert resp.status_code == 200 and not has_gps(resp.data)
    assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"


def test_a_failed_image_never_exposes_its_upload(app, client, auth):
    import shutil

    from pixelfox.extensions import db
    from pixelfox.models import Image
    from pixelfox.storage import paths

    auth.register()
    uuid = upload(client, fixture_path("photo.jpg")).get_json()["image_uuid"]
    with app.app_context():
        image = db.session.execute(db.select(Image).where(Image.uuid == uuid)).scalar_one()
        target = paths.resolve(image.pool.base_path, image.stored_path)
    shutil.copyfile(fixture_path("imagetragick-mvg.jpg", "bad"), target)  # fails in the worker
    run_jobs(app)
    status = client.get(f"/api/v1/images/{uuid}/status").get_json()
    assert status["status"] == "failed", status
    rel = status["original_url"].split("/uploads/", 1)[1].split("?", 1)[0]
    assert app.test_client().get(f"/uploads/{rel}").status_code == 404
    signed = app.test_client().get(status["original_url"].split(":4000", 1)[1])
    assert signed.status_code == 200 and signed.headers["Cache-Control"] == "private, no-store"


# --- 2. a full disk answers 507 and leaves nothing -----------------------------------------


@pytest.fixture
def small_fs(tmp_path):
    """A 3 MB tmpfs, mounted for this test and unmounted after it (as root, or through
    `sudo -n` like the system-package install). A machine that cannot mount one fails this
    test with the reason: a full disk is behaviour the suite must check, not skip."""
    mount = tmp_path / "small"
    mount.mkdir()
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    done = subprocess.run(
        [*sudo, "mount", "-t", "tmpfs", "-o", "size=3m,mode=0777", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.fail(
            f"cannot mount a 3 MB tmpfs for the full-disk tests (needs root or passwordless "
            f"sudo): {done.stderr.strip() or done.returncode}"
        )
    yield mount
    subprocess.run([*sudo, "umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_507_with_nothing_left_and_the_next_upload_goes_elsewhere(
    app, client, auth, small_fs, tmp_path
):
    from pixelfox.extensions import db
    from pixelfox.models import Image, ImageVariant, StoragePool
    from pixelfox.services import placement, poolform, pools

    auth.register()
    client.get("/")  # the node's default pool
    with app.app_context():
        tiny = poolform.save_pool(
            None,
            {
                "name": "tiny",
                "node_id": "local",
                "storage_type": "local",
                "storage_tier": "hot",
                "base_path": str(small_fs),
                "priority": "10",  # before the default pool
                "is_active": "on",
                "accepts_uploads": "on",
            },
        ).id
    photos = [noise_png(tmp_path / f"p{i}.png", seed=i) for i in range(4)]
    assert 1.1e6 < photos[0].stat().st_size < 1.3e6
    assert upload(client, photos[0]).status_code == 201
    assert upload(client, photos[1]).status_code == 201
    third = upload(client, photos[2])
    assert third.status_code == 507, third.get_data(as_text=True)
    assert third.get_json()["error"] == "storage_full"
    with app.app_context():  # (forget the mark, to see what a browser gets)
        placement.clear_full(tiny)
    page = upload(client, photos[2], accept_json=False)
    assert page.status_code == 507 and "The storage pool is full." in page.get_data(as_text=True)
    # Nothing half-written: two originals, no temp file, no third row.
    on_tiny = files_under(small_fs)
    assert len(on_tiny) == 2 and not [p for p in on_tiny if p.suffix == ".part"]
    assert len(image_rows(app)) == 2
    assert not [p for p in files_under(app.config["TMP_DIR"]) if p.is_file()]
    # The pool counts as full at once: the next upload lands in the default pool.
    with app.app_context():
        assert placement.marked_full([tiny]) == {tiny}
    fourth = upload(client, photos[3])
    assert fourth.status_code == 201
    with app.app_context():
        image = db.session.execute(
            db.select(Image).where(Image.uuid == fourth.get_json()["image_uuid"])
        ).scalar_one()
        assert image.storage_pool_id != tiny

    # Variants do not fit either: the job fails (and retries later) without writing anything.
    from rq import Queue

    from pixelfox.extensions import get_redis

    run_jobs(app)
    with app.app_context():
        db.session.remove()
        on_tiny_rows = db.session.execute(
            db.select(Image).where(Image.storage_pool_id == tiny)
        ).scalars()
        assert {i.status for i in on_tiny_rows} == {"processing"}
        assert not db.session.execute(
            db.select(ImageVariant).where(ImageVariant.storage_pool_id == tiny)
        ).first()
        scheduled = Queue("node-local", connection=get_redis()).scheduled_job_registry
        assert scheduled.count == 2  # each retries with backoff
    assert [p.parent.name for p in files_under(small_fs)] != []
    assert not [p for p in files_under(small_fs) if "variants" in p.parts or p.suffix == ".part"]

    # With room again, the retried job completes.
    subprocess.run(["mount", "-o", "remount,size=20m", str(small_fs)], check=True)
    from pixelfox.services import processing

    with app.app_context():
        for image in db.session.execute(
            db.select(Image).where(Image.storage_pool_id == tiny)
        ).scalars():
            assert processing.process(image.id) == "ready"
            assert processing.finish(image.id) == "complete"
        pool = db.session.get(StoragePool, tiny)
        assert pool.used_size == pools.recompute_used(tiny)


def test_the_replicate_endpoint_answers_507_on_a_full_disk(app, client, small_fs, tmp_path):
    import hashlib

    from pixelfox.services import poolform
    from tests.test_replicate import put

    app.config["REPLICATION_SECRET"] = "test-replication-secret"
    with app.app_context():
        tiny = poolform.save_pool(
            None,
            {
                "name": "tiny",
                "node_id": "local",
                "base_path": str(small_fs),
                "is_active": "on",
                "accepts_uploads": "on",
            },
        ).id
    data = noise_png(tmp_path / "r.png", seed=9).read_bytes() * 3
    fields = {
        "pool_id": str(tiny),
        "stored_path": "original/2026/01/01/x.png",
        "size": str(len(data)),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    resp = put(client, tmp_path, fields, data)
    assert resp.status_code == 507 and resp.get_json()["error"] == "no_room"
    assert files_under(small_fs) == []


# --- 4. production refuses the example secrets ---------------------------------------------


def _create_app(tmp_path, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY",)}
    full.update(
        PIXELFOX_ENV="production",
        PIXELFOX_VAR_DIR=str(tmp_path),
        REDIS_URL=REDIS_URL,  # this run's MariaDB database and Redis DB number
        DATABASE_URL=DATABASE_URL,
    )
    full.update(env)
    return subprocess.run(
        [sys.executable, "-c", "from pixelfox import create_app; create_app(); print('started')"],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


GOOD = {
    "SECRET_KEY": "k" * 48,
    "UPLOAD_TOKEN_SECRET": "u" * 48,
    "REPLICATION_SECRET": "r" * 48,
}


def _example_secrets() -> set[str]:
    found = set()
    for name in (".env.example", ".env.storage.example"):
        for line in (ROOT / name).read_text().splitlines():
            key, _, value = line.partition("=")
            if key in GOOD:
                found.add(value.strip())
    return found


@pytest.mark.parametrize(
    "change, variable",
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"SECRET_KEY": "change-me-long-random-string"}, "SECRET_KEY"),
        ({"UPLOAD_TOKEN_SECRET": "too-short-but-random-2f8a"}, "UPLOAD_TOKEN_SECRET"),
        ({"REPLICATION_SECRET": ""}, "REPLICATION_SECRET"),
        ({"REPLICATION_SECRET": "k" * 48}, "SECRET_KEY and REPLICATION_SECRET"),
    ],
)
def test_production_refuses_weak_secrets(tmp_path, change, variable):
    out = _create_app(tmp_path, **{**GOOD, **change})
    assert out.returncode != 0 and "started" not in out.stdout
    assert variable in out.stderr, out.stderr[-800:]


def test_production_refuses_every_shipped_example_and_starts_with_real_secrets(tmp_path):
    from pixelfox.config import InsecureSecret, check_production_secrets

    examples = _example_secrets()
    assert len(examples) >= 4
    for value in examples:
        with pytest.raises(InsecureSecret):
            check_production_secrets({**GOOD, "UPLOAD_TOKEN_SECRET": value})
    out = _create_app(tmp_path, **GOOD)
    assert out.returncode == 0 and "started" in out.stdout, out.stderr[-800:]
    # The container entrypoint says it in one line, before waiting for anything.
    entry = subprocess.run(
        [sys.executable, "-m", "pixelfox.entrypoint", "web", "--dry-run"],
        cwd=ROOT,
        env={**os.environ, "PIXELFOX_ENV": "production", **GOOD, "SECRET_KEY": "short"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert entry.returncode != 0
    assert "refusing to start: SECRET_KEY is shorter than 32 bytes" in entry.stderr


# --- 5. chunked bodies over the limit ------------------------------------------------------


@pytest.fixture
def gunicorn_node(app, tmp_path):
    """The app under gunicorn, as in production (it passes chunked bodies to the app)."""
    port = free_port()
    env = node_env(app, PUBLIC_DOMAIN=f"http://127.0.0.1:{port}")
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "1",
            "--threads",
            "2",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/api/v1/ping", timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.2)
    yield port
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def test_chunked_upload_over_the_limit_is_413_with_nothing_left(app, gunicorn_node, tmp_path):
    from pixelfox.services import accounts, settings

    with app.app_context():
        user = accounts.create_user("chunky", "chunky@example.org", "long password 1")
        key = accounts.rotate_api_key(user)
        settings.update({"max_upload_mb": 1})
    payload = noise_png(tmp_path / "big.png", 1000, 1000, seed=3).read_bytes()  # ~3 MB
    boundary = "pixelfox-chunked-test"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    body = head + payload + f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", gunicorn_node, timeout=60)
    conn.putrequest("POST", "/api/v1/upload")
    conn.putheader("Authorization", f"Bearer {key}")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    try:
        for i in range(0, len(body), 64 * 1024):
            block = body[i : i + 64 * 1024]
            conn.send(f"{len(block):x}\r\n".encode() + block + b"\r\n")
        conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may answer before reading everything
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    assert resp.status == 413, text
    assert '"file_too_large"' in text
    assert not image_rows(app)
    leftovers = [
        p for p in files_under(app.config["UPLOADS_DIR"]) + files_under(app.config["TMP_DIR"])
    ]
    assert leftovers == []


# --- 6. sessions end on logout, password change, "log out everywhere", disable -------------


def _copy_session(app, client):
    """A second browser with a copy of `client`'s session cookie."""
    other = app.test_client()
    other.set_cookie("session", client.get_cookie("session").value)
    return other


def _logged_in(c) -> bool:
    return c.get("/user/settings").status_code == 200


def test_logout_ends_every_copy_of_the_session(app, client, auth):
    auth.register("mallory-target")
    thief = _copy_session(app, client)
    assert _logged_in(thief)
    assert auth.logout().status_code == 302
    assert not _logged_in(thief)


def test_password_change_and_log_out_everywhere_end_other_sessions(app, client, auth):
    auth.register("nadia", password="first password 1")
    copy = _copy_session(app, client)
    token = auth.token("/user/settings")
    resp = client.post(
        "/user/settings",
        data={
            "current_password": "first password 1",
            "new_password": "second password 2",
            "new_password_confirm": "second password 2",
            "csrf_token": token,
        },
    )
    assert resp.status_code == 302
    assert _logged_in(client) and not _logged_in(copy)  # this session goes on

    copy = _copy_session(app, client)
    assert _logged_in(copy)
    page = client.get("/user/settings").get_data(as_text=True)
    assert "Log out everywhere else" in page
    resp = client.post("/user/settings/logout-everywhere", data={"csrf_token": csrf_from(page)})
    assert resp.status_code == 302
    assert _logged_in(client) and not _logged_in(copy)
    assert client.post("/user/settings/logout-everywhere").status_code == 400  # CSRF


def test_a_disabled_account_does_not_get_its_old_sessions_back(app, client, auth):
    from pixelfox.extensions import db
    from pixelfox.models import User
    from pixelfox.services import accounts

    auth.register("olga")
    with app.app_context():
        admin = accounts.create_user("root2", "root2@example.org", "admin pass 12", "admin")
        user = db.session.execute(db.select(User).where(User.username == "olga")).scalar_one()
        accounts.admin_update(admin, user, "user", "disabled")
        assert not _logged_in(client)
        accounts.admin_update(admin, user, "user", "active")
    assert not _logged_in(client)


# --- 7. nobody can lock someone else out ---------------------------------------------------


def _login(client, username, password, ip):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        environ_base={"REMOTE_ADDR": ip},
    )


def test_wrong_passwords_from_elsewhere_do_not_lock_the_owner_out(app, client, auth):
    auth.register("bob", password="bobs password 1")
    auth.logout()
    attacker = app.test_client()
    for _ in range(12):
        assert _login(attacker, "bob", "guess guess", "203.0.113.7").status_code in (401, 429)
    # The attacker's address is throttled, even with the right password...
    assert _login(attacker, "bob", "bobs password 1", "203.0.113.7").status_code == 429
    # ...but bob, from an address that has not failed, logs in.
    owner = app.test_client()
    assert _login(owner, "bob", "bobs password 1", "198.51.100.2").status_code == 302


def test_a_distributed_guess_hits_the_per_account_ceiling_only_for_failing_clients(
    app, client, auth
):
    app.config["LOGIN_LIMIT_PER_ACCOUNT"] = 5
    auth.register("carol", password="carols password 1")
    auth.logout()
    for i in range(5):  # five addresses, one wrong guess each
        _login(app.test_client(), "carol", "wrong", f"203.0.113.{10 + i}")
    # A sixth address that has failed too now waits, even with the right password...
    assert _login(app.test_client(), "carol", "nope", "203.0.113.99").status_code == 401
    resp = _login(app.test_client(), "carol", "carols password 1", "203.0.113.99")
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
    # ...a client that never failed does not.
    assert _login(app.test_client(), "carol", "carols password 1", "192.0.2.1").status_code == 302


# --- 10. secrets never travel over plain http to a public host -----------------------------


@pytest.mark.parametrize(
    "url, ok",
    [
        ("https://s1.example.org/api/internal/upload", True),
        ("http://s1.example.org/api/internal/upload", False),
        ("http://93.184.215.14:4000/api/internal/upload", False),
        ("http://10.0.0.5:4000/api/internal/upload", True),
        ("http://192.168.1.20/api/internal/upload", True),
        ("http://127.0.0.1:4001/api/internal/upload", True),
        ("http://localhost:4001/api/internal/upload", True),
    ],
)
def test_plain_http_node_urls_only_to_private_addresses(app, url, ok):
    from pixelfox.services import poolform

    with app.app_context():
        data = {"name": "s9", "node_id": "s9", "base_path": "/srv/s9", "upload_api_url": url}
        try:
            poolform.save_pool(None, data)
            saved = True
        except poolform.PoolError as exc:
            saved = False
            assert "https://" in exc.errors["upload_api_url"]
        assert saved is ok
        if not ok:
            app.config["ALLOW_INSECURE_NODE_URLS"] = True
            poolform.save_pool(None, {**data, "name": "s9-insecure"})


def test_the_storage_form_warns_about_plain_http(app, client):
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool
    from pixelfox.services import accounts
    from tests.conftest import Auth

    with app.app_context():
        accounts.create_user("admin", "admin@example.org", "admin pass 12", "admin")
    Auth(client).login("admin", "admin pass 12")
    client.get("/")
    with app.app_context():
        pool_id = db.session.execute(db.select(StoragePool.id)).scalar()
    page = client.get(f"/admin/storage/edit/{pool_id}").get_data(as_text=True)
    assert "secrets cross the network in clear text" in page  # the default pool is http://


# --- 12. GIF frames and ImageMagick's list length ------------------------------------------


def test_gif_frames_are_checked_one_by_one(app, client, auth, tmp_path):
    auth.register()
    flood = tmp_path / "flood.gif"
    flood.write_bytes(make_gif(frames=2, frame=(60000, 60000), screen=(1, 1)))
    resp = upload(client, flood)
    assert resp.status_code == 422 and resp.get_json()["error"] == "too_many_pixels"
    long = tmp_path / "long.gif"
    long.write_bytes(make_gif(frames=1001))
    resp = upload(client, long)
    assert resp.status_code == 422 and resp.get_json()["error"] == "too_many_frames"
    ok = tmp_path / "ok.gif"
    ok.write_bytes(make_gif(frames=20, frame=(1, 1), screen=(1, 1)))
    assert upload(client, ok).status_code == 201
    assert len(image_rows(app)) == 1
    assert len([p for p in files_under(app.config["UPLOADS_DIR"]) if p.suffix == ".gif"]) == 1


def test_imagemagick_refuses_sequences_longer_than_the_list_length(tmp_path):
    from wand.api import library

    from pixelfox.imaging import magick
    from pixelfox.imaging.variants import DecodeError, Target, render

    policy = (ROOT / "pixelfox/imaging/policy.xml").read_text()
    assert re.search(r'name="list-length" value="1000"', policy)
    assert library.MagickGetResourceLimit(magick.LIST_LENGTH_RESOURCE) == 1000
    src = tmp_path / "long.gif"
    src.write_bytes(make_gif(frames=1001))
    target = Target("thumbnail_small_original", "small", "gif", tmp_path / "out.gif")
    with pytest.raises(DecodeError):
        render(src, "gif", [target], tmp_path / ".tmp")
    assert not (tmp_path / "out.gif").exists()
    assert not list((tmp_path / ".tmp").glob("*"))
