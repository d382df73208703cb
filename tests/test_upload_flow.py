"""Uploading every good fixture through the web form, processing it, and viewing it."""

from __future__ import annotations

import pytest

from tests.conftest import files_under, fixture_path, run_jobs, upload

GOOD = {
    "photo.jpg": ("image/jpeg", "jpeg"),
    "alpha.png": ("image/png", "png"),
    "anim.gif": ("image/gif", "gif"),
    "photo.webp": ("image/webp", "webp"),
    "photo.avif": ("image/avif", "avif"),
    "photo.bmp": ("image/bmp", "bmp"),
    "photo.heic": ("image/heic", "heic"),
    "tiny.png": ("image/png", "png"),
}
ALL_KINDS = {
    "webp",
    "avif",
    "thumbnail_small_original",
    "thumbnail_small_webp",
    "thumbnail_small_avif",
    "thumbnail_medium_original",
    "thumbnail_medium_webp",
    "thumbnail_medium_avif",
}


def real_format(path) -> tuple[str, int, int, int]:
    """The container the bytes really are (magic bytes), and what ImageMagick decodes."""
    from pixelfox.imaging.magick import Image
    from pixelfox.imaging.sniff import detect

    with open(path, "rb") as fh:
        kind = detect(fh.read(4096))
    with Image(filename=f"{kind}:{path}") as img:
        return kind, img.width, img.height, len(img.sequence)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_fixture_is_processed_with_the_right_variants(app, client, auth, name):
    from pixelfox.extensions import db
    from pixelfox.models import Image
    from pixelfox.storage import paths

    auth.register()
    resp = upload(client, fixture_path(name))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    body = resp.get_json()
    uuid = body["image_uuid"]
    assert body["view_url"].endswith(f"/image/{uuid}")
    assert body["status_url"].endswith(f"/api/v1/images/{uuid}/status")

    status = client.get(f"/api/v1/images/{uuid}/status").get_json()
    assert status["status"] == "pending" and status["complete"] is False

    assert run_jobs(app) == 1
    status = client.get(f"/api/v1/images/{uuid}/status").get_json()
    assert status["status"] == "complete", status
    assert status["complete"] is True and status["failed"] is False

    with app.app_context():
        image = db.session.execute(db.select(Image).where(Image.uuid == uuid)).scalar_one()
        mime, container = GOOD[name]
        assert image.mime_type == mime
        assert image.stored_path.startswith("original/")
        kinds = {v.kind: v for v in image.variants}
        expected = set(ALL_KINDS)
        if name == "tiny.png":  # 40×30: AVIF needs both sides ≥ 64 px
            expected -= {"avif", "thumbnail_small_avif", "thumbnail_medium_avif"}
        assert set(kinds) == expected
        assert set(status["variants"]) == expected
        for kind, variant in kinds.items():
            assert not variant.stored_path.startswith("/")
            path = paths.resolve(image.pool.base_path, variant.stored_path)
            fmt, w, h, frames = real_format(path)
            assert (w, h) == (variant.width, variant.height)
            assert path.stat().st_size == variant.size
            if kind.endswith("_original"):
                assert fmt == container, f"{kind} of {name} is {fmt}"
            else:
                assert fmt == kind.rsplit("_", 1)[-1]  # webp / avif
            if kind.startswith("thumbnail_small"):
                assert w == min(200, image.width)
            if kind.startswith("thumbnail_medium"):
                assert w == min(500, image.width)
            if name == "anim.gif" and kind.endswith("_original"):
                assert frames > 1, "animated GIF thumbnails stay animated"
    # The served original, every variant: fetched through /uploads/ with the right type.
    for url in [status["original_url"], *status["variants"].values()]:
        path = url.split("127.0.0.1:4000", 1)[1]
        with client.get(path) as got:
            assert got.status_code == 200, path
            assert got.headers["X-Content-Type-Options"] == "nosniff"
            assert got.mimetype.startswith("image/")
            assert "max-age" in got.headers["Cache-Control"]


def test_exif_orientation_applied_and_gps_stripped(app, client, auth):
    from pixelfox.extensions import db
    from pixelfox.imaging.magick import Image as WandImage
    from pixelfox.models import Image
    from pixelfox.storage import paths

    auth.register()
    uuid = upload(client, fixture_path("photo.jpg")).get_json()["image_uuid"]
    run_jobs(app)
    with app.app_context():
        image = db.session.execute(db.select(Image).where(Image.uuid == uuid)).scalar_one()
        # photo.jpg is 2400×1600 with EXIF orientation "rotate 90": served upright.
        assert (image.width, image.height) == (1600, 2400)
        files = [image.stored_path] + [v.stored_path for v in image.variants]
        for rel in files:
            with WandImage(filename=str(paths.resolve(image.pool.base_path, rel))) as img:
                exif = {k: v for k, v in img.metadata.items() if k.startswith("exif:")}
                assert not any("GPS" in k for k in exif), rel
                assert img.orientation in ("undefined", "top_left"), rel
        # What is stored is what the DB says.
        from pixelfox.storage.local import hash_file

        size, digest = hash_file(paths.resolve(image.pool.base_path, image.stored_path))
        assert (size, digest) == (image.size, image.sha256)
        assert image.source_sha256 != image.sha256  # rewritten without metadata


def test_viewer_polls_until_done_then_shows_grid_and_copy_boxes(app, client, auth):
    auth.register()
    uuid = upload(client, fixture_path("alpha.png")).get_json()["image_uuid"]
    page = client.get(f"/image/{uuid}").get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in page and "Waiting for a worker" in page
    run_jobs(app)
    fragment = client.get(f"/image/{uuid}/status").get_data(as_text=True)
    assert "hx-trigger" not in fragment  # polling stops once processing has ended
    for label in ("Direct link", "HTML", "BBCode", "Markdown", "Share link"):
        assert label in fragment
    assert "[img]" in fragment and "/uploads/variants/" in fragment


def test_share_link_redirects_to_viewer(app, client, auth):
    from pixelfox.extensions import db
    from pixelfox.models import Image

    auth.register()
    uuid = upload(client, fixture_path("tiny.png")).get_json()["image_uuid"]
    with app.app_context():
        link = db.session.execute(db.select(Image.share_link).where(Image.uuid == uuid)).scalar()
    assert len(link) == 10 and link.isalnum()
    resp = client.get(f"/i/{link}")
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/image/{uuid}")
    if link.swapcase() != link:
        assert client.get(f"/i/{link.swapcase()}").status_code == 404


def test_duplicate_upload_points_to_existing_image(app, client, auth):
    auth.register()
    first = upload(client, fixture_path("tiny.png")).get_json()
    second = upload(client, fixture_path("tiny.png")).get_json()
    assert second["image_uuid"] == first["image_uuid"]
    assert second["duplicate"] is True
    originals = [p for p in files_under(app.config["UPLOADS_DIR"]) if "original" in p.parts]
    assert len(originals) == 1


def test_form_upload_redirects_browser_and_htmx(app, client, auth):
    auth.register()
    resp = upload(client, fixture_path("tiny.png"), accept_json=False)
    assert resp.status_code == 302 and "/image/" in resp.headers["Location"]
    resp = upload(client, fixture_path("alpha.png"), accept_json=False, **{"HX-Request": "true"})
    assert resp.status_code == 200 and resp.headers["HX-Redirect"].startswith("/image/")
