"""Test harness: real MariaDB (own database per run), real Redis (own DB number per run),
real ImageMagick. Jobs run in-process with RQ's SimpleWorker unless a test starts real
worker processes."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

import pymysql
import pytest
from redis import Redis

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"  # a copy of ../shared/fixtures (good/ and bad/)

DB_HOST = os.environ.get("TEST_DB_HOST", "127.0.0.1")
DB_PORT = int(os.environ.get("TEST_DB_PORT", "3306"))
DB_USER = os.environ.get("TEST_DB_USER", "root")
DB_PASSWORD = os.environ.get("TEST_DB_PASSWORD", "")
REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("TEST_REDIS_PORT", "6379"))

RUN_ID = secrets.token_hex(4)
DB_NAME = f"pixelfox_test_{RUN_ID}"
VAR_DIR = Path(tempfile.mkdtemp(prefix=f"pixelfox-test-{RUN_ID}-"))
os.environ["PIXELFOX_VAR_DIR"] = str(VAR_DIR)  # dev secrets, never the repo's var/
for name in (
    "DATABASE_URL",
    "REDIS_URL",
    "CACHE_HOST",
    "DB_HOST",
    "NODE_ID",
    "UPLOADS_DIR",
    "TMP_DIR",
    "PUBLIC_DOMAIN",
    "PIXELFOX_ENV",
):
    os.environ.pop(name, None)

CLAIM_KEY = "pixelfox:test-run-claim"


def _claim_redis_db() -> int:
    """Pick an empty Redis DB number and mark it as ours for this run."""
    for number in range(15, 0, -1):
        r = Redis(host=REDIS_HOST, port=REDIS_PORT, db=number)
        if r.dbsize() == 0 and r.set(CLAIM_KEY, RUN_ID, nx=True, ex=6 * 3600):
            return number
    raise RuntimeError("no free Redis DB number (1-15) for the test run")


REDIS_DB = _claim_redis_db()
DATABASE_URL = (
    f"mysql+pymysql://{DB_USER}{':' + DB_PASSWORD if DB_PASSWORD else ''}"
    f"@{DB_HOST}:{DB_PORT}/{DB_NAME}?charset=utf8mb4"
)
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"


def _server():
    return pymysql.connect(host=DB_HOST, port=DB_PORT, user=DB_USER, password=DB_PASSWORD)


@pytest.fixture(scope="session", autouse=True)
def test_database():
    conn = _server()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{DB_NAME}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    conn.close()
    from flask_migrate import upgrade

    from pixelfox import create_app

    app = create_app(base_config(VAR_DIR / "migrate"))
    with app.app_context():
        upgrade()
        from pixelfox.extensions import db

        db.engine.dispose()
    yield DATABASE_URL
    conn = _server()
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{DB_NAME}`")
    conn.close()
    redis = Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    redis.flushdb()
    shutil.rmtree(VAR_DIR, ignore_errors=True)


def base_config(root: Path, **extra) -> dict:
    from pixelfox.config import Config

    cfg = Config()
    cfg.SQLALCHEMY_DATABASE_URI = DATABASE_URL
    cfg.REDIS_URL = REDIS_URL
    cfg.UPLOADS_DIR = str(root / "uploads")
    cfg.TMP_DIR = str(root / "tmp")
    cfg.NODE_ID = "local"
    cfg.PUBLIC_DOMAIN = "http://127.0.0.1:4000"
    cfg.UPLOAD_TOKEN_SECRET = "test-upload-token-secret"
    cfg.TESTING = True
    values = {k: getattr(cfg, k) for k in dir(cfg) if k.isupper()}
    values.update(extra)
    return values


def _reset_state():
    from pixelfox.extensions import db

    for table in (
        "view_flushes",
        "image_copies",
        "nodes",
        "pool_move_items",
        "pool_moves",
        "tiering_runs",
        "regen_runs",
        "image_variants",
        "images",
        "settings",
        "storage_pools",
        "users",
    ):
        db.session.execute(db.text(f"DELETE FROM {table}"))
    db.session.commit()
    redis = Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    redis.flushdb()
    redis.set(CLAIM_KEY, RUN_ID, ex=6 * 3600)


@pytest.fixture(autouse=True)
def _push_request_context():
    """Replace pytest-flask's shared request context: each client request gets its own app
    context and DB session, as in production (a shared one would read stale MySQL snapshots)."""
    yield


@pytest.fixture
def app(tmp_path):
    """A fresh app per test (own upload dir), on the run's database and Redis DB."""
    from pixelfox import create_app

    application = create_app(base_config(tmp_path))
    with application.app_context():
        _reset_state()
    yield application
    with application.app_context():
        from pixelfox.extensions import db

        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    """pytest-flask's client, without `with client:`: that keeps the last request's context
    pushed, and a second client's requests would then share its `g` (and its login)."""
    return app.test_client()


@pytest.fixture
def redis(app):
    return app.extensions["pixelfox_redis"]


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, "page has no csrf_token field"
    return match.group(1)


