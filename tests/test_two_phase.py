"""First thumbnails in a second (issue 14): processing in two phases. Phase 1 publishes the
thumbnails (from a JPEG decoded at the scale they need) and goes ahead of queued work;
phase 2 makes the full-size WebP/AVIF and the clean original."""

from __future__ import annotations

import re
from datetime import timedelta

from tests.conftest import big_jpeg, fixture_path, run_jobs, upload


def one_job(app, node="local") -> str:
    """Run exactly the job at the head of a node's queue; returns its id."""
    from rq import Queue, SimpleWorker

    from pixelfox.extensions import get_redis

    with app.app_context():
        queue = Queue(f"node-{node}", connection=get_redis())
        head = queue.job_ids[0]
        SimpleWorker([queue], connection=get_redis()).work(burst=True, max_jobs=1)
    return head


def row(app, uuid):
    from pixelfox.extensions import db
    from pixelfox.models import Image

    with app.app_context():
        db.session.remove()
        image = db.session.execute(db.select(Image).where(Image.uuid == uuid)).scalar_one()
        return image, sorted(v.kind for v in image.variants)


def test_phase_one_publishes_the_thumbnails_then_phase_two_completes(app, client, auth, tmp_path):
    auth.register()
    uuid = upload(client, big_jpeg(tmp_path / "big.jpg")).get_json()["image_uuid"]
    assert one_job(app).startswith("process-image-")
    image, kinds = row(app, uuid)
    assert image.status == "processing" and image.ready_at is not None
    assert kinds == [
        f"thumbnail_{s}_{f}" for s in ("medium", "small") for f in ("avif", "original", "webp")
    ]
    # Decoded at a quarter of its size for the thumbnails, yet the full size is recorded,
    # upright (the photo's EXIF turns it by 90°).
    assert (image.width, image.height) == (2832, 4240)
    status = client.get(f"/api/v1/images/{uuid}/status").get_json()
    assert status["ready"] is True and status["complete"] is False
    assert sorted(status["variants"]) == kinds
    # Anyone with the link sees the thumbnails at once (final, cacheable) — not yet the
    # original, which still carries its EXIF until phase 2.
    anonymous = app.test_client()
    page = anonymous.get(f"/image/{uuid}").get_data(as_text=True)
    assert 'data-ready="true"' in page and 'hx-trigger="every 3s"' in page
    assert re.search(r'<source type="image/avif" srcset="[^"]+_medium\.avif">', page)
    assert re.search(r'<source type="image/webp" srcset="[^"]+_medium\.webp">', page)
    assert re.search(r'<img class="preview" src="[^"]+_medium\.jpg" width="500" height="749"', page)
    medium = re.search(r'srcset="http://127.0.0.1:4000(/uploads/[^"]+_medium\.avif)"', page).group(
        1
    )
    got = anonymous.get(medium)
    assert got.status_code == 200 and "immutable" in got.headers["Cache-Control"]
    assert anonymous.get(f"/uploads/{image.stored_path}").status_code == 404
    assert "Making the full-size WebP and AVIF" in page

    assert one_job(app).startswith("finish-image-")
    image, kinds = row(app, uuid)
    assert image.status == "complete" and {"webp", "avif"} <= set(kinds) and len(kinds) == 8
    assert anonymous.get(f"/uploads/{image.stored_path}").status_code == 200
    fragment = anonymous.get(f"/image/{uuid}/status").get_data(as_text=True)
    assert "hx-trigger" not in fragment  # polling stops once processing ended


def test_new_uploads_go_ahead_of_queued_full_size_work(app, client, auth):
    from rq import Queue

    from pixelfox.extensions import get_redis

    auth.register()
    first = [
        upload(client, fixture_path(n)).get_json()["image_uuid"]
        for n in ("photo.jpg", "photo.webp")
    ]
    for _ in first:
        assert one_job(app).startswith("process-image-")  # each queues its phase 2 behind
    late = upload(client, fixture_path("alpha.png")).get_json()["image_uuid"]
    with app.app_context():
        ids = Queue("node-local", connection=get_redis()).job_ids
    assert ids[0] == f"process-image-{late}"  # ahead of the full-size work queued earlier
    assert sorted(ids[1:]) == sorted(f"finish-image-{u}" for u in first)
    one_job(app)
    assert row(app, late)[0].ready_at is not None
    run_jobs(app)
    assert all(row(app, u)[0].status == "complete" for u in [*first, late])


def test_a_lost_phase_two_is_queued_again_by_the_sweeper(app, client, auth, redis):
    from pixelfox.models.base import utcnow
    from pixelfox.services import maintenance

    auth.register()
    uuid = upload(client, fixture_path("photo.jpg")).get_json()["image_uuid"]
    one_job(app)  # phase 1
    redis.flushdb()  # phase 2's job is gone
    with app.app_context():
        assert maintenance.sweep()["requeued"] == 0  # not yet: it may still be on its way
        assert maintenance.sweep(now=utcnow() + timedelta(minutes=11))["requeued"] == 1
        from rq import Queue

        from pixelfox.extensions import get_redis

        assert Queue("node-local", connection=get_redis()).job_ids == [f"finish-image-{uuid}"]
    run_jobs(app)
    image, kinds = row(app, uuid)
    assert image.status == "complete" and len(kinds) == 8


def test_regenerating_goes_through_both_phases(app, client, auth):
    from pixelfox.extensions import db
    from pixelfox.models import Image
    from pixelfox.services import regen

    auth.register()
    uuid = upload(client, fixture_path("photo.jpg")).get_json()["image_uuid"]
    run_jobs(app)
    before, _kinds = row(app, uuid)
    with app.app_context():
        run = regen.start(None, "all", None)
        run_id = run.id
    run_jobs(app)  # planner → batch (phase 1, queuing phase 2) → phase 2
    image, kinds = row(app, uuid)
    assert image.status == "complete" and len(kinds) == 8
    assert image.processed_at > before.processed_at and image.ready_at > before.ready_at
    with app.app_context():
        from pixelfox.models import RegenRun

        run = db.session.get(RegenRun, run_id)
        assert regen.maybe_finish(run) and regen.progress(run)["done"] == 1
        assert db.session.get(Image, image.id).status == "complete"


def test_thumbnails_of_a_big_jpeg_come_from_a_scaled_decode(tmp_path):
    from pixelfox.imaging.variants import Target, render

    src = big_jpeg(tmp_path / "big.jpg")
    target = Target("thumbnail_medium_webp", "medium", "webp", tmp_path / "out" / "m.webp")
    result = render(src, "jpeg", [target], tmp_path / ".tmp", strip_original=False,
                    decode_hint="500x500")  # fmt: skip
    result.commit()
    assert result.scaled and result.rotated
    assert (result.width, result.height) == (2832, 4240)  # the full size, upright
    (medium,) = result.variants
    assert (medium.width, medium.height) == (500, 749)
    assert (tmp_path / "out" / "m.webp").read_bytes()[8:12] == b"WEBP"
    # Without the hint (phase 2's full-size outputs) the whole image is decoded.
    full = render(src, "jpeg", [], tmp_path / ".tmp", strip_original=False)
    assert not full.scaled and (full.width, full.height) == (2832, 4240)
