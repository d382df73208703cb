"""Pool moves across real nodes, with faults: a SIGKILLed source worker, a stopped target web
process, a flushed Redis, a checksum the target refuses. After each: nothing lost."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import browser_login, files_under, fixture_path, kill_worker_hard
from tests.test_multinode import Node

SECRET = "multi-node-replication-secret"
IMAGES = 22


@pytest.fixture
def nodes(app, tmp_path):
    app.config["REPLICATION_SECRET"] = SECRET
    local = Node(app, "local", tmp_path)
    s1 = Node(app, "s1", tmp_path, app_origin=local.url)
    for n in (local, s1):
        n.env["REPLICATION_SECRET"] = SECRET
        n.start()
    workers = {}

    def worker(node):
        workers[node.node_id] = node.worker(app, "--with-scheduler")  # as ops run it
        return workers[node.node_id]

    yield local, s1, worker, workers
    for w in workers.values():
        if w.poll() is None:
            w.terminate()
            w.wait(timeout=15)
    local.stop()
    s1.stop()


def upload_images(app, local: Node, tmp_path) -> list[str]:
    from pixelfox.imaging.magick import Image

    browser, csrf = browser_login(local.url, "owner")
    uuids = []
    with Image(filename=f"jpeg:{fixture_path('photo.jpg')}") as photo:
        for i in range(IMAGES):
            path = tmp_path / f"m{i}.png"
            with photo.clone() as img:
                img.crop(left=i * 30, top=i * 20, width=420 + i, height=300)
                img.save(filename=f"png:{path}")
            with open(path, "rb") as fh:
                resp = browser.post(
                    f"{local.url}/upload",
                    files={"file": (path.name, fh)},
                    data={"csrf_token": csrf},
                    headers={"Accept": "application/json"},
                )
            assert resp.status_code == 201, resp.text
            uuids.append(resp.json()["image_uuid"])
    return uuids


def wait_until(predicate, timeout=120, step=0.2, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def images_state(app):
    from pixelfox.extensions import db
    from pixelfox.models import Image

    with app.app_context():
        db.session.remove()
        return db.session.execute(db.select(Image.uuid, Image.status, Image.storage_pool_id)).all()


def served(app, uuids) -> dict[str, str]:
    """sha256 of every file, fetched over HTTP from whichever node the URL names."""
    from pixelfox.extensions import db
    from pixelfox.services import images

    out = {}
    with app.test_request_context():
        db.session.remove()
        for uuid in uuids:
            image = images.by_uuid(uuid)
            urls = [images.file_url(image, image.stored_path), *images.variant_urls(image).values()]
            for url in urls:
                resp = requests.get(url, timeout=10)
                assert resp.status_code == 200, url
                out[url.split("/uploads/", 1)[1]] = hashlib.sha256(resp.content).hexdigest()
    return out


def pool_ids(app) -> dict[str, int]:
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool

    with app.app_context():
        db.session.remove()
        return dict(db.session.execute(db.select(StoragePool.node_id, StoragePool.id)).all())


def heartbeats(app):
    from rq import Queue

    from pixelfox.extensions import get_redis
    from pixelfox.services import heartbeat

    with app.app_context():
        asked = [0.0]

        def both():
            _n, states = heartbeat.latest()
            if len(states) >= 2 and all(s["healthy"] for s in states.values()):
                return True
            if time.time() - asked[0] > 5:  # a beat whose probe timed out under load: again
                asked[0] = time.time()
                for node in ("local", "s1"):
                    Queue(f"node-{node}", connection=get_redis()).enqueue(
                        "pixelfox.jobs.periodic.heartbeat"
                    )
            return False

        wait_until(both, 60, what="heartbeats of both nodes")


def start_move(app, source_id, target_id) -> int:
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool
    from pixelfox.services import moves

    with app.app_context():
        db.session.remove()
        move = moves.start(
            db.session.get(StoragePool, source_id),
            db.session.get(StoragePool, target_id),
            None,
            False,
        )
        return move.id


def progress(app, move_id) -> dict:
    from pixelfox.extensions import db
    from pixelfox.models import PoolMove
    from pixelfox.services import moves

    with app.app_context():
        db.session.remove()
        return moves.refresh_counts(move_id) and moves.progress(db.session.get(PoolMove, move_id))


def sweep_later(app):
    from datetime import timedelta

    from pixelfox.models.base import utcnow
    from pixelfox.services import maintenance

    with app.app_context():
        return maintenance.sweep(now=utcnow() + timedelta(minutes=11))


def assert_nothing_lost(app, uuids, before, target: Node, source: Node, target_pool: int):
    """Every image served and byte-identical; each file once, on the target; no temp files;
    the DB points only at verified copies."""
    from pixelfox.extensions import db
    from pixelfox.models import Image
    from pixelfox.storage import local

    assert served(app, uuids) == before
    on_target = [p for p in files_under(target.uploads) if p.suffix != ".part"]
    names = [p.name for p in on_target]
    assert len(names) == len(set(names)) == len(before)
    assert not [
        p for p in files_under(source.uploads) if "original" in p.parts or "variants" in p.parts
    ]
    # A receiver stopped mid-copy leaves its temp file, unlocked: the node's next heartbeat
    # removes it (here at once); a temp file still locked would be a writer still at work.
    for part in [p for p in files_under(target.uploads) if p.suffix == ".part"]:
        assert local.remove_dead_temp(part, min_age=0), part
    assert not [p for p in files_under(target.uploads) if p.suffix == ".part"]
    with app.app_context():
        db.session.remove()
        for image in db.session.execute(db.select(Image)).scalars():
            assert image.storage_pool_id == target_pool
            rows = [(image.stored_path, image.sha256)]
            rows += [(v.stored_path, v.sha256) for v in image.variants]
            for rel, digest in rows:
                assert local.hash_file(Path(target.uploads) / rel)[1] == digest


def test_moves_across_nodes_survive_kills_stops_and_flushes(app, nodes, tmp_path, redis):
    from pixelfox.services import settings

    local, s1, worker, workers = nodes
    worker(local)
    worker(s1)
    uuids = upload_images(app, local, tmp_path)
    wait_until(
        lambda: (
            all(s == "complete" for _u, s, _p in images_state(app))
            and len(images_state(app)) == IMAGES
        ),
        what="processing",
    )
    before = served(app, uuids)
    assert len(before) == IMAGES * 9
    pools = pool_ids(app)
    heartbeats(app)
    with app.app_context():
        settings.update({"move_max_mb_per_second": 2})  # slow enough to hit it mid-move

    # 1. local -> s1, SIGKILL the source node's worker in the middle, then restart it.
    move1 = start_move(app, pools["local"], pools["s1"])
    wait_until(lambda: 0 < progress(app, move1)["done"] < IMAGES, 60, 0.05, "move 1 under way")
    # The whole worker: RQ runs each job in a forked work horse, which a SIGKILL of the
    # parent alone would leave running.
    kill_worker_hard(workers["local"])
    stalled = progress(app, move1)
    assert stalled["status"] == "running" and stalled["done"] < IMAGES
    worker(local)
    assert sweep_later(app)["moves_resumed"] == 1
    wait_until(lambda: progress(app, move1)["status"] != "running", 180, what="move 1 to end")
    p1 = progress(app, move1)
    assert p1["status"] == "done", p1
    assert p1["done"] + p1["failed"] + p1["skipped"] == p1["total"] == IMAGES
    assert_nothing_lost(app, uuids, before, s1, local, pools["s1"])

    # 2. s1 -> local: SIGKILL the source (s1) worker and stop the target web process
    # mid-move, start both again, and flush Redis.
    move2 = start_move(app, pools["s1"], pools["local"])
    wait_until(lambda: progress(app, move2)["done"] > 0, 60, 0.05, "move 2 under way")
    kill_worker_hard(workers["s1"])
    local.stop()
    assert progress(app, move2)["done"] < IMAGES
    time.sleep(1.5)
    local.start()
    worker(s1)
    redis.flushdb()
    assert sweep_later(app)["moves_resumed"] == 1
    wait_until(lambda: progress(app, move2)["status"] != "running", 240, what="move 2 to end")
    p2 = progress(app, move2)
    if p2["failed"]:  # items that hit the stopped target three times: retry them
        from pixelfox.extensions import db
        from pixelfox.models import PoolMove
        from pixelfox.services import moves

        with app.app_context():
            moves.set_status(db.session.get(PoolMove, move2), "retry")
        wait_until(lambda: progress(app, move2)["status"] != "running", 240, what="retry")
        p2 = progress(app, move2)
    assert p2["status"] == "done", p2
    assert p2["done"] + p2["skipped"] == IMAGES
    assert_nothing_lost(app, uuids, before, local, s1, pools["local"])


def test_checksum_mismatch_is_refused_retried_and_the_source_kept(app, nodes, tmp_path):
    """A source file whose bytes no longer match their SHA-256: the target refuses (422), the
    item is retried, then failed with the source untouched; after repair, retry finishes."""
    from pixelfox.extensions import db
    from pixelfox.models import Image, PoolMove, PoolMoveItem
    from pixelfox.services import moves

    local, s1, worker, _workers = nodes
    worker(local)
    worker(s1)
    uuids = upload_images(app, local, tmp_path)[:IMAGES]
    wait_until(lambda: all(s == "complete" for _u, s, _p in images_state(app)), what="processing")
    before = served(app, uuids)
    pools = pool_ids(app)
    heartbeats(app)
    with app.app_context():
        victim = db.session.execute(db.select(Image).order_by(Image.id)).scalars().first()
        victim_id, rel = victim.id, victim.stored_path
    original = Path(local.uploads) / rel
    good = original.read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF  # same size, different bytes
    original.write_bytes(bytes(bad))
    move = start_move(app, pools["local"], pools["s1"])
    wait_until(lambda: progress(app, move)["status"] != "running", 240, what="move to end")
    state = progress(app, move)
    assert state["status"] == "failed" and state["failed"] == 1
    assert state["done"] == IMAGES - 1
    with app.app_context():
        item = db.session.execute(
            db.select(PoolMoveItem).where(PoolMoveItem.image_id == victim_id)
        ).scalar_one()
        assert item.status == "failed" and item.attempts >= 3
        assert "SHA-256" in item.error or "mismatch" in item.error.lower()
        assert db.session.get(Image, victim_id).storage_pool_id == pools["local"]
    assert original.exists()  # the source is kept
    assert not (Path(s1.uploads) / rel).exists()  # nothing half-written on the target
    original.write_bytes(good)  # repaired
    with app.app_context():
        moves.set_status(db.session.get(PoolMove, move), "retry")
    wait_until(lambda: progress(app, move)["status"] != "running", 120, what="retry")
    assert progress(app, move)["status"] == "done"
    assert_nothing_lost(app, uuids, before, s1, local, pools["s1"])