class Auth:
    """Register/login helpers for the browser flow (with real CSRF tokens)."""

    def __init__(self, client):
        self.client = client

    def token(self, path: str = "/") -> str:
        return csrf_from(self.client.get(path).get_data(as_text=True))

    def register(self, username="alice", email=None, password="correct horse 1"):
        token = self.token("/register")
        return self.client.post(
            "/register",
            data={
                "username": username,
                "email": email or f"{username}@example.org",
                "password": password,
                "password_confirm": password,
                "csrf_token": token,
            },
        )

    def login(self, username="alice", password="correct horse 1"):
        token = self.token("/login")
        return self.client.post(
            "/login",
            data={
                "username": username,
                "password": password,
                "csrf_token": token,
            },
        )

    def logout(self):
        return self.client.post("/logout", data={"csrf_token": self.token("/")})


@pytest.fixture
def auth(client):
    return Auth(client)


def fixture_path(name: str, group: str = "good") -> Path:
    return FIXTURES / group / name


def upload(
    client,
    path: Path,
    token: str | None = None,
    accept_json: bool = True,
    filename: str | None = None,
    **headers,
):
    """POST /upload the way the browser form does."""
    if token is None:
        token = csrf_from(client.get("/").get_data(as_text=True))
    with open(path, "rb") as fh:
        data = {"file": (fh, filename or path.name)}
        if token:
            data["csrf_token"] = token
        if accept_json:
            headers.setdefault("Accept", "application/json")
        return client.post(
            "/upload", data=data, content_type="multipart/form-data", headers=headers
        )


def run_jobs(app, node_id: str = "local") -> int:
    """Run every queued job of one node queue in this process; returns jobs run."""
    from rq import Queue, SimpleWorker

    from pixelfox.extensions import get_redis

    with app.app_context():
        redis = get_redis()
        queue = Queue(f"node-{node_id}", connection=redis)
        before = queue.count
        SimpleWorker([queue], connection=redis).work(burst=True)
    return before


def files_under(root: str | Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.is_file())


def node_env(app, **extra) -> dict:
    """Environment for a real process of the node `app` describes (worker, web, CLI)."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=app.config["REDIS_URL"],
        UPLOADS_DIR=app.config["UPLOADS_DIR"],
        TMP_DIR=app.config["TMP_DIR"],
        NODE_ID=app.config["NODE_ID"],
        PUBLIC_DOMAIN=app.config["PUBLIC_DOMAIN"],
        UPLOAD_TOKEN_SECRET=app.config["UPLOAD_TOKEN_SECRET"] or "",
        SECRET_KEY=app.config["SECRET_KEY"],
        PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_rq_worker(app, *args: str, log_path: Path | None = None):
    """The plain RQ CLI, exactly as ops run it: `rq worker --url $REDIS_URL node-<id>`."""
    import subprocess
    import sys

    rq = str(Path(sys.executable).with_name("rq"))
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        [rq, "worker", "--url", app.config["REDIS_URL"], *args, f"node-{app.config['NODE_ID']}"],
        cwd=ROOT,
        env=node_env(app),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a signal meant for the worker's group never reaches pytest
    )


def big_jpeg(path: Path, width: int = 4240, height: int = 2832) -> Path:
    """A ~12-megapixel JPEG made from the photo fixture (EXIF kept)."""
    from pixelfox.imaging.magick import Image

    with Image(filename=f"jpeg:{fixture_path('photo.jpg')}") as img:
        img.resize(width, height)
        img.compression_quality = 90
        img.save(filename=f"jpeg:{path}")
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser_login(base: str, username: str):
    """Register over HTTP like a browser; returns (session, csrf token of the upload page)."""
    import requests

    s = requests.Session()
    token = re.search(
        r'name="csrf_token"[^>]*value="([^"]+)"', s.get(f"{base}/register").text
    ).group(1)
    s.post(
        f"{base}/register",
        data={
            "username": username,
            "email": f"{username}@example.org",
            "password": "multi node 1",
            "password_confirm": "multi node 1",
            "csrf_token": token,
        },
    )
    page = s.get(f"{base}/").text
    assert f"Log out ({username})" in page
    return s, re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 server (Ceph RADOS Gateway) for this run, started on first use."""
    from tests import s3server

    server = s3server.start(VAR_DIR / "s3")
    yield server
    server.stop()


@pytest.fixture
def bucket(s3_server):
    """A new, empty bucket for one test (emptied and removed after it)."""
    name = s3_server.new_bucket()
    yield name
    s3_server.drop_bucket(name)


def s3_pool_fields(server, bucket: str, **extra) -> dict:
    """The pool form's fields for a bucket of the test S3 server."""
    return server.pool_fields(bucket, **extra)


def kill_worker_hard(proc) -> None:
    """SIGKILL an `rq worker` process and its work horse, as a crash of the machine would. RQ
    puts the horse in a process group of its own (os.setpgrp), so killing the worker's group
    alone would leave the job running."""
    import signal

    horses = []
    try:
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as fh:
            horses = [int(pid) for pid in fh.read().split()]
    except FileNotFoundError:
        pass
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in horses:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=10)
