"""Tiering (SPEC §10): images nobody looks at drift from hot to warm to cold pools (one of
them a bucket of the real S3 server) through the move journal; a recent view keeps an image
where it is; a second pass moves nothing; an image in demand again comes back to hot."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from tests.conftest import ROOT, csrf_from, files_under, node_env, run_jobs
from tests.test_admin import make_admin
from tests.test_moves import add_pool, make_images
from tests.test_s3 import bucket_digests, image_files, make_pool


def tiering_cli(app, *args: str) -> str:
    """`flask --app wsgi tiering …`, a real process, as ops run it."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("flask")), "--app", "wsgi", "tiering", *args],
        cwd=ROOT,
        env=node_env(app),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def where(app, uuids) -> dict[str, str]:
    """{uuid: name of the pool holding the image}."""
    from pixelfox.services import images

    with app.app_context():
        return {u: images.by_uuid(u).pool.name for u in uuids}


def set_last_view(app, uuid, when) -> None:
    """History: the image was last viewed at `when` (as the batched view counts write it)."""
    from pixelfox.extensions import db
    from pixelfox.services import images

    with app.app_context():
        images.by_uuid(uuid).last_viewed_at = when
        db.session.commit()


def today(app):
    from pixelfox.models.base import utcnow

    return utcnow().date()


def moves_of_runs(app) -> list[tuple[int, str, str, str, int]]:
    from pixelfox.extensions import db
    from pixelfox.models import PoolMove

    with app.app_context():
        return [
            (m.tiering_run_id, m.kind, m.source.name, m.target.name, m.total)
            for m in db.session.execute(db.select(PoolMove).order_by(PoolMove.id)).scalars()
        ]


def test_old_images_drift_to_warm_and_to_a_cold_bucket_and_a_second_pass_moves_nothing(
    app, client, auth, tmp_path, s3_server, bucket
):
    from pixelfox.models.base import utcnow
    from pixelfox.services import images

    uuids = make_images(app, client, auth, tmp_path, 4)  # default pool (hot), created today
    add_pool(app, tmp_path, "warm", storage_tier="warm")
    cold = make_pool(app, s3_server, bucket, name="glacier", storage_tier="cold")
    never_a, never_b, month_old, recent = uuids
    as_of = today(app) + timedelta(days=200)  # never viewed since upload: 200 days idle → cold
    noon = utcnow().replace(year=as_of.year, month=as_of.month, day=as_of.day, hour=12)
    set_last_view(app, month_old, noon - timedelta(days=100))  # → warm
    set_last_view(app, recent, noon - timedelta(days=5))  # stays hot
    before = {u: image_files(app, u) for u in uuids}

    preview = tiering_cli(app, "--dry-run", "--now", as_of.isoformat())
    assert "default (hot) → glacier (cold): 2 images" in preview, preview
    assert "default (hot) → warm (warm): 1 images" in preview, preview
    assert f"dry run as of {as_of}: 3 images" in preview
    assert moves_of_runs(app) == [], "a dry run moves nothing"

    out = tiering_cli(app, "--now", as_of.isoformat())
    assert "3 images" in out and "in 2 moves" in out, out
    run_moves = moves_of_runs(app)
    assert sorted((k, s, t, n) for _r, k, s, t, n in run_moves) == [
        ("tiering", "default", "glacier", 2),
        ("tiering", "default", "warm", 1),
    ]
    run_jobs(app)
    assert where(app, uuids) == {
        never_a: "glacier",
        never_b: "glacier",
        month_old: "warm",
        recent: "default",
    }
    # Verified copies: every file of the cold images is in the bucket with its recorded
    # digest, the warm image is on the warm disk, and nothing of them is left behind.
    in_bucket = bucket_digests(s3_server, bucket)
    for u in (never_a, never_b):
        assert image_files(app, u) == before[u]
        for key, digest in before[u].items():
            assert in_bucket[key] == digest, key
    assert len(in_bucket) == sum(len(before[u]) for u in (never_a, never_b))
    assert image_files(app, month_old) == before[month_old]
    warm = tmp_path / "warm"
    warm_files = {p.relative_to(warm).as_posix() for p in files_under(warm)}
    assert warm_files >= set(before[month_old]), "the warm image's files are on the warm disk"
    uploads = Path(app.config["UPLOADS_DIR"])
    left = {p.relative_to(uploads).as_posix() for p in files_under(uploads)}
    for u in (never_a, never_b, month_old):
        assert not left & set(before[u]), "the source files of a moved image are deleted"
    assert set(before[recent]) <= left
    with app.test_request_context():
        cold_image = images.by_uuid(never_a)
        assert cold_image.storage_pool_id == cold
        assert images.file_url(cold_image, cold_image.stored_path).startswith(s3_server.endpoint)

    again = tiering_cli(app, "--now", as_of.isoformat())
    assert "0 images" in again and "in 0 moves" in again, again
    assert "every image is where the rules want it" in again
    assert len(moves_of_runs(app)) == 2, "the second pass starts no move"

    # The admin page: the rules, today's preview, the runs with their moves, run now.
    auth.logout()
    make_admin(app, client)
    page = client.get("/admin/tiering")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "not viewed for <strong>30 days</strong>" in html
    assert "Nothing would move today." in html
    assert "glacier" in html and "warm" in html and "cli" in html
    moves_page = client.get("/admin/moves").get_data(as_text=True)
    assert moves_page.count("tiering run #") == 2
    assert client.post("/admin/tiering/run").status_code == 400, "CSRF is required"
    resp = client.post("/admin/tiering/run", data={"csrf_token": csrf_from(html)})
    assert resp.status_code == 303
    html = client.get("/admin/tiering").get_data(as_text=True)
    assert "moved nothing" in html and "<td>admin</td>" in html


