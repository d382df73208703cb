"""PixelFox: a self-hosted image host. `create_app` wires config, extensions and blueprints."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from flask import Flask, Request
from jinja2 import StrictUndefined

from pixelfox.config import Config, var_dir

__version__ = "0.1.0"


class UploadRequest(Request):
    """Multipart file parts go to TMP_DIR on disk, never whole into memory."""

    def _get_file_stream(
        self, total_content_length, content_type, filename=None, content_length=None
    ):
        from flask import current_app

        directory = current_app.config["TMP_DIR"]
        os.makedirs(directory, exist_ok=True)
        return tempfile.TemporaryFile("wb+", dir=directory)


def create_app(config: Config | dict | None = None) -> Flask:
    app = Flask(
        __name__,
        static_folder=str(Path(__file__).resolve().parent.parent / "assets"),
        static_url_path="/assets",
    )
    app.request_class = UploadRequest
    cfg = config if isinstance(config, Config) else Config()
    app.config.from_object(cfg)
    if isinstance(config, dict):
        app.config.update(config)
    app.jinja_env.undefined = StrictUndefined
    _configure_logging(app)

    from pixelfox.extensions import csrf, db, embedded_redis_url, init_redis, login_manager, migrate

    if not app.config.get("REDIS_URL"):
        if app.config.get("PRODUCTION"):
            raise RuntimeError("REDIS_URL or CACHE_HOST must be set when PIXELFOX_ENV=production")
        app.config["REDIS_URL"] = embedded_redis_url(var_dir())
    for key in ("UPLOADS_DIR", "TMP_DIR"):
        os.makedirs(app.config[key], exist_ok=True)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        Path(app.config["SQLALCHEMY_DATABASE_URI"][len("sqlite:///") :]).parent.mkdir(
            parents=True, exist_ok=True
        )

    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent.parent / "migrations"))
    init_redis(app)

    from pixelfox.web import hooks

    hooks.init_app(app)  # request-size limits must run before CSRF parses the form
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in first."

    from pixelfox import models  # noqa: F401  (register tables with the metadata)
    from pixelfox.admin import bp as admin_bp
    from pixelfox.api import bp as api_bp
    from pixelfox.web import auth, user, views

    app.register_blueprint(views.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(user.bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(admin_bp)
    csrf.exempt(api_bp)  # API keys, not cookies; session callers are checked in the views

    from pixelfox import cli

    cli.init_app(app)
    return app


def _configure_logging(app: Flask) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
