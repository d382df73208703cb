"""Configuration from the environment (SPEC §2); `.env` is honoured."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import quote_plus

from dotenv import load_dotenv

ROOT = Path(__file__).resolve().parent.parent
load_dotenv(ROOT / ".env", override=False)


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _flag(name: str, default: bool = False) -> bool:
    value = _env(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def var_dir() -> Path:
    return Path(_env("PIXELFOX_VAR_DIR", str(ROOT / "var")))


def _dev_secret(filename: str) -> str:
    """Generate a secret once into var/ so every dev process of this node shares it."""
    path = var_dir() / filename
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


SECRET_NAMES = ("SECRET_KEY", "UPLOAD_TOKEN_SECRET", "REPLICATION_SECRET")
MIN_SECRET_BYTES = 32
# Values shipped in .env.example / .env.storage.example (and anything in their style): a node
# that starts with one of them can be forged into (sessions, upload tokens, node copies).
EXAMPLE_SECRETS = frozenset(
    {
        "change-me-long-random-string",
        "change-me-another-long-random-string",
        "change-me-a-third-long-random-string",
        "change-me-same-as-app-node",
    }
)


class InsecureSecret(RuntimeError):
    """Production refuses to start with a missing, example, short or shared secret."""


def check_production_secrets(values: dict[str, str | None]) -> None:
    """Refuse (naming the variable) an empty secret, a value from the shipped examples, one
    shorter than 32 bytes, or two secrets with the same value."""
    for name in SECRET_NAMES:
        value = values.get(name) or ""
        if not value:
            raise InsecureSecret(f"{name} must be set when PIXELFOX_ENV=production.")
        if value in EXAMPLE_SECRETS or value.lower().startswith("change-me"):
            raise InsecureSecret(
                f"{name} still has the example value; generate one with `openssl rand -base64 48`."
            )
        if len(value.encode()) < MIN_SECRET_BYTES:
            raise InsecureSecret(f"{name} is shorter than {MIN_SECRET_BYTES} bytes.")
    for i, first in enumerate(SECRET_NAMES):
        for second in SECRET_NAMES[i + 1 :]:
            if values[first] == values[second]:
                raise InsecureSecret(f"{first} and {second} must be different values.")


def database_url() -> str:
    url = _env("DATABASE_URL")
    if url:
        return url
    host = _env("DB_HOST")
    if host:
        user = quote_plus(_env("DB_USER", "root"))
        password = _env("DB_PASSWORD", "")
        auth = f"{user}:{quote_plus(password)}" if password else user
        port = _env("DB_PORT", "3306")
        name = _env("DB_NAME", "pixelfox")
        return f"mysql+pymysql://{auth}@{host}:{port}/{name}?charset=utf8mb4"
    return f"sqlite:///{var_dir() / 'pixelfox.db'}"


def redis_url() -> str | None:
    """REDIS_URL, else CACHE_*; None means "use the embedded Redis" (dev only)."""
    url = _env("REDIS_URL")
    if url:
        return url
    host = _env("CACHE_HOST")
    if host:
        port = _env("CACHE_PORT", "6379")
        password = _env("CACHE_PASSWORD")
        auth = f":{quote_plus(password)}@" if password else ""
        return f"redis://{auth}{host}:{port}/0"
    return None


class Config:
    """Read once at app creation; settings that change at run time live in the DB (SPEC §8)."""

    def __init__(self) -> None:
        self.ENV = _env("PIXELFOX_ENV", "development")
        self.PRODUCTION = self.ENV == "production"
        if self.PRODUCTION:
            check_production_secrets({name: _env(name) for name in SECRET_NAMES})
        # Development generates what is missing (REPLICATION_SECRET stays off until set).
        self.SECRET_KEY = _env("SECRET_KEY") or _dev_secret("secret_key")
        self.UPLOAD_TOKEN_SECRET = _env("UPLOAD_TOKEN_SECRET") or _dev_secret("upload_token_secret")
        self.REPLICATION_SECRET = _env("REPLICATION_SECRET")

        self.PUBLIC_DOMAIN = _env("PUBLIC_DOMAIN", "http://127.0.0.1:4000").rstrip("/")
        self.APP_HOST = _env("APP_HOST", "127.0.0.1")
        self.APP_PORT = int(_env("APP_PORT", "4000"))
        self.NODE_ID = _env("NODE_ID", "local")
        self.UPLOADS_DIR = str(Path(_env("UPLOADS_DIR", str(var_dir() / "uploads"))).resolve())
        self.TMP_DIR = str(Path(_env("TMP_DIR", str(var_dir() / "tmp"))).resolve())
        self.DISABLE_JOB_WORKERS = _flag("DISABLE_JOB_WORKERS")
        # Plain-http node URLs to public hosts carry secrets in clear; refused unless set.
        self.ALLOW_INSECURE_NODE_URLS = _flag("ALLOW_INSECURE_NODE_URLS")
        # Origins allowed to upload straight to this node (the app node's public URL).
        self.CORS_ORIGINS = [
            o.strip().rstrip("/")
            for o in _env("CORS_ORIGINS", self.PUBLIC_DOMAIN).split(",")
            if o.strip()
        ]

        self.SQLALCHEMY_DATABASE_URI = database_url()
        self.SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
        if self.SQLALCHEMY_DATABASE_URI.startswith("mysql"):
            self.SQLALCHEMY_ENGINE_OPTIONS["pool_recycle"] = 280
        self.REDIS_URL = redis_url()

        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_SECURE = self.PUBLIC_DOMAIN.startswith("https://")
        self.REMEMBER_COOKIE_SECURE = self.SESSION_COOKIE_SECURE
        self.WTF_CSRF_TIME_LIMIT = None  # token lives as long as the session
        self.MAX_FILES_PER_UPLOAD = 20
        # Items of pool moves copying at once on one node, across all its workers.
        self.MOVE_MAX_CONCURRENT_PER_NODE = int(_env("MOVE_MAX_CONCURRENT_PER_NODE", "2"))
        # Seconds between heartbeats of every node (the scheduler's setting; failover waits
        # for node_down_after_seconds without one).
        self.HEARTBEAT_SECONDS = int(_env("HEARTBEAT_SECONDS", "60"))
        # Login throttling: failed attempts per minute per client IP, per (username, IP), and
        # per username from anywhere (only for clients that failed themselves).
        self.LOGIN_LIMIT_PER_IP = int(_env("LOGIN_LIMIT_PER_IP", "30"))
        self.LOGIN_LIMIT_PER_USERNAME = int(_env("LOGIN_LIMIT_PER_USERNAME", "10"))
        self.LOGIN_LIMIT_PER_ACCOUNT = int(_env("LOGIN_LIMIT_PER_ACCOUNT", "200"))
        # Number of reverse proxies in front of the web process (X-Forwarded-For is trusted
        # only that many hops deep); 0 = direct.
        self.PROXY_COUNT = int(_env("PROXY_COUNT", "0"))
        # Let the reverse proxy stream /uploads/ files from disk after the app's access check.
        self.ACCEL_REDIRECT_PREFIX = _env("ACCEL_REDIRECT_PREFIX")
        self.ACCEL_REDIRECT_ROOT = _env("ACCEL_REDIRECT_ROOT")
        self.TESTING = False
