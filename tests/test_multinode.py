"""Two nodes for real: an app node (`local`) and a storage node (`s1`) as separate web
processes on 127.0.0.1 (own ports and upload dirs, shared MariaDB and Redis), with real
`rq worker node-local` / `rq worker node-s1` processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, browser_login, files_under, fixture_path, free_port, node_env


class Node:
    def __init__(self, app, node_id: str, root: Path, app_origin: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.node_id = node_id
        self.uploads = root / node_id / "uploads"
        self.env = node_env(
            app,
            NODE_ID=node_id,
            PUBLIC_DOMAIN=self.url,
            UPLOADS_DIR=self.uploads,
            TMP_DIR=root / node_id / "tmp",
            CORS_ORIGINS=app_origin or self.url,
        )
        self.log = root / f"{node_id}-web.log"
        self.web = None

    def start(self):
        flask = os.path.join(os.path.dirname(sys.executable), "flask")
        self.web = subprocess.Popen(
            [flask, "--app", "wsgi", "run", "--port", str(self.port), "--no-reload"],
            cwd=ROOT,
            env=self.env,
            stdout=open(self.log, "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # signals meant for this process group stay there
        )  # noqa: SIM115
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                requests.get(f"{self.url}/api/v1/ping", timeout=1)
                return self
            except requests.RequestException:
                time.sleep(0.3)
        raise RuntimeError(self.log.read_text())

    def worker(self, app, *args):
        """`rq worker --url $REDIS_URL node-<id>` with this node's environment."""
        rq = str(Path(sys.executable).with_name("rq"))
        return subprocess.Popen(
            [rq, "worker", "--url", app.config["REDIS_URL"], *args, f"node-{self.node_id}"],
            cwd=ROOT,
            env=self.env,
            stdout=open(self.log.with_suffix(".worker.log"), "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,  # signals meant for this process group stay there
        )

    def stop(self):
        if self.web and self.web.poll() is None:
            self.web.terminate()
            self.web.wait(timeout=10)


def prefer_s1(s1: Node):
    """s1 made its own pool on first start (SPEC §7); give it priority over the app node's."""
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool

    pool = db.session.execute(
        db.select(StoragePool).where(StoragePool.node_id == "s1")
    ).scalar_one()
    assert pool.name == "default-s1" and not pool.is_default
    assert pool.base_path == str(s1.uploads) and pool.public_base_url == s1.url
    pool.priority = 10
    db.session.commit()
    return pool.id


def wait_status(session, url, want, timeout=60):
    deadline = time.time() + timeout
    body = {}
    while time.time() < deadline:
        body = session.get(url, timeout=5).json()
        if body["status"] == want:
            return body
        time.sleep(0.3)
    return body


@pytest.fixture
def cluster(app, tmp_path):
    app_node = Node(app, "local", tmp_path)
    s1 = Node(app, "s1", tmp_path, app_origin=app_node.url)
    app_node.start()
    s1.start()
    procs = []
    yield app_node, s1, procs
    for p in procs:
        if p.poll() is None:
            p.terminate()
            p.wait(timeout=15)
    app_node.stop()
    s1.stop()


def test_direct_upload_lands_on_s1_and_s1_processes_and_serves_it(app, cluster):
    from pixelfox.services import settings

    app_node, s1, procs = cluster
    requests.get(f"{app_node.url}/", timeout=5)  # the app node gets its default pool
    with app.app_context():
        s1_pool_id = prefer_s1(s1)
        settings.update({"direct_upload_enabled": True})
    procs.append(app_node.worker(app))  # node-local only: s1's worker is down for now

    browser, csrf = browser_login(app_node.url, "uploader")
    path = fixture_path("photo.jpg")
    sess = browser.post(
        f"{app_node.url}/api/internal/upload/sessions",
        json={"file_size": path.stat().st_size},
        headers={"X-CSRFToken": csrf},
    ).json()
    assert sess["upload_url"] == f"{s1.url}/api/internal/upload"
    assert sess["pool_id"] == s1_pool_id
    # The browser sends the file straight to s1 (CORS preflight first).
    pre = requests.options(
        sess["upload_url"],
        headers={"Origin": app_node.url, "Access-Control-Request-Method": "POST"},
        timeout=5,
    )
    assert pre.status_code == 204 and pre.headers["Access-Control-Allow-Origin"] == app_node.url
    with open(path, "rb") as fh:
        resp = requests.post(
            sess["upload_url"],
            files={"file": ("photo.jpg", fh)},
            headers={"Authorization": f"Bearer {sess['token']}", "Origin": app_node.url},
            timeout=30,
        )
    assert resp.status_code == 201, resp.text
    status_url = resp.json()["status_url"]
    assert status_url.startswith(s1.url)  # links are built by the node that answered
    status_url = status_url.replace(s1.url, app_node.url)
    # Bytes are on s1's disk only.
    assert [p for p in files_under(s1.uploads) if "original" in p.parts]
    assert not [p for p in files_under(app_node.uploads) if "original" in p.parts]
    # s1's worker is not running: the job waits on node-s1 (never taken by node-local).
    time.sleep(3)
    assert browser.get(status_url).json()["status"] == "pending"
    procs.append(s1.worker(app))
    body = wait_status(browser, status_url, "complete")
    assert body["status"] == "complete", body
    # Every file link points at s1, and s1 serves it; the app node does not have it.
    urls = [body["original_url"], *body["variants"].values()]
    assert all(u.startswith(f"{s1.url}/uploads/") for u in urls)
    for url in urls:
        got = requests.get(url, timeout=5)
        assert got.status_code == 200 and got.headers["X-Content-Type-Options"] == "nosniff"
    app_copy = requests.get(urls[1].replace(s1.url, app_node.url), timeout=5)
    assert app_copy.status_code == 404
    assert [p for p in files_under(s1.uploads) if "variants" in p.parts]
    assert not [p for p in files_under(app_node.uploads) if "variants" in p.parts]

    # Private: the app node mints signed URLs that s1 checks; unsigned requests get 404.
    with app.app_context():
        from pixelfox.extensions import db
        from pixelfox.models import Image

        db.session.execute(db.update(Image).values(visibility="private"))
        db.session.commit()
    body = browser.get(status_url).json()
    signed = body["variants"]["thumbnail_small_webp"]
    assert signed.startswith(f"{s1.url}/uploads/") and "sig=" in signed
    assert requests.get(signed, timeout=5).status_code == 200
    assert requests.get(signed.split("?")[0], timeout=5).status_code == 404

    # Heartbeats of both nodes reach the admin pages.
    from pixelfox.services import accounts

    with app.app_context():
        accounts.create_user("boss", "boss@example.org", "admin pass 1", "admin")
        from rq import Queue

        from pixelfox.extensions import get_redis

        for node in ("local", "s1"):
            Queue(f"node-{node}", connection=get_redis()).enqueue(
                "pixelfox.jobs.periodic.heartbeat"
            )
    admin = requests.Session()
    token = re.search(
        r'name="csrf_token"[^>]*value="([^"]+)"', admin.get(f"{app_node.url}/login").text
    ).group(1)
    admin.post(
        f"{app_node.url}/login",
        data={"username": "boss", "password": "admin pass 1", "csrf_token": token},
    )
    deadline = time.time() + 30
    page = ""
    while time.time() < deadline:
        page = admin.get(f"{app_node.url}/admin/nodes").text
        if page.count("badge-healthy") >= 2:
            break
        time.sleep(0.5)
    assert "<code>s1</code>" in page and "<code>local</code>" in page
    assert page.count("badge-healthy") >= 2, page
    badges = admin.get(f"{app_node.url}/admin/storage/health").text
    assert f'id="badge-{s1_pool_id}"' in badges and "healthy" in badges


def test_rate_limit_holds_across_nodes(app, cluster):
    from pixelfox.services import settings

    app_node, s1, _procs = cluster
    requests.get(f"{app_node.url}/", timeout=5)
    with app.app_context():
        prefer_s1(s1)
        settings.update({"upload_user_rate_limit_per_minute": 2})
    browser, csrf = browser_login(app_node.url, "limited")

    def direct(name):
        path = fixture_path(name)
        sess = browser.post(
            f"{app_node.url}/api/internal/upload/sessions",
            json={"file_size": path.stat().st_size},
            headers={"X-CSRFToken": csrf},
        ).json()
        with open(path, "rb") as fh:
            return requests.post(
                sess["upload_url"],
                files={"file": (name, fh)},
                headers={"Authorization": f"Bearer {sess['token']}"},
                timeout=30,
            )

    def form(name):
        with open(fixture_path(name), "rb") as fh:
            return browser.post(
                f"{app_node.url}/upload",
                files={"file": (name, fh)},
                data={"csrf_token": csrf},
                headers={"Accept": "application/json"},
            )

    assert form("tiny.png").status_code == 201  # counted on the app node
    assert direct("alpha.png").status_code == 201  # counted on s1
    third = direct("anim.gif")
    assert third.status_code == 429 and int(third.headers["Retry-After"]) >= 1
    assert form("photo.webp").status_code == 429
