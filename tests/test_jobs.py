"""Jobs: idempotent processing, crash recovery with real workers, the sweeper, the scheduler."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

from tests.conftest import (
    big_jpeg,
    files_under,
    fixture_path,
    run_jobs,
    start_rq_worker,
    upload,
)


def snapshot(app, uuid):
    """Rows and files of one image, for before/after comparisons."""
    from pixelfox.extensions import db
    from pixelfox.models import Image

    with app.app_context():
        image = db.session.execute(db.select(Image).where(Image.uuid == uuid)).scalar_one()
        rows = sorted((v.kind, v.stored_path, v.size, v.sha256) for v in image.variants)
        state = (image.status, image.size, image.sha256, image.width, image.height)
    files = [(p.name, p.stat().st_size) for p in files_under(app.config["UPLOADS_DIR"])]
    return state, rows, files


def assert_rows_match_files(app, uuid):
    """The DB describes exactly the bytes on disk: size and SHA-256 of every file."""
    from pixelfox.extensions import db
    from pixelfox.models import Image
    from pixelfox.storage import local, paths

    with app.app_context():
        image = db.session.execute(db.select(Image).where(Image.uuid == uuid)).scalar_one()
        pairs = [(image.stored_path, image.size, image.sha256)]
        pairs += [(v.stored_path, v.size, v.sha256) for v in image.variants]
        for rel, size, digest in pairs:
            assert local.hash_file(paths.resolve(image.pool.base_path, rel)) == (size, digest)


def image_status(app, uuid) -> str:
    from pixelfox.extensions import db
    from pixelfox.models import Image

    with app.app_context():
        return db.session.execute(db.select(Image.status).where(Image.uuid == uuid)).scalar()


def test_processing_twice_gives_the_same_state(app, client, auth):
    from pixelfox.jobs.images import process_image

    auth.register()
    uuid = upload(client, fixture_path("photo.jpg")).get_json()["image_uuid"]
    run_jobs(app)
    first = snapshot(app, uuid)
    assert first[0][0] == "complete"
    with app.app_context():
        from pixelfox.services import images

        assert process_image(images.by_uuid(uuid).id) == "complete"
    assert snapshot(app, uuid) == first
    assert not [p for p in files_under(app.config["UPLOADS_DIR"]) if p.suffix == ".part"]


def test_crash_half_way_converges_on_rerun(app, client, auth):
    """State after a crash between writing files and committing rows: some variant files
    written, rows missing, status `processing`, a stray temp file. Re-running converges."""
    from pixelfox.extensions import db
    from pixelfox.jobs.images import process_image
    from pixelfox.models import Image, ImageVariant

    auth.register()
    uuid = upload(client, fixture_path("photo.webp")).get_json()["image_uuid"]
    run_jobs(app)
    done = snapshot(app, uuid)
    with app.app_context():
        image = db.session.execute(db.select(Image).where(Image.uuid == uuid)).scalar_one()
        db.session.execute(db.delete(ImageVariant).where(ImageVariant.kind.like("thumbnail_%")))
        image.status = "processing"
        db.session.commit()
        image_id = image.id
    variants = [p for p in files_under(app.config["UPLOADS_DIR"]) if "variants" in p.parts]
    variants[0].unlink()
    (variants[1].parent / f".{variants[1].name}.abc.part").write_bytes(b"half")
    with app.app_context():
        assert process_image(image_id) == "ready"  # the thumbnails; phase 2 is queued
    run_jobs(app)
    state, rows, files = snapshot(app, uuid)
    assert state[0] == "complete" and state[1:] == done[0][1:]
    assert [(k, p) for k, p, _, _ in rows] == [(k, p) for k, p, _, _ in done[1]]
    assert sorted(n for n, _ in files if not n.endswith(".part")) == sorted(n for n, _ in done[2])
    assert_rows_match_files(app, uuid)
    # The stray temp file is the sweeper's: nobody holds its lock, so it goes.
    with app.app_context():
        from pixelfox.services import pools

        assert pools.remove_dead_temp_files(max_age=-1) == 1
    assert not [p for p in files_under(app.config["UPLOADS_DIR"]) if p.suffix == ".part"]


def test_real_worker_killed_mid_job_is_recovered_by_the_sweeper(app, client, auth, tmp_path):
    from pixelfox.models.base import utcnow
    from pixelfox.services import maintenance

    auth.register()
    uuid = upload(client, big_jpeg(tmp_path / "big.jpg")).get_json()["image_uuid"]
    worker = start_rq_worker(app, log_path=tmp_path / "worker.log")
    try:
        deadline = time.time() + 60
        while image_status(app, uuid) != "processing" and time.time() < deadline:
            time.sleep(0.05)
        assert image_status(app, uuid) == "processing", (tmp_path / "worker.log").read_text()
        time.sleep(0.3)  # somewhere inside the pipeline
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert image_status(app, uuid) == "processing"
    with app.app_context():
        # Right now the job still looks alive: nothing is requeued too early.
        assert maintenance.sweep()["requeued"] == 0
        # Eleven minutes later its heartbeat is stale: the sweeper requeues it.
        assert maintenance.sweep(now=utcnow() + timedelta(minutes=11))["requeued"] == 1
    worker = start_rq_worker(app, "--burst", log_path=tmp_path / "worker2.log")
    assert worker.wait(timeout=120) == 0
    state, rows, files = snapshot(app, uuid)
    assert state[0] == "complete"
    assert len(rows) == 8
    assert_rows_match_files(app, uuid)
    names = [n for n, _ in files]
    assert len(names) == len(set(names)) == 1 + 8  # original + 8 variants, each once
    with app.app_context():
        from pixelfox.services import pools

        assert pools.remove_dead_temp_files(max_age=-1) >= 0
    assert not [p for p in files_under(app.config["UPLOADS_DIR"]) if p.suffix == ".part"]


def test_sweeper_requeues_pending_images_after_a_redis_flush(app, client, auth, redis):
    from pixelfox.models.base import utcnow
    from pixelfox.services import maintenance

    auth.register()
    uuid = upload(client, fixture_path("tiny.png")).get_json()["image_uuid"]
    redis.flushdb()  # the queued job is gone
    assert run_jobs(app) == 0
    with app.app_context():
        assert maintenance.sweep()["requeued"] == 0  # still within its grace period
        assert maintenance.sweep(now=utcnow() + timedelta(minutes=3))["requeued"] == 1
        assert maintenance.sweep(now=utcnow() + timedelta(minutes=3))["requeued"] == 0
    assert run_jobs(app) == 1
    assert image_status(app, uuid) == "complete"


def test_last_failed_attempt_marks_the_image_failed(app, client, auth):
    """A job that keeps failing (here: variants/ cannot be created) ends `failed` with a
    message after its last attempt, not stuck in `processing`."""
    from pathlib import Path

    from rq import Queue, SimpleWorker
    from rq.registry import FailedJobRegistry

    from pixelfox.extensions import get_redis

    auth.register()
    uuid = upload(client, fixture_path("tiny.png")).get_json()["image_uuid"]
    with app.app_context():
        redis = get_redis()
        queue = Queue("node-local", connection=redis)
        job = queue.jobs[0]
        job.retries_left = 0
        job.save()
    (Path(app.config["UPLOADS_DIR"]) / "variants").write_text("a file, not a directory")
    with app.app_context():
        SimpleWorker([queue], connection=redis).work(burst=True)
        assert FailedJobRegistry(queue=queue).count == 1
    assert image_status(app, uuid) == "failed"


def test_scheduler_registration_is_idempotent(app):
    from pixelfox import queues
    from pixelfox.jobs import schedule

    runner = app.test_cli_runner()
    for _ in range(5):
        result = runner.invoke(args=["scheduler", "--sync-only"])
        assert result.exit_code == 0, result.output
    with app.app_context():
        scheduler = queues.periodic_scheduler("local")
        ids = [job.id for job in scheduler.get_jobs()]
    assert len(ids) == 7 and len(set(ids)) == 7
    names = {i.split("-")[1] for i in ids}
    assert names == {
        "pool_stats",
        "sweeper",
        "heartbeat",
        "flush_views",
        "repair",
        "scrub",
        "tiering",
    }
    # A changed definition replaces the old job instead of adding a second one.
    with app.app_context():
        changed = [schedule.Periodic("sweeper", "pixelfox.jobs.periodic.sweeper", 30, "local")]
        result = schedule.sync(scheduler, changed)
        assert len(result["removed"]) == 7 and len(result["added"]) == 1
        assert len(list(scheduler.get_jobs())) == 1


def test_pool_stats_recomputes_used_size(app, client, auth):
    from pixelfox.extensions import db
    from pixelfox.jobs.periodic import pool_stats
    from pixelfox.models import StoragePool

    auth.register()
    upload(client, fixture_path("photo.webp"))
    run_jobs(app)
    on_disk = sum(p.stat().st_size for p in files_under(app.config["UPLOADS_DIR"]))
    with app.app_context():
        db.session.execute(db.update(StoragePool).values(used_size=123))
        db.session.commit()
        pool_stats()
        used = db.session.execute(db.select(StoragePool.used_size)).scalar()
    assert used == on_disk
