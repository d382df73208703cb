"""Pool-move benchmarks (part of `make bench`).

1. 500 images (~1 GB) moved between two pools of one node vs `cp -r` + `openssl dgst -sha256`.
2. The same set pushed to another node over loopback vs `curl -T` of the same bytes to a
   minimal streaming receiver.
3. Per-image overhead: 2000 images of 20 KB moved within a node, images per second.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    LARGE_N,
    LARGE_SIZE,
    SMALL_N,
    SMALL_SIZE,
    WORK,
    add_pool,
    baseline_copy,
    baseline_curl,
    make_app,
    seed,
    start_node,
)


def run_move(app, source_id: int, target_id: int, node: str = "local") -> float:
    from rq import Queue, SimpleWorker

    from pixelfox.extensions import db, get_redis
    from pixelfox.models import StoragePool
    from pixelfox.queues import queue_name
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
        queue = Queue(queue_name(node), connection=get_redis())
        SimpleWorker([queue], connection=get_redis()).work(burst=True)
        elapsed = time.perf_counter() - t
        state = moves.progress(moves.refresh_counts(move.id))
        assert state["status"] == "done" and state["done"] == state["total"], state
    return elapsed


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
