"""Cluster benchmarks (part of `make bench`), issue 12:

1. Raising the replication factor 1 → 2 for 500 images (~1 GB): every image pushed to a pool
   on another node (gunicorn, over loopback), vs `curl -T` of the same bytes.
2. Repair after a node is lost: the replicas that lived there (~1 GB) made again on a third
   node, vs the same baseline.
3. Scrub at its default rate (5 MB/s): CPU time per wall-clock second (goal < 10 % of a core).
4. Placement with 50 pools: milliseconds per direct-upload session.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    LARGE_N,
    LARGE_SIZE,
    WORK,
    baseline_curl,
    make_app,
    seed,
    start_node,
)


def replicate_all(app, node: str = "local") -> float:
    """One repair pass, then the replicate jobs it queued, run here by RQ's SimpleWorker (as
    the move benchmark does: one worker, whose jobs push a few images at once). Returns the
    seconds it took."""
    from rq import Queue, SimpleWorker

    from pixelfox.extensions import get_redis
    from pixelfox.queues import queue_name
    from pixelfox.services import copies, replicas

    with app.app_context():
        t = time.perf_counter()
        replicas.repair_pass()
        queue = Queue(queue_name(node), connection=get_redis())
        SimpleWorker([queue], connection=get_redis()).work(burst=True)
        elapsed = time.perf_counter() - t
        d = copies.durability()
        assert d["fully_replicated"] == d["images"], d
    return elapsed


def disk_fsync_seconds(size_mb: float) -> float:
    """How long the disk takes to write this much durably (what every verified copy needs)."""
    import subprocess

    target = WORK / "dd-fsync.bin"
    t = time.perf_counter()
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={int(size_mb)}", "conv=fsync"],
        check=True,
        capture_output=True,
    )
    elapsed = time.perf_counter() - t
    target.unlink()
    return elapsed


def touch(app, *node_ids: str) -> None:
    from pixelfox.services import nodes

    with app.app_context():
        for node in node_ids:
            nodes.touch(node)


def scrub_cpu(app) -> tuple[float, float, int]:
    """(CPU seconds per second, MB/s, bytes) of 20 s of scrubbing at the default rate."""
    from pixelfox.services import scrub

    with app.app_context():
        cpu, wall = time.process_time(), time.perf_counter()
        result = scrub.run(budget_seconds=20)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / wall, result["bytes"] / wall / 2**20, result["bytes"]


def placement_ms(app) -> float:
    """Median milliseconds of a direct-upload session with 50 pools on 50 nodes."""
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool, User
    from pixelfox.services import heartbeat, uploads

    with app.app_context():
        for i in range(50):
            db.session.add(
                StoragePool(
                    name=f"p{i:02d}",
                    node_id=f"n{i:02d}",
                    base_path=str(WORK / f"p{i:02d}"),
                    upload_api_url=f"http://127.0.0.1:9/n{i}/api/internal/upload",
                    storage_tier="hot",
                    max_size=2**40,
                    used_size=i * 2**30,
                )
            )
        db.session.commit()
        heartbeat.beat()
        user = db.session.execute(db.select(User)).scalars().first()
    times = []
    for _ in range(200):
        with app.test_request_context():
            t = time.perf_counter()
            uploads.open_session(user, 1_000_000)
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> int:
    print(f"\nCluster benchmarks ({os.cpu_count()} cores), work dir {WORK}")
    app = make_app()
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool
    from pixelfox.services import nodes, settings

    with app.app_context():
        local_id = db.session.execute(db.select(StoragePool.id)).scalar()
        settings.update({"repair_max_mb_per_second": 0})  # the mechanism, not the throttle
    src = seed(app, local_id, LARGE_N, LARGE_SIZE)
    size_mb = LARGE_N * LARGE_SIZE / 2**20
    curl = baseline_curl(src)
    durable = disk_fsync_seconds(size_mb)
    print(
        f"\n   reference: the disk writes {size_mb:.0f} MiB with fsync in {durable:.2f} s "
        f"(dd conv=fsync); curl -T to a receiver that neither hashes nor fsyncs: {curl:.2f} s"
    )

    # 1. Replication factor 1 → 2 (s1 makes its own pool when it starts).
    s1_proc, _s1_url = start_node(app, "s1", WORK / "s1")
    s2_proc = None
    try:
        touch(app, "local", "s1")
        with app.app_context():
            settings.update({"replication_factor": 2})
        rf2 = replicate_all(app)
        print(f"\n1. replication factor 1 → 2: {LARGE_N} images ({size_mb:.0f} MiB) to a node")
        print(
            f"   ours {rf2:.2f} s ({size_mb / rf2:.0f} MiB/s, one worker) vs curl -T "
            f"{curl:.2f} s — ratio {rf2 / curl:.2f} (goal <= 1.5)"
        )

        # 2. s1 is lost: repair makes the replicas again, on s2.
        s1_proc.terminate()
        s1_proc.wait(timeout=10)
        s2_proc, _s2_url = start_node(app, "s2", WORK / "s2")
        touch(app, "local", "s2")
        with app.app_context():
            nodes.mark_lost("s1", "s1")
        repair = replicate_all(app)
        print(f"\n2. repair after a node is lost: {size_mb:.0f} MiB of replicas made again")
        print(
            f"   ours {repair:.2f} s ({size_mb / repair:.0f} MiB/s) vs curl -T {curl:.2f} s — "
            f"ratio {repair / curl:.2f} (goal <= 1.5)"
        )
    finally:
        for proc in (s1_proc, s2_proc):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)

    # 3. Scrub at its default rate.
    share, mbs, nbytes = scrub_cpu(app)
    print("\n3. scrub at the default 5 MB/s for 20 s")
    print(
        f"   {mbs:.1f} MB/s read, {nbytes / 2**20:.0f} MiB; CPU {100 * share:.1f} % of one core "
        "(goal < 10 %)"
    )

    # 4. Placement with 50 pools.
    ms = placement_ms(app)
    print("\n4. direct-upload session with 50 pools on 50 nodes (placement + token)")
    print(f"   median {ms:.2f} ms per session (goal < 5 ms)")
    shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
