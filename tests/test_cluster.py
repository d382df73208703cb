"""A real cluster (issue 12): an app node and storage nodes s1 and s2 as separate web
processes with their own upload dirs, real `rq worker node-<id>` processes and the
scheduler, on MariaDB and Redis. Uploads spread over the nodes; with replication factor 2
every image has two verified copies on two nodes; a killed node's images stay available
through the links the app mints; marking it lost heals the cluster back to two copies, also
when a worker dies and Redis is flushed in the middle; a flipped byte is found by scrub and
repaired from the good copy."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import (
    ROOT,
    browser_login,
    csrf_from,
    files_under,
    fixture_path,
    kill_worker_hard,
)
from tests.test_multinode import Node

SECRET = "cluster-replication-secret-0123456789abcdef"
IMAGES = 30


def wait_until(predicate, timeout, what, step=0.3):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Cluster:
    def __init__(self, app, tmp_path):
        self.app, self.tmp = app, tmp_path
        app.config["REPLICATION_SECRET"] = SECRET
        self.local = Node(app, "local", tmp_path)
        self.s1 = Node(app, "s1", tmp_path, app_origin=self.local.url)
        self.s2 = Node(app, "s2", tmp_path, app_origin=self.local.url)
        self.nodes = [self.local, self.s1, self.s2]
        self.workers: dict[str, subprocess.Popen] = {}
        self.scheduler = None
        for n in self.nodes:
            n.env.update(REPLICATION_SECRET=SECRET, HEARTBEAT_SECONDS="2")

    def start(self):
        for n in self.nodes:
            n.start()
            requests.get(f"{n.url}/", timeout=10)  # each node makes its pool
            self.worker(n)
        flask = str(Path(sys.executable).with_name("flask"))
        self.scheduler = subprocess.Popen(
            [flask, "--app", "wsgi", "scheduler", "--interval", "1"],
            cwd=ROOT,
            env=self.local.env,
            stdout=open(self.tmp / "scheduler.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def worker(self, node: Node):
        self.workers[node.node_id] = node.worker(self.app, "--with-scheduler")
        return self.workers[node.node_id]

    def kill_worker(self, node_id: str):
        proc = self.workers[node_id]
        kill_worker_hard(proc)  # the worker and its work horse

    def stop(self):
        procs = list(self.workers.values()) + ([self.scheduler] if self.scheduler else [])
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for n in self.nodes:
            n.stop()


@pytest.fixture
def cluster(app, tmp_path):
    c = Cluster(app, tmp_path).start()
    yield c
    c.stop()


def db_call(app, fn):
    from pixelfox.extensions import db

    with app.app_context():
        db.session.remove()
        return fn(db)


def pools_by_node(app) -> dict[str, int]:
    from pixelfox.models import StoragePool

    return db_call(
        app,
        lambda db: dict(db.session.execute(db.select(StoragePool.node_id, StoragePool.id)).all()),
    )


def durability(app) -> dict:
    from pixelfox.services import copies

    return db_call(app, lambda db: copies.durability())


def make_photos(tmp_path, count) -> list[Path]:
    from pixelfox.imaging.magick import Image

    out = []
    with Image(filename=f"jpeg:{fixture_path('photo.jpg')}") as photo:
        for i in range(count):
            path = tmp_path / f"c{i}.png"
            with photo.clone() as img:
                img.crop(left=i * 37, top=i * 23, width=300 + i, height=220)
                img.save(filename=f"png:{path}")
            out.append(path)
    return out


def direct_upload(app_url, browser, csrf, path: Path) -> str:
    session = browser.post(
        f"{app_url}/api/internal/upload/sessions",
        json={"file_size": path.stat().st_size},
        headers={"X-CSRFToken": csrf},
    ).json()
    with open(path, "rb") as fh:
        resp = requests.post(
            session["upload_url"],
            files={"file": (path.name, fh)},
            headers={"Authorization": f"Bearer {session['token']}"},
            timeout=30,
        )
    assert resp.status_code == 201, resp.text
    return resp.json()["image_uuid"]


def expected_files(app) -> dict[int, dict[str, str]]:
    """{pool id: {relative path: sha256}} of every verified copy."""
    from pixelfox.models import Image
    from pixelfox.services import copies

    def collect(db):
        out: dict[int, dict[str, str]] = {}
        for image in db.session.execute(db.select(Image)).scalars():
            for c in image.copies:
                if c.status == "verified":
                    for f in copies.files_of(image):
                        out.setdefault(c.pool_id, {})[f.rel] = f.sha256
        return out

    return db_call(app, collect)


def served_everywhere(app, owner, app_url, uuids, forbidden: str | None = None):
    """Every file of every image through the URLs the status API and the viewer give:
    200 and the bytes the database describes; never a 5xx; never a URL on `forbidden`."""
    from pixelfox.models import Image

    digests = db_call(
        app,
        lambda db: {
            i.uuid: {i.stored_path: i.sha256} | {v.stored_path: v.sha256 for v in i.variants}
            for i in db.session.execute(db.select(Image)).scalars()
        },
    )
    checked = 0
    for uuid in uuids:
        status = owner.get(f"{app_url}/api/v1/images/{uuid}/status", timeout=10)
        assert status.status_code == 200, status.text
        body = status.json()
        page = owner.get(f"{app_url}/image/{uuid}", timeout=10)
        assert page.status_code == 200
        urls = [body["original_url"], *body["variants"].values()]
        urls += re.findall(r'src="(http[^"]+/uploads/[^"]+)"', page.text)
        for url in urls:
            assert url, f"no link for {uuid}: {body}"
            if forbidden:
                assert not url.startswith(forbidden), url
            got = requests.get(url, timeout=10)
            assert got.status_code == 200, (url, got.status_code)
            rel = url.split("/uploads/", 1)[1].split("?", 1)[0]
            assert hashlib.sha256(got.content).hexdigest() == digests[uuid][rel], url
            checked += 1
    return checked


def assert_copies_on_distinct_nodes(app, want: int, live_nodes: set[str]):
    from pixelfox.models import Image

    def check(db):
        for image in db.session.execute(db.select(Image)).scalars():
            good = [c for c in image.copies if c.status == "verified"]
            nodes = [c.pool.node_id for c in good]
            assert len(good) == want and len(set(nodes)) == want, (image.uuid, nodes)
            assert set(nodes) <= live_nodes, nodes
            assert image.pool.node_id in live_nodes

    db_call(app, check)


def assert_disks_match_the_database(app, pool_dirs: dict[int, Path]):
    """Each pool's directory holds exactly the files of its verified copies, byte-identical:
    no orphan, no duplicate, no temp file (a dead writer's temp file goes first, as the
    node's heartbeat would remove it)."""
    from pixelfox.storage import local

    want = expected_files(app)
    for pool_id, root in pool_dirs.items():
        for part in [p for p in files_under(root) if p.suffix == ".part"]:
            assert local.remove_dead_temp(part, min_age=0), part
        have = {p.relative_to(root).as_posix(): p for p in files_under(root)}
        assert set(have) == set(want.get(pool_id, {})), pool_id
        for rel, path in have.items():
            assert local.hash_file(path)[1] == want[pool_id][rel], rel


def test_a_cluster_spreads_replicates_fails_over_and_heals(app, cluster, tmp_path, redis):
    from pixelfox.models import ImageCopy, StoragePool
    from pixelfox.services import accounts, settings

    local, s1, s2 = cluster.local, cluster.s1, cluster.s2
    with app.app_context():
        settings.update(
            {
                "direct_upload_enabled": True,
                "node_down_after_seconds": 8,
                "upload_rate_limit_per_minute": 0,
                "upload_user_rate_limit_per_minute": 0,
            }
        )
        accounts.create_user("boss", "boss@example.org", "admin pass 12", "admin")
    pools = pools_by_node(app)
    assert set(pools) == {"local", "s1", "s2"}
    from pixelfox.services import nodes

    wait_until(
        lambda: db_call(app, lambda db: nodes.live()) >= {"local", "s1", "s2"}, 30, "live nodes"
    )
    owner, csrf = browser_login(local.url, "owner")

    # 1. Sessions spread over the three equal pools; weight 0 or above high water: none.
    def sessions(n):
        counts = {}
        for _ in range(n):
            body = owner.post(
                f"{local.url}/api/internal/upload/sessions",
                json={"file_size": 1000},
                headers={"X-CSRFToken": csrf},
            ).json()
            counts[body["pool_id"]] = counts.get(body["pool_id"], 0) + 1
        return counts

    spread = sessions(60)
    assert set(spread) == set(pools.values()), spread
    assert all(12 <= n <= 28 for n in spread.values()), spread

    def set_pool(node, **values):
        def go(db):
            db.session.execute(
                db.update(StoragePool).where(StoragePool.id == pools[node]).values(**values)
            )
            db.session.commit()

        db_call(app, go)

    # 2. Replication factor 2: every image ends with two verified copies on two nodes.
    with app.app_context():
        settings.update({"replication_factor": 2})
    uuids = [direct_upload(local.url, owner, csrf, p) for p in make_photos(tmp_path, IMAGES)]
    wait_until(
        lambda: durability(app)["fully_replicated"] == IMAGES, 180, "two copies of every image"
    )
    d = durability(app)
    assert d == {
        "replication_factor": 2,
        "images": IMAGES,
        "fully_replicated": IMAGES,
        "under_replicated": 0,
        "without_copy": 0,
        "repairing": 0,
    }
    assert_copies_on_distinct_nodes(app, 2, {"local", "s1", "s2"})
    pool_dirs = {pools[n.node_id]: n.uploads for n in cluster.nodes}
    assert_disks_match_the_database(app, pool_dirs)
    primaries = db_call(
        app,
        lambda db: db.session.execute(
            db.select(StoragePool.node_id, db.func.count())
            .select_from(StoragePool)
            .join(ImageCopy, ImageCopy.pool_id == StoragePool.id)
            .group_by(StoragePool.node_id)
        ).all(),
    )
    assert {node for node, _n in primaries} == {"local", "s1", "s2"}  # uploads spread
    # Weight 0, or fuller than the high-water mark (90 %): no new uploads there.
    used = db_call(app, lambda db: db.session.get(StoragePool, pools["local"]).used_size)
    assert used > 0
    set_pool("s2", weight=0)
    set_pool("local", max_size=int(used / 0.95))  # 95 % full
    assert set(sessions(30)) == {pools["s1"]}
    set_pool("s2", weight=100)
    set_pool("local", max_size=None)
    status = owner.get(f"{local.url}/api/v1/images/{uuids[0]}/status").json()
    assert status["copies"]["wanted"] == 2 and status["copies"]["verified"] == 2
    assert len(status["copies"]["nodes"]) == 2
    admin = requests.Session()
    token = csrf_from(admin.get(f"{local.url}/login").text)
    admin.post(
        f"{local.url}/login",
        data={"username": "boss", "password": "admin pass 12", "csrf_token": token},
    )
    assert (
        admin.get(f"{local.url}/admin/durability", headers={"Accept": "application/json"}).json()
        == d
    )

    # 3. s1 dies (web and worker killed, its disk gone): once it counts as down, every
    # image is served byte-identical through the links the app mints — none on s1.
    os.killpg(s1.web.pid, signal.SIGKILL)
    s1.web.wait(timeout=10)
    cluster.kill_worker("s1")
    shutil.rmtree(s1.uploads)
    wait_until(lambda: "s1" not in db_call(app, lambda db: nodes.live()), 30, "s1 to be down")
    assert served_everywhere(app, owner, local.url, uuids, forbidden=s1.url) >= IMAGES * 9

    # 4. Mark s1 lost: replicas become primaries; repair restores two copies per image —
    # while a worker is SIGKILLed and Redis flushed in the middle of it.
    with app.app_context():
        settings.update({"repair_max_mb_per_second": 1})  # slow enough to interrupt
    page = admin.get(f"{local.url}/admin/nodes/s1/lost").text
    assert "left without any copy" in page
    refused = admin.post(
        f"{local.url}/admin/nodes/s1/lost", data={"confirm": "s2", "csrf_token": csrf_from(page)}
    )
    assert refused.status_code == 400
    done = admin.post(
        f"{local.url}/admin/nodes/s1/lost", data={"confirm": "s1", "csrf_token": csrf_from(page)}
    )
    assert done.status_code == 200 and "repair is restoring" in done.text
    wait_until(lambda: durability(app)["repairing"] > 0, 30, "repair under way")
    time.sleep(1.5)
    cluster.kill_worker("local")
    cluster.kill_worker("s2")
    redis.flushdb()
    cluster.worker(local)
    cluster.worker(s2)
    with app.app_context():
        settings.update({"repair_max_mb_per_second": 0})
    subprocess.run(
        [str(Path(sys.executable).with_name("flask")), "--app", "wsgi", "repair"],
        cwd=ROOT,
        env=local.env,
        check=True,
        capture_output=True,
    )
    wait_until(lambda: durability(app)["fully_replicated"] == IMAGES, 240, "the cluster to heal")
    d = durability(app)
    assert d["under_replicated"] == d["without_copy"] == d["repairing"] == 0
    assert_copies_on_distinct_nodes(app, 2, {"local", "s2"})
    lost_pool = pools["s1"]
    assert not db_call(
        app,
        lambda db: db.session.execute(
            db.select(ImageCopy.id).where(
                ImageCopy.pool_id == lost_pool, ImageCopy.status != "missing"
            )
        ).first(),
    )
    del pool_dirs[lost_pool]
    assert_disks_match_the_database(app, pool_dirs)
    served_everywhere(app, owner, local.url, uuids, forbidden=s1.url)

    # 5. A flipped byte in a variant on s2: one scrub pass finds it, the copy is no longer
    # linked, repair rewrites it from the good copy (on the app node: its worker waits).
    def on_s2(db):
        copy = db.session.execute(
            db.select(ImageCopy).where(ImageCopy.pool_id == pools["s2"]).limit(1)
        ).scalar_one()
        from pixelfox.models import Image

        image = db.session.get(Image, copy.image_id)
        variant = next(v for v in image.variants if v.kind == "thumbnail_medium_webp")
        return image.uuid, variant.stored_path, variant.sha256

    uuid, rel, good = db_call(app, on_s2)
    victim = s2.uploads / rel
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x5A
    victim.write_bytes(bytes(data))
    with app.app_context():  # the app node's worker (and its heartbeats) pause for a while
        settings.update({"node_down_after_seconds": 600})
    cluster.kill_worker("local")
    scrubbed = subprocess.run(
        [str(Path(sys.executable).with_name("flask")), "--app", "wsgi", "scrub"],
        cwd=ROOT,
        env=s2.env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "'corrupt': 1" in scrubbed.stdout, scrubbed.stdout
    row_status = db_call(
        app,
        lambda db: (
            db.session.execute(
                db.select(ImageCopy.status)
                .join(ImageCopy.pool)
                .where(StoragePool.node_id == "s2", ImageCopy.error.like("scrub:%"))
            )
            .scalars()
            .all()
        ),
    )
    assert row_status == ["corrupt"]
    status = owner.get(f"{local.url}/api/v1/images/{uuid}/status").json()
    assert status["copies"]["verified"] == 1 and status["copies"]["nodes"] == ["local"]
    assert all(
        u.startswith(local.url) for u in [status["original_url"], *status["variants"].values()]
    )
    assert requests.get(f"{s2.url}/uploads/{rel}", timeout=5).status_code == 404  # not served
    cluster.worker(local)
    wait_until(lambda: victim.exists() and hashlib.sha256(victim.read_bytes()).hexdigest() == good,
               120, "the corrupt copy to be rewritten")  # fmt: skip
    wait_until(lambda: durability(app)["fully_replicated"] == IMAGES, 60, "the copy to be verified")
    assert_disks_match_the_database(app, pool_dirs)
    served_everywhere(app, owner, local.url, [uuid], forbidden=s1.url)

    # What the admin sees: s1 lost, s2's last scrub with its finding, the counts all good.
    nodes_page = admin.get(f"{local.url}/admin/nodes").text
    assert re.search(r'id="node-s1">.*?badge-down">lost<', nodes_page, re.S)
    assert re.search(r'id="node-s2">.*?1 corrupt or missing', nodes_page, re.S)
    page = admin.get(f"{local.url}/admin/durability").text
    assert f"<strong>{IMAGES}</strong><span>fully replicated" in page
    assert "without a copy" in page and "alarm" not in page
    dashboard = admin.get(f"{local.url}/admin/").text
    assert "Durability" in dashboard and "replication factor is 1" not in dashboard
