"""Pool-move benchmarks (part of `make bench`).

1. 500 images (~1 GB) moved between two pools of one node vs `cp -r` + `openssl dgst -sha256`.
2. The same set pushed to another node over loopback vs `curl -T` of the same bytes to a
   minimal streaming receiver.
3. Per-image overhead: 2000 images of 20 KB moved within a node, images per second.
"""

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
WORK = Path(tempfile.mkdtemp(prefix="pixelfox-bench-moves-"))
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
    from pixelfox.models import Image, StoragePool, User
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


def run_move(app, source_id: int, target_id: int, node: str = "local") -> float:
    from rq import Queue, SimpleWorker

    from pixelfox.extensions import db, get_redis
    from pixelfox.models import StoragePool
    from pixelfox.services import heartbeat, moves

    with app.app_context():
        heartbeat.beat()
        t = time.perf_counter()
        move = moves.start(
            db.session.get(StoragePool, source_id),
            db.session.get(StoragePool, target_id),
            None,
            False,
            force=True,
        )
        queue = Queue(f"node-{node}", connection=get_redis())
        SimpleWorker([queue], connection=get_redis()).work(burst=True)
        elapsed = time.perf_counter() - t
        state = moves.progress(moves.refresh_counts(move.id))
        assert state["status"] == "done" and state["done"] == state["total"], state
    return elapsed


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


def baseline_curl(src: Path) -> float:
    target = WORK / "curl-received"
    target.mkdir()
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


def main() -> int:
    print(f"\nPool-move benchmarks ({os.cpu_count()} cores), work dir {WORK}")
    app = make_app()
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool

    with app.app_context():
        default_id = db.session.execute(db.select(StoragePool.id)).scalar()
    # 1. Within one node.
    src = seed(app, default_id, LARGE_N, LARGE_SIZE)
    size_mb = LARGE_N * LARGE_SIZE / 2**20
    base = baseline_copy(src, WORK / "cp-target")
    b_id = add_pool(app, "b", "local", WORK / "b")
    ours = run_move(app, default_id, b_id)
    shutil.rmtree(WORK / "cp-target")
    print(f"\n1. move {LARGE_N} images ({size_mb:.0f} MiB) between pools of one node")
    print(
        f"   ours {ours:.2f} s ({size_mb / ours:.0f} MiB/s) vs cp -r + openssl dgst -sha256 "
        f"{base:.2f} s — ratio {ours / base:.2f} (goal <= 1.5)"
    )
    # 1b. Within one node, onto another filesystem (tmpfs): a real copy, not a link.
    shm = Path("/dev/shm")
    if shm.is_dir() and os.stat(shm).st_dev != os.stat(WORK).st_dev:
        far = Path(tempfile.mkdtemp(prefix="pixelfox-bench-", dir=shm))
        try:
            base_far = baseline_copy(WORK / "b", far / "cp-target")
            shutil.rmtree(far / "cp-target")
            far_id = add_pool(app, "far", "local", far / "pool")
            ours_far = run_move(app, b_id, far_id)
            back = run_move(app, far_id, b_id)  # back home for the next benchmark
        finally:
            shutil.rmtree(far, ignore_errors=True)
        print("\n1b. the same images onto another filesystem of the node (tmpfs): a copy")
        print(
            f"   ours {ours_far:.2f} s vs cp -r + openssl dgst -sha256 {base_far:.2f} s — "
            f"ratio {ours_far / base_far:.2f}   (and back to disk: {back:.2f} s)"
        )
    # 2. To another node over loopback.
    s1_dir = WORK / "s1"
    proc, url = start_node(app, "s1", s1_dir)
    try:
        s1_id = add_pool(app, "s1", "s1", s1_dir, url)
        curl = baseline_curl(WORK / "b")
        push = run_move(app, b_id, s1_id)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"\n2. push the same {LARGE_N} images to another node over loopback")
    print(
        f"   ours {push:.2f} s ({size_mb / push:.0f} MiB/s) vs curl -T to a minimal "
        f"streaming receiver {curl:.2f} s — ratio {push / curl:.2f} (goal <= 2.0)"
    )
    # 3. Small images.
    small_src = add_pool(app, "small-a", "local", WORK / "small-a")
    small_dst = add_pool(app, "small-b", "local", WORK / "small-b")
    seed(app, small_src, SMALL_N, SMALL_SIZE)
    small = run_move(app, small_src, small_dst)
    print(f"\n3. per-image overhead: {SMALL_N} images of 20 KB within one node")
    print(f"   {small:.2f} s — {SMALL_N / small:.0f} images/s (goal >= 100)")
    shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
