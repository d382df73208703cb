"""Pool moves within one node: correctness, idempotency and every crash state."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.conftest import files_under, fixture_path, run_jobs, upload


def make_images(app, client, auth, tmp_path, count: int) -> list[str]:
    """`count` distinct small images, uploaded and processed for real."""
    from pixelfox.imaging.magick import Image

    auth.register("mover")
    uuids = []
    with Image(filename=f"jpeg:{fixture_path('photo.jpg')}") as photo:
        for i in range(count):
            path = tmp_path / f"img{i}.png"
            with photo.clone() as img:
                img.crop(left=i * 20, top=i * 10, width=96 + i, height=72)
                img.save(filename=f"png:{path}")
            resp = upload(client, path)
            assert resp.status_code == 201, resp.get_data(as_text=True)
            uuids.append(resp.get_json()["image_uuid"])
    run_jobs(app)
    return uuids


def add_pool(app, tmp_path, name="cold", node="local", **extra) -> int:
    from pixelfox.services import heartbeat, poolform

    with app.app_context():
        pool = poolform.save_pool(
            None,
            {
                "name": name,
                "node_id": node,
                "storage_tier": "cold",
                "base_path": str(tmp_path / name),
                "is_active": "on",
                "priority": "50",
                "public_base_url": app.config["PUBLIC_DOMAIN"],
                **extra,
            },
        )
        heartbeat.beat()
        return pool.id


def served_digests(client, uuids) -> dict[str, str]:
    """SHA-256 of every file of every image, fetched through /uploads/ as a visitor would."""
    out = {}
    for uuid in uuids:
        status = client.get(f"/api/v1/images/{uuid}/status").get_json()
        for url in [status["original_url"], *status["variants"].values()]:
            path = url.split(":4000", 1)[1]
            with client.get(path) as resp:
                assert resp.status_code == 200, path
                out[path] = hashlib.sha256(resp.data).hexdigest()
    return out


def source_pool_id(app) -> int:
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool

    with app.app_context():
        return db.session.execute(
            db.select(StoragePool.id).where(StoragePool.name == "default")
        ).scalar_one()


def start_move(app, source_id, target_id, dry_run=False):
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool
    from pixelfox.services import moves

    with app.app_context():
        move = moves.start(
            db.session.get(StoragePool, source_id),
            db.session.get(StoragePool, target_id),
            None,
            dry_run,
        )
        return move.id


def move_state(app, move_id) -> dict:
    from pixelfox.extensions import db
    from pixelfox.models import PoolMove
    from pixelfox.services import moves

    with app.app_context():
        return moves.progress(db.session.get(PoolMove, move_id))


def test_move_within_a_node_keeps_every_file_served_and_identical(app, client, auth, tmp_path):
    from pixelfox.extensions import db
    from pixelfox.models import Image, ImageVariant, StoragePool
    from pixelfox.services import settings

    uuids = make_images(app, client, auth, tmp_path, 21)
    source = source_pool_id(app)
    target = add_pool(app, tmp_path)
    before = served_digests(client, uuids)
    with app.app_context():  # the throttle's code path, at a rate that never waits here
        settings.update({"move_max_mb_per_second": 1000})
    with app.app_context():
        used_before = db.session.execute(
            db.select(StoragePool.used_size).where(StoragePool.id == source)
        ).scalar()

    dry = start_move(app, source, target, dry_run=True)
    state = move_state(app, dry)
    assert state["status"] == "done" and state["dry_run"] and state["total"] == 21
    assert state["done"] == 0 and run_jobs(app) == 0

    move_id = start_move(app, source, target)
    run_jobs(app)
    state = move_state(app, move_id)
    assert state["status"] == "done", state
    assert (state["total"], state["done"], state["failed"], state["skipped"]) == (21, 21, 0, 0)
    assert state["bytes_moved"] == used_before
    assert served_digests(client, uuids) == before  # same URLs, same bytes
    with app.app_context():
        assert set(db.session.execute(db.select(Image.storage_pool_id)).scalars()) == {target}
        assert set(db.session.execute(db.select(ImageVariant.storage_pool_id)).scalars()) == {
            target
        }
        used = dict(db.session.execute(db.select(StoragePool.id, StoragePool.used_size)).all())
    assert used[source] == 0 and used[target] == used_before
    src_files = files_under(app.config["UPLOADS_DIR"])
    dst_files = files_under(tmp_path / "cold")
    assert src_files == [] and len(dst_files) == 21 * 9
    assert not [p for p in dst_files if p.suffix == ".part"]
    # Running any of it again changes nothing.
    from pixelfox.jobs.moves import move_image
    from pixelfox.models import PoolMoveItem

    with app.app_context():
        ids = list(db.session.execute(db.select(PoolMoveItem.id)).scalars())
        assert move_image(move_id, ids) == {}  # a finished move does nothing more
    assert move_state(app, move_id) == state
    assert served_digests(client, uuids) == before


def test_a_second_move_of_the_same_pool_waits_for_the_first(app, client, auth, tmp_path):
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool
    from pixelfox.services import moves

    make_images(app, client, auth, tmp_path, 1)
    source, target = source_pool_id(app), add_pool(app, tmp_path)
    start_move(app, source, target)
    with app.app_context(), pytest.raises(moves.MoveError, match="not finished"):
        moves.start(
            db.session.get(StoragePool, source), db.session.get(StoragePool, target), None, False
        )


@pytest.mark.parametrize(
    "crash", ["after_copy", "after_verify", "after_switch", "source_lost_after_copy", "both_lost"]
)
def test_crash_states_converge(app, client, auth, tmp_path, crash):
    """Put one item into the state a crash would leave, then run the job again."""
    from pixelfox.extensions import db
    from pixelfox.models import Image, PoolMove, PoolMoveItem, StoragePool
    from pixelfox.services import copies, move_items, moves, poolfiles

    uuids = make_images(app, client, auth, tmp_path, 2)
    source, target = source_pool_id(app), add_pool(app, tmp_path)
    before = served_digests(client, uuids)
    move_id = start_move(app, source, target)
    from rq import Queue, SimpleWorker

    with app.app_context():
        redis = app.extensions["pixelfox_redis"]
        q = Queue("node-local", connection=redis)
        SimpleWorker([q], connection=redis).work(burst=True, max_jobs=1)  # planner only
        q.empty()  # the copy jobs are "lost"; we drive the items by hand
        move = db.session.get(PoolMove, move_id)
        item = (
            db.session.execute(db.select(PoolMoveItem).order_by(PoolMoveItem.id)).scalars().first()
        )
        image = db.session.get(Image, item.image_id)
        src = db.session.get(StoragePool, source)
        dst = db.session.get(StoragePool, target)
        files = copies.files_of(image)
        copier = move_items.copier_for(move)
        for f in files:  # copies exist on the target
            copier.copy(poolfiles.ref(src), poolfiles.ref(dst), f)
        if crash == "after_copy":
            item.status = "copying"
        elif crash == "after_verify":
            item.status = "verified"
        elif crash == "after_switch":
            item.status = "verified"
            db.session.commit()
            assert move_items._flip([move_items.Ready(item, image, files, True)], src, dst)
        elif crash == "source_lost_after_copy":
            item.status = "copying"
            Path(src.base_path, image.stored_path).unlink()
        elif crash == "both_lost":
            item.status = "copying"
            Path(src.base_path, image.stored_path).unlink()
            Path(dst.base_path, image.stored_path).unlink()
        db.session.commit()
        result = move_items.move_items(
            move_id, [i.id for i in db.session.execute(db.select(PoolMoveItem)).scalars()]
        )
        state = moves.progress(db.session.get(PoolMove, move_id))
    if crash == "both_lost":
        assert result == {"failed": 1, "source_deleted": 1}
        with app.app_context():
            failed = db.session.execute(
                db.select(PoolMoveItem).where(PoolMoveItem.status == "failed")
            ).scalar_one()
            assert "missing on the source and has no copy" in failed.error
            image = db.session.get(Image, failed.image_id)
            assert image.storage_pool_id == source  # the DB never points at a missing copy
        assert state["status"] == "failed" and state["failed"] == 1
        return
    assert result == {"source_deleted": 2}, result
    assert state["status"] == "done" and state["done"] == 2
    assert served_digests(client, uuids) == before
    names = [p.name for p in files_under(tmp_path / "cold")]
    assert len(names) == len(set(names)) == 2 * 9  # each file once, on the target
    assert [p for p in files_under(app.config["UPLOADS_DIR"])] == []


def test_pause_resume_cancel_and_retry(app, client, auth, tmp_path):
    from pixelfox.extensions import db
    from pixelfox.models import PoolMove
    from pixelfox.services import moves

    uuids = make_images(app, client, auth, tmp_path, 3)
    source, target = source_pool_id(app), add_pool(app, tmp_path)
    move_id = start_move(app, source, target)
    with app.app_context():
        moves.set_status(db.session.get(PoolMove, move_id), "pause")
    run_jobs(app)  # the planner does not plan a paused move, copies wait
    assert move_state(app, move_id)["status"] == "paused"
    assert move_state(app, move_id)["done"] == 0
    with app.app_context():
        moves.set_status(db.session.get(PoolMove, move_id), "resume")
    run_jobs(app)
    state = move_state(app, move_id)
    assert state["status"] == "done" and state["done"] == 3
    with app.app_context(), pytest.raises(moves.MoveError):
        moves.set_status(db.session.get(PoolMove, move_id), "pause")
    assert len(served_digests(client, uuids)) == 3 * 9


def test_sweeper_resumes_a_move_after_redis_is_flushed(app, client, auth, tmp_path, redis):
    from pixelfox.services import maintenance

    uuids = make_images(app, client, auth, tmp_path, 4)
    source, target = source_pool_id(app), add_pool(app, tmp_path)
    before = served_digests(client, uuids)
    move_id = start_move(app, source, target)
    redis.flushdb()  # planner job gone; the journal in the DB remains
    assert run_jobs(app) == 0
    with app.app_context():
        assert maintenance.sweep()["moves_resumed"] == 1
        assert maintenance.sweep()["moves_resumed"] == 0  # its jobs are queued now
    run_jobs(app)
    assert move_state(app, move_id)["status"] == "done"
    # Flush again half-way through: plan done, copy jobs lost.
    target2 = add_pool(app, tmp_path, name="colder")
    move2 = start_move(app, target, target2)
    from rq import Queue, SimpleWorker

    with app.app_context():
        q = Queue("node-local", connection=redis)
        SimpleWorker([q], connection=redis).work(burst=True, max_jobs=1)  # the planner
    redis.flushdb()
    with app.app_context():
        assert maintenance.sweep()["moves_resumed"] == 1
    run_jobs(app)
    state = move_state(app, move2)
    assert state["status"] == "done" and state["done"] == 4
    assert served_digests(client, uuids) == before


def test_admin_move_flow_preflight_start_progress_controls(app, client, auth, tmp_path):
    from pixelfox.services import accounts
    from tests.conftest import Auth, csrf_from

    make_images(app, client, auth, tmp_path, 3)
    source, target = source_pool_id(app), add_pool(app, tmp_path)
    auth.logout()
    with app.app_context():
        accounts.create_user("boss", "boss@example.org", "admin pass 1", "admin")
    Auth(client).login("boss", "admin pass 1")
    page = client.get(f"/admin/storage/move/{source}?target_pool_id={target}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Images to move</th><td>3" in html and "copied on the node" in html
    assert "Stop uploads to default" in html
    token = csrf_from(html)
    # Recommended: stop uploads into the draining pool.
    client.post(f"/admin/storage/{source}/uploads", data={"csrf_token": token, "back": "move"})
    assert "Stop uploads to default" not in client.get(
        f"/admin/storage/move/{source}?target_pool_id={target}"
    ).get_data(as_text=True)
    # Without CSRF: refused.
    assert (
        client.post(f"/admin/storage/move/{source}", data={"target_pool_id": target}).status_code
        == 400
    )
    resp = client.post(
        f"/admin/storage/move/{source}", data={"target_pool_id": target, "csrf_token": token}
    )
    assert resp.status_code == 302
    move_url = resp.headers["Location"]
    detail = client.get(move_url).get_data(as_text=True)
    assert "<progress" in detail and 'hx-trigger="every 1s"' in detail
    # HTMX pause with the CSRF header, then resume; JSON for scripts.
    move_id = int(move_url.rsplit("/", 1)[1])
    hx = {"HX-Request": "true", "X-CSRFToken": token}
    assert (
        client.post(f"/admin/moves/{move_id}/pause", headers={"HX-Request": "true"}).status_code
        == 400
    )
    frag = client.post(f"/admin/moves/{move_id}/pause", headers=hx)
    assert frag.status_code == 200 and 'data-status="paused"' in frag.get_data(as_text=True)
    run_jobs(app)
    body = client.get(move_url, headers={"Accept": "application/json"}).get_json()
    assert body == {
        "id": move_id,
        "status": "paused",
        "total": 3,
        "done": 0,
        "failed": 0,
        "skipped": 0,
        "bytes_moved": 0,
    }
    client.post(f"/admin/moves/{move_id}/resume", headers=hx)
    run_jobs(app)
    body = client.get(move_url, headers={"Accept": "application/json"}).get_json()
    assert body["status"] == "done" and body["done"] == body["total"] == 3
    assert body["bytes_moved"] > 0
    final = client.get(move_url).get_data(as_text=True)
    assert 'hx-trigger="every 1s"' not in final  # polling stops when the move has ended
    assert f"#{move_id}" in client.get("/admin/moves").get_data(as_text=True)
    # Dry run from the form: a plan, nothing copied.
    resp = client.post(
        f"/admin/storage/move/{target}",
        data={"target_pool_id": source, "dry_run": "on", "csrf_token": token},
    )
    dry = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Dry run: 3 images" in dry


def test_same_filesystem_links_and_another_filesystem_copies(app, client, auth, tmp_path):
    """Pools on one filesystem get a verified hard link (no bytes copied); pools on another
    filesystem (tmpfs here) get a verified copy. Either way the files serve identically."""
    import os
    import shutil
    import tempfile

    uuids = make_images(app, client, auth, tmp_path, 2)
    before = served_digests(client, uuids)
    uploads = Path(app.config["UPLOADS_DIR"])
    inodes = {p.relative_to(uploads): p.stat().st_ino for p in files_under(uploads)}
    source = source_pool_id(app)
    near = add_pool(app, tmp_path, name="near")
    start_move(app, source, near)
    run_jobs(app)
    assert move_state(app, _last_move(app))["status"] == "done"
    moved = {
        p.relative_to(tmp_path / "near"): p.stat().st_ino for p in files_under(tmp_path / "near")
    }
    assert moved == inodes  # the same inodes: linked, not copied
    assert served_digests(client, uuids) == before

    shm = Path("/dev/shm")
    assert shm.is_dir() and os.stat(shm).st_dev != os.stat(tmp_path).st_dev
    far_dir = Path(tempfile.mkdtemp(prefix="pixelfox-test-", dir=shm))
    try:
        far = add_pool(app, tmp_path, name="far", base_path=str(far_dir))
        start_move(app, near, far)
        run_jobs(app)
        assert move_state(app, _last_move(app))["status"] == "done"
        copied = {p.relative_to(far_dir): p.stat().st_ino for p in files_under(far_dir)}
        assert set(copied) == set(inodes)
        assert files_under(tmp_path / "near") == []
        assert served_digests(client, uuids) == before
    finally:
        shutil.rmtree(far_dir, ignore_errors=True)


def _last_move(app) -> int:
    from pixelfox.extensions import db
    from pixelfox.models import PoolMove

    with app.app_context():
        return db.session.execute(db.select(db.func.max(PoolMove.id))).scalar()


def test_a_group_switch_falls_back_when_one_image_changed_pool(app, client, auth, tmp_path):
    """Three verified images are switched together; one was moved elsewhere between its copy
    and the switch: the other two switch, that one is skipped, and nothing points at a file
    that is not there."""
    from pixelfox.extensions import db
    from pixelfox.models import Image, PoolMove, PoolMoveItem, StoragePool
    from pixelfox.services import move_items

    uuids = make_images(app, client, auth, tmp_path, 3)
    source, target = source_pool_id(app), add_pool(app, tmp_path)
    other = add_pool(app, tmp_path, name="other")
    move_id = start_move(app, source, target)
    with app.app_context():
        from rq import Queue, SimpleWorker

        redis = app.extensions["pixelfox_redis"]
        q = Queue("node-local", connection=redis)
        SimpleWorker([q], connection=redis).work(burst=True, max_jobs=1)  # planner only
        q.empty()
        move = db.session.get(PoolMove, move_id)
        items = db.session.execute(db.select(PoolMoveItem).order_by(PoolMoveItem.id)).scalars()
        copier = move_items.copier_for(move)
        group = [move_items._prepare(move, item, None, copier) for item in items]
        assert all(isinstance(r, move_items.Ready) and r.needs_switch for r in group)
        # Meanwhile another process moves the second image to a third pool.
        with db.engine.begin() as conn:
            conn.execute(
                db.update(Image).where(Image.id == group[1].image.id).values(storage_pool_id=other)
            )
        results = move_items._complete(move, group, copier)
        db.session.commit()
        assert results == ["source_deleted", "skipped", "source_deleted"]
        pools = dict(db.session.execute(db.select(Image.uuid, Image.storage_pool_id)).all())
        assert pools[group[0].image.uuid] == target and pools[group[2].image.uuid] == target
        assert pools[group[1].image.uuid] == other
        src = db.session.get(StoragePool, source)
        # The skipped image's source files were not deleted.
        assert Path(src.base_path, group[1].image.stored_path).exists()
    assert sorted(uuids) == sorted(pools)
