"""Backup and restore on MariaDB: dump → fresh database → restore → the app reads it."""

from __future__ import annotations

import json

import pymysql
import pytest

from tests.conftest import (
    DATABASE_URL,
    DB_HOST,
    DB_PASSWORD,
    DB_PORT,
    DB_USER,
    RUN_ID,
    Auth,
    base_config,
    fixture_path,
    run_jobs,
    upload,
)


@pytest.fixture
def restore_database():
    name = f"pixelfox_test_{RUN_ID}_restore"
    conn = pymysql.connect(host=DB_HOST, port=DB_PORT, user=DB_USER, password=DB_PASSWORD)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    yield DATABASE_URL.replace(f"/pixelfox_test_{RUN_ID}?", f"/{name}?")
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


def test_backup_restore_round_trip(app, client, auth, tmp_path, restore_database):
    from pixelfox import create_app
    from pixelfox.services import settings

    auth.register("keeper", password="keep me safe 1")
    uuid = upload(client, fixture_path("photo.webp")).get_json()["image_uuid"]
    run_jobs(app)
    with app.app_context():
        settings.update({"site_title": "Restored Fox"})
    before = client.get(f"/api/v1/images/{uuid}").get_json()

    runner = app.test_cli_runner()
    out = tmp_path / "backup"
    result = runner.invoke(args=["backup", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "node local:" in result.output and "SECRET_KEY" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tables"]["images"] == 1 and manifest["tables"]["image_variants"] == 8
    assert manifest["tables"]["users"] == 1 and manifest["dialect"] in ("mysql", "mariadb")
    # Writing into a directory that is not empty is refused.
    again = runner.invoke(args=["backup", "--output", str(out)])
    assert again.exit_code != 0 and "not empty" in again.output

    # A fresh database, migrated to the backup's revision, then restored.
    restored = create_app(
        base_config(
            tmp_path,
            SQLALCHEMY_DATABASE_URI=restore_database,
            UPLOADS_DIR=app.config["UPLOADS_DIR"],
        )
    )
    from flask_migrate import upgrade

    with restored.app_context():
        upgrade(revision=manifest["alembic_revision"])
    rrunner = restored.test_cli_runner()
    with restored.app_context():  # the CLI acts on the current app: make it the restored one
        refused = rrunner.invoke(args=["restore", "--input", str(out)])
        assert refused.exit_code != 0 and "--yes" in refused.output
        result = rrunner.invoke(args=["restore", "--input", str(out), "--yes"])
        assert result.exit_code == 0, result.output
        # Restoring twice is refused: the database is no longer empty.
        twice = rrunner.invoke(args=["restore", "--input", str(out), "--yes"])
        assert twice.exit_code != 0 and "not empty" in twice.output

    # The app reads the restored data: login, the image, its variants, the settings.
    rclient = restored.test_client()
    rauth = Auth(rclient)
    assert rauth.login("keeper", "keep me safe 1").status_code == 302
    after = rclient.get(f"/api/v1/images/{uuid}").get_json()
    for key in ("uuid", "status", "sha256", "width", "height", "original_url", "variants"):
        assert after[key] == before[key], key
    assert "Restored Fox" in rclient.get("/").get_data(as_text=True)
    with rclient.get(after["variants"]["webp"].split(":4000", 1)[1]) as resp:
        assert resp.status_code == 200
    # New rows continue after the restored ids.
    second = upload(rclient, fixture_path("tiny.png")).get_json()
    assert second["image_uuid"] != uuid
    with restored.app_context():
        from pixelfox.extensions import db

        db.session.remove()
        db.engine.dispose()


def test_restore_refuses_a_wrong_revision(app, tmp_path, restore_database):
    from pixelfox import create_app

    runner = app.test_cli_runner()
    out = tmp_path / "b"
    assert runner.invoke(args=["backup", "--output", str(out)]).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["alembic_revision"] = "0000deadbeef"
    (out / "manifest.json").write_text(json.dumps(manifest))
    restored = create_app(base_config(tmp_path, SQLALCHEMY_DATABASE_URI=restore_database))
    from flask_migrate import upgrade

    with restored.app_context():
        upgrade()
        result = restored.test_cli_runner().invoke(args=["restore", "--input", str(out), "--yes"])
        assert result.exit_code != 0 and "schema revision 0000deadbeef" in result.output
        from pixelfox.extensions import db

        db.engine.dispose()
