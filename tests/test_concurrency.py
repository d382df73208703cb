"""Concurrency for real: several browsers upload at once into a pool while the node's two
workers process images and a move drains that pool into another one. MariaDB row locks
are where this can go wrong (a deadlock answers 500 or fails a job), so every request and
job must succeed and every counter must add up."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from tests.conftest import browser_login, files_under, fixture_path
from tests.test_multinode import Node
from tests.test_multinode_moves import images_state, progress, start_move, wait_until

UPLOADERS = 4
PER_UPLOADER = 8


def _make_files(tmp_path: Path) -> list[list[Path]]:
    from pixelfox.imaging.magick import Image

    out = []
    with Image(filename=f"jpeg:{fixture_path('photo.jpg')}") as photo:
        for u in range(UPLOADERS):
            files = []
            for i in range(PER_UPLOADER):
                path = tmp_path / f"c{u}-{i}.jpg"
                with photo.clone() as img:
                    img.crop(left=u * 40 + i * 7, top=i * 11, width=300 + u, height=220 + i)
                    img.save(filename=f"jpeg:{path}")
                files.append(path)
            out.append(files)
    return out


def test_uploads_processing_and_a_move_at_once(app, tmp_path):
    from pixelfox.services import heartbeat, poolform

    node = Node(app, "local", tmp_path).start()
    workers = [node.worker(app, "--with-scheduler"), node.worker(app)]
    try:
        files = _make_files(tmp_path)
        sessions = [browser_login(node.url, f"user{u}") for u in range(UPLOADERS)]
        # A first wave, processed, so the move has something to carry.
        first = []
        for (session, csrf), path in zip(sessions, [f[0] for f in files], strict=True):
            with open(path, "rb") as fh:
                resp = session.post(
                    f"{node.url}/upload",
                    files={"file": (path.name, fh)},
                    data={"csrf_token": csrf},
                    headers={"Accept": "application/json"},
                )
            assert resp.status_code == 201, resp.text
            first.append(resp.json()["image_uuid"])
        wait_until(
            lambda: all(s == "complete" for _u, s, _p in images_state(app)), 120, what="wave 1"
        )
        with app.app_context():
            cold = poolform.save_pool(
                None,
                {
                    "name": "cold",
                    "node_id": "local",
                    "storage_tier": "cold",
                    "base_path": str(tmp_path / "cold"),
                    "is_active": "on",
                    "priority": "50",
                    "public_base_url": node.url,
                },
            ).id
            heartbeat.beat()
            source = next(p for _u, _s, p in images_state(app))

        statuses: list[int] = []
        errors: list[str] = []

        def uploader(u: int) -> None:
            session, csrf = sessions[u]
            for path in files[u][1:]:
                try:
                    with open(path, "rb") as fh:
                        resp = session.post(
                            f"{node.url}/upload",
                            files={"file": (path.name, fh)},
                            data={"csrf_token": csrf},
                            headers={"Accept": "application/json"},
                            timeout=60,
                        )
                    statuses.append(resp.status_code)
                    if resp.status_code != 201:
                        errors.append(resp.text[:300])
                except Exception as exc:  # noqa: BLE001  (reported below)
                    errors.append(repr(exc))

        threads = [threading.Thread(target=uploader, args=(u,)) for u in range(UPLOADERS)]
        for t in threads:
            t.start()
        move_id = start_move(app, source, cold)  # while the uploads pour in
        for t in threads:
            t.join(timeout=300)
        assert errors == [] and statuses == [201] * (UPLOADERS * (PER_UPLOADER - 1))

        wait_until(
            lambda: progress(app, move_id)["status"] in ("done", "failed"), 180, what="the move"
        )
        wait_until(
            lambda: all(s in ("complete", "failed") for _u, s, _p in images_state(app)),
            180,
            what="processing",
        )
        state = images_state(app)
        assert len(state) == UPLOADERS * PER_UPLOADER
        assert all(s == "complete" for _u, s, _p in state), state
        p = progress(app, move_id)
        assert p["done"] + p["failed"] + p["skipped"] == p["total"] >= UPLOADERS
        # The first wave was complete when the move started: all of it moved. Images uploaded
        # during the move are moved too if the planner saw them done, or stay (an item failed
        # with "still being processed", to retry): never lost, never half-moved.
        moved = {u for u, _s, pool in state if pool == cold}
        assert set(first) <= moved
        for _u, _s, pool in state:
            assert pool in (source, cold)
        # No worker job failed and no request hit a server error.
        log = node.log.read_text() + node.log.with_suffix(".worker.log").read_text()
        assert "Deadlock" not in log and " 500 -" not in log
        assert not re.search(r"Traceback", log), log[-3000:]
        assert not [p for p in files_under(tmp_path) if p.suffix == ".part"]
    finally:
        for w in workers:
            w.terminate()
            w.wait(timeout=15)
        node.stop()
