"""Container entrypoint: wait for the database, run migrations once (under a lock), then
exec the role. `python -m pixelfox.entrypoint ROLE [--dry-run]`.

Roles: web (gunicorn), worker (rq worker node-<NODE_ID>), scheduler, migrate (and exit),
or any other command, run as given. Migrations run for `web` and `migrate` unless
PIXELFOX_MIGRATE=skip; several web containers starting at once migrate one at a time.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import time

from flask_migrate import upgrade
from sqlalchemy import create_engine, text

from pixelfox import create_app
from pixelfox.config import Config, InsecureSecret, database_url, var_dir
from pixelfox.config import redis_url as configured_redis_url
from pixelfox.extensions import db
from pixelfox.queues import queue_name

ROLES = ("web", "worker", "scheduler", "migrate")


def role_command(role: str, extra: list[str]) -> list[str] | None:
    node = os.environ.get("NODE_ID", "local")
    redis_url = os.environ.get("REDIS_URL")
    if role == "web":
        return ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app", *extra]
    if role == "worker":
        if not redis_url:
            redis_url = configured_redis_url()
        if not redis_url:
            raise SystemExit("worker: set REDIS_URL or CACHE_HOST")
        # Through the environment (rq reads RQ_REDIS_URL), never argv: a password in the URL
        # would show in `ps` for every user of the host.
        os.environ["RQ_REDIS_URL"] = redis_url
        worker_class = "pixelfox.jobs.worker.Worker"  # PixelFox loaded once, not per job
        return ["rq", "worker", "-w", worker_class, "--with-scheduler", *extra, queue_name(node)]
    if role == "scheduler":
        return ["flask", "--app", "wsgi", "scheduler", *extra]
    if role == "migrate":
        return None
    return [role, *extra]


def refuse_insecure_config() -> None:
    """Stop before doing anything when production secrets are missing or weak."""
    try:
        Config()
    except InsecureSecret as exc:
        raise SystemExit(f"refusing to start: {exc}") from None


def wait_for_db(timeout: float) -> None:
    """Retry until the database answers, or give up with a clear message."""
    url = database_url()
    engine = create_engine(url, pool_pre_ping=True)
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
            return
        except Exception as exc:  # driver errors vary; all mean "not yet"
            last = exc
        if time.monotonic() >= deadline:
            engine.dispose()
            raise SystemExit(
                f"database not reachable after {timeout:.0f}s: "
                f"{type(last).__name__}: {str(last)[:200]}"
            )
        time.sleep(1)


def migrate_with_lock(lock_timeout: int = 600) -> str:
    """`flask db upgrade` once: MySQL/MariaDB GET_LOCK, or a file lock for SQLite."""
    app = create_app()
    with app.app_context():
        if db.engine.dialect.name in ("mysql", "mariadb"):
            with db.engine.connect() as conn:
                got = conn.execute(
                    text("SELECT GET_LOCK('pixelfox-migrate', :t)"), {"t": lock_timeout}
                ).scalar()
                if got != 1:
                    raise SystemExit("migrate: could not take the migration lock")
                try:
                    upgrade()
                finally:
                    conn.execute(text("SELECT RELEASE_LOCK('pixelfox-migrate')"))
        else:
            lock_path = var_dir() / "migrate.lock"
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            with open(lock_path, "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                upgrade()
        revision = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
        db.engine.dispose()
    return revision


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    dry_run = "--dry-run" in argv
    argv = [a for a in argv if a != "--dry-run"]
    role, extra = (argv[0], argv[1:]) if argv else ("web", [])
    if role in ROLES:
        refuse_insecure_config()
        wait_for_db(float(os.environ.get("DB_WAIT_SECONDS", "60")))
        if role in ("web", "migrate") and os.environ.get("PIXELFOX_MIGRATE", "auto") != "skip":
            print(f"entrypoint: database at {migrate_with_lock()}", flush=True)
    command = role_command(role, extra)
    if command is None:
        return 0
    if dry_run:
        print("exec " + " ".join(command), flush=True)
        return 0
    executable = shutil.which(command[0]) or command[0]
    os.execvp(executable, command)  # noqa: S606  the role replaces this process
    return 0  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
