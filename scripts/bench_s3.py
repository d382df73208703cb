"""Object-storage benchmarks (part of `make bench`), issue 13, against a real S3 server (Ceph
RADOS Gateway started by scripts/s3-start.sh for this run, as `make test` does):

1. Receiving a 12 MP JPEG upload into a bucket pool vs into a local pool (the web process's
   work: stream to a temp file while hashing, store, write the row); goal <= 1.3x.
2. Moving 500 images (~1 GB) from a local pool into a bucket through the move journal vs an
   `aws s3 cp --recursive`-equivalent boto3 upload of the same files in one process (ten
   transfers at once, the AWS CLI's default); goal <= 1.5x.
3. Processing an image that lives in the bucket (download, variants, upload) vs one on a local
   disk; goal: overhead <= 15 %.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_moves import run_move  # noqa: E402
from benchimages import make_12mp_jpeg  # noqa: E402
from benchlib import (  # noqa: E402
    LARGE_N,
    LARGE_SIZE,
    ROOT,
    WORK,
    add_pool,
    make_app,
    seed,
    start_node,
)

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
UPLOAD_ROUNDS = int(os.environ.get("BENCH_UPLOAD_ROUNDS", "10"))


def s3_pool(app, server, bucket: str) -> int:
    from pixelfox.services import heartbeat, poolform

    with app.app_context():
        pool = poolform.save_pool(None, server.pool_fields(bucket))
        heartbeat.beat()
        return pool.id


def distinct(src: Path, name: str) -> Path:
    """A copy of `src` with a few random bytes after the JPEG's end: no deduplication."""
    one = WORK / name
    one.write_bytes(src.read_bytes() + os.urandom(16))
    return one


def bench_processing(app, src: Path, local_id: int, s3_id: int) -> dict:
    """(3) Both phases of processing, local and bucket alternately, ROUNDS each."""
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool, User
    from pixelfox.services import processing, uploads

    times = {"local": [], "s3": []}
    with app.test_request_context():
        user = db.session.execute(db.select(User)).scalars().first()
        targets = {"local": db.session.get(StoragePool, local_id)}
        targets["s3"] = db.session.get(StoragePool, s3_id)
        for i in range(ROUNDS + 1):  # the first round warms connections and caches
            for kind, pool in targets.items() if i % 2 else reversed(targets.items()):
                with open(distinct(src, f"p{i}-{kind}.jpg"), "rb") as fh:
                    image = uploads.receive(fh, "12mp.jpg", user, "127.0.0.1", pool=pool).image
                t = time.perf_counter()
                outcome = processing.process(image.id)
                assert outcome == "ready", (outcome, kind, image.error)
                assert processing.finish(image.id) == "complete"
                if i:
                    times[kind].append(time.perf_counter() - t)
        db.session.remove()
    return {kind: statistics.median(values) for kind, values in times.items()}


def only_uploads_into(app, pool_id: int) -> None:
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool

    with app.app_context():
        for pool in db.session.execute(db.select(StoragePool)).scalars():
            pool.accepts_uploads = pool.id == pool_id
        db.session.commit()


def bench_upload(app, src: Path, local_id: int, s3_id: int, key: str) -> dict:
    """(1) `POST /api/v1/upload` of a 12 MP JPEG to the web process (gunicorn),
    into the local pool and into the bucket alternately, UPLOAD_ROUNDS each."""
    import requests

    from pixelfox import queues

    web, base = start_node(app, "local", Path(app.config["UPLOADS_DIR"]))
    times = {"local": [], "s3": []}
    try:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        targets = {"local": local_id, "s3": s3_id}
        for i in range(UPLOAD_ROUNDS + 1):  # the first round warms connections and caches
            for kind, pool_id in targets.items() if i % 2 else reversed(targets.items()):
                only_uploads_into(app, pool_id)
                body = distinct(src, f"u{i}-{kind}.jpg").read_bytes()
                t = time.perf_counter()
                resp = session.post(
                    f"{base}/api/v1/upload",
                    files={"file": ("12mp.jpg", body, "image/jpeg")},
                    timeout=60,
                )
                elapsed = time.perf_counter() - t
                assert resp.status_code == 201, resp.text
                if i:
                    times[kind].append(elapsed)
    finally:
        web.terminate()
        web.wait(timeout=10)
    with app.app_context():  # their processing is not what this measures
        queues.queue_for_node("local").empty()
    return {kind: statistics.median(values) for kind, values in times.items()}