def test_views_keep_images_in_place_promote_them_back_and_missing_tiers_are_explained(
    app, client, auth, tmp_path
):
    from pixelfox.services import settings, tiering, viewcounts

    uuids = make_images(app, client, auth, tmp_path, 2)
    _no_upload_endpoint(app, "default")
    add_pool(app, tmp_path, "warm", storage_tier="warm")
    popular, quiet = uuids
    out = tiering_cli(app, "--now", (today(app) + timedelta(days=40)).isoformat())
    assert "2 images" in out, out
    run_jobs(app)
    assert where(app, uuids) == {popular: "warm", quiet: "warm"}

    # Real views through the viewer, counted in Redis and flushed in a batch.
    for _ in range(3):
        assert client.get(f"/image/{popular}").status_code == 200
    assert client.get(f"/image/{quiet}").status_code == 200
    with app.app_context():
        viewcounts.flush()
        settings.update({"tiering_promote_views_per_day": 2})
    out = tiering_cli(app)
    assert "1 images" in out, out
    run_jobs(app)
    assert where(app, uuids) == {popular: "default", quiet: "warm"}, (
        "3 views in a day (> 2) bring an image back to hot; 1 view keeps it where it is"
    )

    # No cold pool: images due for cold storage stay, and the dashboard says why.
    with app.app_context():
        settings.update({"tiering_enabled": True, "tiering_promote_views_per_day": 0})
    out = tiering_cli(app, "--now", (today(app) + timedelta(days=400)).isoformat())
    assert "Pool warm: 1 image due for cold storage cannot move" in out, out
    assert "Pool default: 1 image due for cold storage moved to warm storage for now" in out
    assert "no active pool of tier cold" in out
    assert where(app, uuids)[quiet] == "warm"
    auth.logout()
    make_admin(app, client)
    dashboard = client.get("/admin/").get_data(as_text=True)
    assert "no active pool of tier cold" in dashboard

    # The scheduled pass: once a day, only when tiering is on.
    with app.app_context():
        first = tiering.daily()
        assert first.startswith("run "), first
        assert tiering.daily() == "done today"
        settings.update({"tiering_enabled": False})
        assert tiering.daily() == "off"


def _no_upload_endpoint(app, name) -> None:
    """No web server answers at the default pool's upload endpoint in these tests, so its
    heartbeat would call it unhealthy; a pool without one is judged by its disk alone."""
    from pixelfox.extensions import db
    from pixelfox.models import StoragePool
    from pixelfox.services import heartbeat

    with app.app_context():
        pool = db.session.execute(
            db.select(StoragePool).where(StoragePool.name == name)
        ).scalar_one()
        pool.upload_api_url = None
        db.session.commit()
        heartbeat.beat()


def test_a_pool_an_admin_is_emptying_takes_no_tiering_moves(app, client, auth, tmp_path):
    from pixelfox.extensions import db
    from pixelfox.models import PoolMove, StoragePool
    from pixelfox.services import moves

    uuids = make_images(app, client, auth, tmp_path, 1)
    warm = add_pool(app, tmp_path, "warm", storage_tier="warm")
    spare = add_pool(app, tmp_path, "spare", storage_tier="archive")
    with app.app_context():  # the admin empties the warm pool into the spare one
        moves.start(
            db.session.get(StoragePool, warm), db.session.get(StoragePool, spare), None, False
        )
    day = (today(app) + timedelta(days=40)).isoformat()
    out = tiering_cli(app, "--now", day)
    assert "0 images" in out, out
    assert "every active pool of tier warm is being emptied by a move" in out
    assert where(app, uuids) == {uuids[0]: "default"}
    with app.app_context():  # once that move has ended, the pool takes images again
        for move in db.session.execute(db.select(PoolMove)).scalars():
            moves.set_status(move, "cancel")
    out = tiering_cli(app, "--now", day)
    assert "1 images" in out, out
    run_jobs(app)
    assert where(app, uuids) == {uuids[0]: "warm"}
