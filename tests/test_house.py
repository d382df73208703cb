"""The house (issue 11): view counts off the request path, installs from the lock."""

from __future__ import annotations

import re
import tomllib

from tests.conftest import ROOT, fixture_path, run_jobs, upload


def _image(app, uuid):
    from pixelfox.extensions import db
    from pixelfox.models import Image

    with app.app_context():
        db.session.remove()
        return db.session.execute(db.select(Image).where(Image.uuid == uuid)).scalar_one()


def test_views_are_counted_in_redis_and_flushed_in_batches_exactly_once(app, client, auth):
    from pixelfox.services import viewcounts

    auth.register()
    uuid = upload(client, fixture_path("tiny.png")).get_json()["image_uuid"]
    run_jobs(app)
    for _ in range(3):
        assert client.get(f"/image/{uuid}").status_code == 200
    image = _image(app, uuid)
    assert image.view_count == 0 and image.last_viewed_at is None  # no UPDATE per view
    with app.app_context():
        assert viewcounts.flush() == {"images": 1, "views": 3}
        assert viewcounts.flush() == {"images": 0, "views": 0}  # nothing twice
    image = _image(app, uuid)
    assert image.view_count == 3 and image.last_viewed_at is not None

    # A flush that crashed after writing its chunk but before dropping its batch: the next
    # run finishes the batch without counting it again, and counts the new views.
    client.get(f"/image/{uuid}")
    with app.app_context():
        redis = app.extensions["pixelfox_redis"]
        redis.rename(viewcounts.LIVE_KEY, viewcounts.BATCH_PREFIX + "crashed")
        key = viewcounts.BATCH_PREFIX + "crashed"
        snapshot = redis.hgetall(key)
        viewcounts._apply_batch(key)  # applied ...
        redis.hset(key, mapping=snapshot)  # ... but the batch key survived the "crash"
        client.get(f"/image/{uuid}")
        assert viewcounts.flush() == {"images": 1, "views": 1}
    assert _image(app, uuid).view_count == 5


def test_every_install_comes_from_the_lock():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def pinned(lock: str) -> set[str]:
        text = (ROOT / lock).read_text()
        return {m.lower() for m in re.findall(r"^([A-Za-z0-9_.-]+)==\S+ \\", text, re.M)}

    def names(reqs: list[str]) -> set[str]:
        return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in reqs}

    runtime, dev = pinned("requirements.lock"), pinned("requirements-dev.lock")
    assert names(project["dependencies"]) <= runtime, "make lock: requirements.lock is stale"
    assert names(project["optional-dependencies"]["dev"]) | runtime <= dev
    assert "--hash=sha256:" in (ROOT / "requirements.lock").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q -r requirements-dev.lock" in makefile
    assert "pip install -q --no-deps -e ." in makefile and "\nlock:" in makefile
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements.lock" in dockerfile
    assert "pip wheel --wheel-dir /wheels --no-deps ." in dockerfile
