"""Redis run as an ephemeral cache (issue 10.3): the test starts its own redis-server, kills it
with work queued, and starts it again empty. The scheduler registers its periodic jobs again
by itself, and the sweeper re-queues every image, deletion and move whose job vanished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis import Redis

from tests.conftest import (
    ROOT,
    fixture_path,
    free_port,
    kill_worker_hard,
    node_env,
    start_rq_worker,
    upload,
)


class RedisServer:
    """A redis-server of this test's own, without persistence (as the seeds run it)."""

    def __init__(self, directory: Path):
        self.port = free_port()
        self.dir = directory
        self.proc = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if Redis(port=self.port, socket_timeout=1).ping():
                    return self
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def wait_until(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def own_redis(app, tmp_path):
    server = RedisServer(tmp_path).start()
    app.config["REDIS_URL"] = server.url
    app.extensions["pixelfox_redis"] = Redis.from_url(server.url)
    app.extensions.pop("pixelfox_limiter", None)
    yield server
    if server.proc.poll() is None:
        server.kill()


def test_redis_restarting_empty_loses_no_work(app, client, auth, own_redis, tmp_path):
    from pixelfox.extensions import db, get_redis
    from pixelfox.models import Image, PoolMove, StoragePool
    from pixelfox.services import deletion, images, maintenance, moves, poolform

    procs = []

    def spawn(cmd, name):
        log = open(tmp_path / f"{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=node_env(app),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(proc)
        return proc

    flask = str(Path(sys.executable).with_name("flask"))
    auth.register()
    client.get("/")
    with app.app_context():
        source_id = db.session.execute(db.select(StoragePool.id)).scalar_one()
    try:
        spawn([flask, "--app", "wsgi", "scheduler"], "scheduler")
        worker = start_rq_worker(app, "--with-scheduler", log_path=tmp_path / "worker1.log")
        procs.append(worker)
        first = [
            upload(client, fixture_path(n)).get_json()["image_uuid"]
            for n in ("photo.webp", "alpha.png", "anim.gif", "tiny.png")
        ]

        def status_of(uuids):
            with app.app_context():
                db.session.remove()
                return [
                    db.session.execute(db.select(Image.status).where(Image.uuid == u)).scalar()
                    for u in uuids
                ]

        wait_until(lambda: status_of(first) == ["complete"] * 4, 120, "first images")
        kill_worker_hard(worker)  # no worker: what follows stays queued

        with app.app_context():
            db.session.remove()
            deletion.request_delete(images.by_uuid(first[3]))
            src = db.session.get(StoragePool, source_id)
            src.accepts_uploads = False  # new uploads go to the second pool
            target = poolform.save_pool(
                None,
                {
                    "name": "second",
                    "node_id": "local",
                    "base_path": str(tmp_path / "second"),
                    "is_active": "on",
                    "accepts_uploads": "on",
                },
            )
            target_id = target.id
            move = moves.start(src, target, None, False, True)
            move_id = move.id
        later = [
            upload(client, fixture_path(n)).get_json()["image_uuid"]
            for n in ("photo.jpg", "photo.bmp", "photo.heic")
        ]
        with app.app_context():
            assert get_redis().llen("rq:queue:node-local") >= 5  # planner, delete, 3 images
            assert maintenance.sweep()["requeued"] == 0  # jobs alive: nothing done twice

        own_redis.kill()
        own_redis.start()  # same port, empty
        restarted = time.time()
        assert Redis.from_url(own_redis.url).dbsize() == 0
        procs.append(start_rq_worker(app, "--with-scheduler", log_path=tmp_path / "w2.log"))

        def periodic_back():
            keys = Redis.from_url(own_redis.url).zrange("rq:scheduler:scheduled_jobs", 0, -1)
            names = {k.decode().split("-")[1] for k in keys}
            return {"sweeper", "heartbeat", "pool_stats"} <= names

        wait_until(periodic_back, 60, "the periodic jobs to be registered again")
        assert time.time() - restarted < 60

        def converged():
            with app.app_context():
                db.session.remove()
                gone = (
                    images.by_uuid(first[3]) is None
                    and not db.session.execute(
                        db.select(Image.id).where(Image.uuid == first[3])
                    ).first()
                )
                move = db.session.get(PoolMove, move_id)
                moves.refresh_counts(move_id)
                return (
                    gone
                    and status_of(later) == ["complete"] * 3
                    and move.status == "done"
                    and move.done == 3
                )

        wait_until(converged, 240, "queued work to finish after the restart")
        with app.app_context():
            db.session.remove()
            rows = db.session.execute(db.select(Image)).scalars().all()
            assert len(rows) == 6
            assert {i.storage_pool_id for i in rows} == {target_id}
            assert all(i.status == "complete" for i in rows)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
