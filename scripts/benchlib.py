"""Shared by the benchmarks that need pools, images and nodes: a work directory, an app on
SQLite and the embedded Redis, seeded images, pools, a storage node under gunicorn, and the
baselines (`cp -r` + `openssl dgst`, `curl -T` to a minimal receiver)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid as uuidlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="pixelfox-bench-nodes-"))
os.environ["PIXELFOX_VAR_DIR"] = str(WORK / "var")
for key in ("DATABASE_URL", "REDIS_URL", "CACHE_HOST", "DB_HOST", "UPLOADS_DIR", "TMP_DIR"):
    os.environ.pop(key, None)
SECRET = "bench-replication-secret"  # noqa: S105  (a throwaway benchmark node)
LARGE_N = int(os.environ.get("BENCH_MOVE_IMAGES", "500"))
LARGE_SIZE = 2 * 1024 * 1024
SMALL_N = int(os.environ.get("BENCH_SMALL_IMAGES", "2000"))
SMALL_SIZE = 20 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_app():
    from flask_migrate import upgrade

    from pixelfox import create_app
    from pixelfox.services import pools

    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{WORK / 'moves.db'}",
            "UPLOADS_DIR": str(WORK / "a"),
            "TMP_DIR": str(WORK / "tmp"),
            "REPLICATION_SECRET": SECRET,
            "MOVE_MAX_CONCURRENT_PER_NODE": 4,
        }
    )
    with app.app_context():
        upgrade()
        pools.ensure_default_pool()
    return app


def seed(app, pool_id: int, count: int, size: int) -> Path:
    """Image rows + original files (random bytes) in one pool; returns its directory."""
    from pixelfox.extensions import db
    from pixelfox.models import Image, ImageCopy, StoragePool, User
    from pixelfox.services import accounts
    from pixelfox.storage import local

    with app.app_context():
        user = db.session.execute(db.select(User)).scalars().first() or accounts.create_user(
            "bench", "bench@example.org", "bench password"
        )
        pool = db.session.get(StoragePool, pool_id)
        rows = []
        for i in range(count):
            uid = str(uuidlib.uuid4())
            rel = f"original/2026/01/01/{uid}.jpg"
            path = Path(pool.base_path) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(size))
            _n, digest = local.hash_file(path)
            rows.append(
                Image(
                    uuid=uid,
                    share_link=uid.replace("-", "")[:10],
                    user_id=user.id,
                    stored_path=rel,
                    mime_type="image/jpeg",
                    size=size,
                    sha256=digest,
                    source_sha256=f"{pool_id}-{i}-{digest}"[:64],
                    status="complete",
                    storage_pool_id=pool.id,
                )
            )
        db.session.add_all(rows)
        db.session.flush()
        db.session.add_all(
            ImageCopy(image_id=r.id, pool_id=pool.id, status="verified") for r in rows
        )
        db.session.commit()
        pool.used_size = count * size
        db.session.commit()
        return Path(pool.base_path)


def add_pool(app, name: str, node: str, base: Path, url: str | None = None) -> int:
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool

    with app.app_context():
        pool = StoragePool(
            name=name,
            node_id=node,
            base_path=str(base),
            storage_tier="cold",
            upload_api_url=f"{url}/api/internal/upload" if url else None,
            public_base_url=url,
        )
        db.session.add(pool)
        db.session.commit()
        return pool.id


def baseline_copy(src: Path, dst: Path) -> float:
    t = time.perf_counter()
    subprocess.run(["cp", "-r", str(src / "original"), str(dst)], check=True)
    files = [str(p) for p in dst.rglob("*") if p.is_file()]
    for start in range(0, len(files), 200):
        subprocess.run(
            ["openssl", "dgst", "-sha256", *files[start : start + 200]],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return time.perf_counter() - t


class Receiver(BaseHTTPRequestHandler):
    """Minimal streaming receiver for `curl -T`: writes each PUT body to disk."""

    target: Path

    def do_PUT(self):  # noqa: N802
        left = int(self.headers["Content-Length"])
        with open(self.target / Path(self.path).name, "wb") as fh:
            while left:
                block = self.rfile.read(min(left, 1024 * 1024))
                if not block:
                    break
                fh.write(block)
                left -= len(block)
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def baseline_curl(src: Path, rounds: int = 3) -> float:
    """Median seconds of `rounds` runs of `curl -T` of every file under `src`."""
    return sorted(_curl_once(src) for _ in range(rounds))[rounds // 2]


def _curl_once(src: Path) -> float:
    target = Path(tempfile.mkdtemp(prefix="curl-received-", dir=WORK))
    Receiver.target = target
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    files = sorted(str(p) for p in src.rglob("*") if p.is_file())
    t = time.perf_counter()
    for start in range(0, len(files), 100):
        chunk = files[start : start + 100]
        subprocess.run(
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-H",
                "Expect:",
                "-T",
                "{" + ",".join(chunk) + "}",
                f"http://127.0.0.1:{server.server_port}/",
            ],
            check=True,
        )
    elapsed = time.perf_counter() - t
    server.shutdown()
    shutil.rmtree(target, ignore_errors=True)
    return elapsed


def start_node(app, node: str, base: Path):
    port = free_port()
    env = dict(
        os.environ,
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=app.config["REDIS_URL"],
        NODE_ID=node,
        UPLOADS_DIR=str(base),
        TMP_DIR=str(WORK / f"tmp-{node}"),
        REPLICATION_SECRET=SECRET,
        PUBLIC_DOMAIN=f"http://127.0.0.1:{port}",
    )
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    proc = subprocess.Popen(
        [gunicorn, "-w", "2", "-b", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import requests

    for _ in range(100):
        try:
            requests.get(f"http://127.0.0.1:{port}/api/v1/ping", timeout=2)
            break
        except requests.RequestException:
            time.sleep(0.2)
    return proc, f"http://127.0.0.1:{port}"