def bare_put(server, bucket: str, src: Path) -> float:
    """What the store itself needs for the upload's bytes: a plain HTTP PUT (presigned, so
    nothing is hashed or signed per request), median of UPLOAD_ROUNDS."""
    import requests

    body = src.read_bytes()
    url = server.client().generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "bare-put"}, ExpiresIn=600
    )
    with requests.Session() as session:
        times = []
        for i in range(UPLOAD_ROUNDS + 1):
            t = time.perf_counter()
            session.put(url, data=body, timeout=60).raise_for_status()
            if i:
                times.append(time.perf_counter() - t)
    return statistics.median(times)


def baseline_boto3(server, bucket: str, src: Path) -> float:
    """`aws s3 cp --recursive` in one process: boto3's managed upload, 10 files at once."""
    client = server.client()
    files = sorted(p for p in src.rglob("*") if p.is_file())
    t = time.perf_counter()
    with ThreadPoolExecutor(10) as pool:
        list(
            pool.map(
                lambda p: client.upload_file(str(p), bucket, f"cp/{p.relative_to(src)}"), files
            )
        )
    return time.perf_counter() - t


def main() -> int:
    from tests import s3server

    print(f"\nObject-storage benchmarks ({os.cpu_count()} cores), work dir {WORK}")
    server = s3server.start(WORK / "s3")
    try:
        app = make_app()
        from pixelfox.services import accounts, heartbeat, settings

        bucket = server.new_bucket()
        s3_id = s3_pool(app, server, bucket)
        disk_id = add_pool(app, "disk", "local", WORK / "disk")
        with app.test_request_context():
            settings.update(
                {"upload_rate_limit_per_minute": 0, "upload_user_rate_limit_per_minute": 0}
            )
            user = accounts.create_user("bench", "bench@example.org", "bench password")
            key = accounts.rotate_api_key(user)
            heartbeat.beat()
        src = make_12mp_jpeg(WORK / "12mp.jpg")
        up = bench_upload(app, src, disk_id, s3_id, key)
        print(
            f"\n1. upload a 12 MP JPEG ({src.stat().st_size / 2**20:.1f} MiB) through the web "
            f"process, POST /api/v1/upload (median of {UPLOAD_ROUNDS})"
        )
        print(
            f"   into a bucket {up['s3'] * 1000:.0f} ms vs into a local pool "
            f"{up['local'] * 1000:.0f} ms — ratio {up['s3'] / up['local']:.2f} (goal <= 1.3)"
        )
        floor = bare_put(server, bucket, src)
        print(
            f"   (the store alone: a bare presigned PUT of the same bytes, no hashing, "
            f"{floor * 1000:.0f} ms)"
        )
        pr = bench_processing(app, src, disk_id, s3_id)

        src_id = add_pool(app, "move-src", "local", WORK / "move-src")
        moved = seed(app, src_id, LARGE_N, LARGE_SIZE)
        size_mb = LARGE_N * LARGE_SIZE / 2**20
        baseline = baseline_boto3(server, server.new_bucket(), moved)
        target = server.new_bucket()
        ours = run_move(app, src_id, s3_pool(app, server, target))
        assert len(server.keys(target)) == LARGE_N
        print(f"\n2. move {LARGE_N} images ({size_mb:.0f} MiB) from a local pool into a bucket")
        print(
            f"   ours {ours:.2f} s ({size_mb / ours:.0f} MiB/s) vs boto3 upload, 10 at once "
            f"{baseline:.2f} s ({size_mb / baseline:.0f} MiB/s) — ratio {ours / baseline:.2f} "
            "(goal <= 1.5)"
        )

        pr_local, pr_s3 = pr["local"], pr["s3"]
        print(f"\n3. process a 12 MP JPEG, both phases (median of {ROUNDS})")
        print(
            f"   in a bucket {pr_s3:.2f} s vs on a local disk {pr_local:.2f} s — overhead "
            f"{100 * (pr_s3 / pr_local - 1):+.1f} % (goal <= 15 %)"
        )
    finally:
        server.stop()
        shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
