"""Admin page times with a big database (part of `make bench`).

Seeds a fresh MariaDB database (BENCH_DB_URL's server, default root@127.0.0.1:3306) with
100 000 images (8 variants each), 1 000 users, 20 pools and a few finished moves, then
times every admin page and its common searches/filters through the app (median of 5 warm
requests each). Goal: every page under 200 ms. The database is dropped afterwards.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
import uuid as uuidlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="pixelfox-bench-admin-"))
os.environ["PIXELFOX_VAR_DIR"] = str(WORK / "var")
for key in ("DATABASE_URL", "REDIS_URL", "CACHE_HOST", "DB_HOST", "UPLOADS_DIR", "TMP_DIR"):
    os.environ.pop(key, None)
SERVER = os.environ.get("BENCH_DB_URL", "mysql+pymysql://root@127.0.0.1:3306")
DB_NAME = f"pixelfox_bench_{os.getpid()}"
N_IMAGES = int(os.environ.get("BENCH_ADMIN_IMAGES", "100000"))
N_USERS = 1000
N_POOLS = 20
GOAL_MS = 200
ROUNDS = 5
KINDS = [
    ("webp", "webp", ".webp"),
    ("avif", "avif", ".avif"),
    ("thumbnail_small_original", "jpeg", "_small.jpg"),
    ("thumbnail_small_webp", "webp", "_small.webp"),
    ("thumbnail_small_avif", "avif", "_small.avif"),
    ("thumbnail_medium_original", "jpeg", "_medium.jpg"),
    ("thumbnail_medium_webp", "webp", "_medium.webp"),
    ("thumbnail_medium_avif", "avif", "_medium.avif"),
]


def seed(app) -> dict:
    from pixelfox.extensions import db
    from pixelfox.models import Image, ImageVariant, PoolMove, StoragePool, User
    from pixelfox.services import accounts

    rng = random.Random(42)
    now = datetime.now(UTC).replace(tzinfo=None)
    t0 = time.perf_counter()
    with app.app_context():
        admin = accounts.create_user("admin", "admin@example.org", "bench admin 1", "admin")
        admin_id, pw = admin.id, admin.password_hash
        db.session.execute(
            db.insert(User),
            [
                {
                    "username": f"user{i}",
                    "email": f"user{i}@example.org",
                    "password_hash": pw,
                    "role": "user",
                    "status": "active" if i % 50 else "disabled",
                    "created_at": now - timedelta(days=i % 400),
                }
                for i in range(N_USERS)
            ],
        )
        db.session.execute(
            db.insert(StoragePool),
            [
                {
                    "name": f"pool{i:02d}",
                    "storage_type": "local",
                    "storage_tier": ["hot", "warm", "cold", "archive"][i % 4],
                    "base_path": str(WORK / f"pool{i:02d}"),
                    "public_base_url": f"http://127.0.0.1:{5000 + i}",
                    "upload_api_url": None,
                    "node_id": f"s{i % 5}",
                    "max_size": 10 * 1024**4,
                    "used_size": 0,
                    "priority": 100 + i,
                    "is_active": True,
                    "is_default": i == 0,
                    "accepts_uploads": True,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(N_POOLS)
            ],
        )
        db.session.commit()
        user_ids = db.session.execute(db.select(User.id)).scalars().all()
        pool_ids = db.session.execute(db.select(StoragePool.id)).scalars().all()
        chunk = 5000
        for start in range(0, N_IMAGES, chunk):
            rows = []
            for i in range(start, min(start + chunk, N_IMAGES)):
                u = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
                created = now - timedelta(seconds=rng.randrange(0, 60 * 86400))
                day = created.strftime("%Y/%m/%d")
                status = "failed" if i % 100 == 0 else "complete"
                rows.append(
                    {
                        "uuid": u,
                        "share_link": f"{i:010d}",
                        "user_id": rng.choice(user_ids),
                        "title": f"holiday photo {i}",
                        "original_filename": f"IMG_{i}.jpg",
                        "stored_path": f"original/{day}/{u}.jpg",
                        "mime_type": "image/jpeg",
                        "size": 500_000 + i % 1000,
                        "width": 1600,
                        "height": 1200,
                        "sha256": f"{i:064x}",
                        "source_sha256": f"{i:064x}",
                        "status": status,
                        "error": "The image could not be processed."
                        if status == "failed"
                        else None,
                        "visibility": ["public", "unlisted", "private"][i % 3],
                        "storage_pool_id": pool_ids[i % N_POOLS],
                        "view_count": 0,
                        "processed_at": created,
                        "created_at": created,
                        "updated_at": created,
                    }
                )
            db.session.execute(db.insert(Image), rows)
            db.session.commit()
        for start in range(0, N_IMAGES, chunk):
            images = db.session.execute(
                db.select(Image.id, Image.uuid, Image.stored_path, Image.storage_pool_id)
                .where(Image.status == "complete")
                .order_by(Image.id)
                .offset(start)
                .limit(chunk)
            ).all()
            if not images:
                break
            variants = []
            for image_id, u, path, pool_id in images:
                base = path.replace("original/", "variants/").rsplit("/", 1)[0]
                for kind, fmt, ext in KINDS:
                    variants.append(
                        {
                            "image_id": image_id,
                            "kind": kind,
                            "format": fmt,
                            "width": 500,
                            "height": 375,
                            "size": 40_000,
                            "sha256": "0" * 64,
                            "stored_path": f"{base}/{u}{ext}",
                            "storage_pool_id": pool_id,
                        }
                    )
            db.session.execute(db.insert(ImageVariant), variants)
            db.session.commit()
        for i in range(5):
            db.session.add(
                PoolMove(
                    source_pool_id=pool_ids[i],
                    target_pool_id=pool_ids[i + 1],
                    status="done",
                    total=1000,
                    done=1000,
                    started_at=now,
                    finished_at=now,
                )
            )
        db.session.commit()
        from pixelfox.services import maintenance

        maintenance.pool_stats()
    return {"seconds": time.perf_counter() - t0, "admin_id": admin_id, "pools": pool_ids}


def time_pages(app, admin_id: int, pools: list[int]) -> list[tuple[str, float, float, int]]:
    from pixelfox.extensions import db
    from pixelfox.models import PoolMove

    with app.app_context():
        move_id = db.session.execute(db.select(db.func.max(PoolMove.id))).scalar()
    client = app.test_client()
    with client.session_transaction() as sess:
        sess["_user_id"] = str(admin_id)
        sess["_fresh"] = True
    pages = [
        ("/admin/", {}),
        ("/admin/", {"HX-Request": "true"}),
        ("/admin/storage", {}),
        ("/admin/storage/health", {"HX-Request": "true"}),
        (f"/admin/storage/move/{pools[3]}?target_pool_id={pools[4]}", {}),
        ("/admin/moves", {}),
        (f"/admin/moves/{move_id}", {}),
        ("/admin/regen", {}),
        ("/admin/nodes", {}),
        ("/admin/queues", {}),
        ("/admin/settings", {}),
        ("/admin/users", {}),
        ("/admin/users?q=user77", {}),
        ("/admin/users?status=disabled", {}),
        ("/admin/images", {}),
        ("/admin/images?page=200", {}),
        ("/admin/images?q=holiday+photo+4242", {}),
        ("/admin/images?q=nothing-matches-this", {}),
        (f"/admin/images?pool={pools[7]}&status=failed", {}),
        ("/admin/images?status=failed", {}),
        ("/admin/images?user=user500", {}),
        ("/admin/images?visibility=private", {}),
    ]
    results = []
    for url, headers in pages:
        resp = client.get(url, headers=headers)
        assert resp.status_code == 200, (url, resp.status_code)
        times = []
        for _ in range(ROUNDS):
            t = time.perf_counter()
            resp = client.get(url, headers=headers)
            resp.get_data()
            times.append((time.perf_counter() - t) * 1000)
        label = url + (" (HTMX)" if headers else "")
        results.append((label, statistics.median(times), max(times), resp.status_code))
    return results


def _log_slow_sql(app, ms: float = 15) -> None:
    """BENCH_SLOW_SQL=1: print every statement slower than `ms` (to find missing indexes)."""
    from sqlalchemy import event

    from pixelfox.extensions import db

    with app.app_context():
        engine = db.engine

    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn, cursor, statement, params, context, many):
        conn.info["t"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _end(conn, cursor, statement, params, context, many):
        took = (time.perf_counter() - conn.info.pop("t")) * 1000
        if took > ms:
            print(f"      slow SQL {took:.0f} ms: {' '.join(statement.split())[:300]}")


def main() -> int:
    import sqlalchemy as sa
    from flask_migrate import upgrade

    from pixelfox import create_app

    engine = sa.create_engine(SERVER + "/")
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{DB_NAME}` CHARACTER SET utf8mb4"))
    try:
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": f"{SERVER}/{DB_NAME}?charset=utf8mb4",
                "UPLOADS_DIR": str(WORK / "uploads"),
                "TMP_DIR": str(WORK / "tmp"),
                "NODE_ID": "s0",
            }
        )
        with app.app_context():
            upgrade()
        print(f"Admin pages with {N_IMAGES} images, {N_USERS} users, {N_POOLS} pools (MariaDB)")
        s = seed(app)
        print(f"   seeded in {s['seconds']:.0f} s")
        if os.environ.get("BENCH_SLOW_SQL"):
            _log_slow_sql(app)
        results = time_pages(app, s["admin_id"], s["pools"])
        worst = 0.0
        for label, median, peak, _status in results:
            worst = max(worst, median)
            flag = "" if median < GOAL_MS else "   <-- over the goal"
            print(f"   {label:<58} median {median:6.1f} ms   max {peak:6.1f} ms{flag}")
        print(
            f"   slowest median {worst:.1f} ms  "
            f"(goal < {GOAL_MS} ms per page: {'met' if worst < GOAL_MS else 'MISSED'})"
        )
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{DB_NAME}`"))
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
