"""Production files, checked without a Docker engine: compose files and their variables,
Dockerfile rules, gunicorn config, the entrypoint's logic, proxy examples."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import threading

import pymysql
import pytest
import yaml

from tests.conftest import DATABASE_URL, DB_HOST, DB_PASSWORD, DB_PORT, DB_USER, ROOT, RUN_ID

sys.path.insert(0, str(ROOT / "scripts"))
import lint_dockerfile  # noqa: E402

SPEC_VARS = [
    "SECRET_KEY",
    "PUBLIC_DOMAIN",
    "APP_HOST",
    "APP_PORT",
    "DATABASE_URL",
    "DB_HOST",
    "DB_PORT",
    "DB_NAME",
    "DB_USER",
    "DB_PASSWORD",
    "REDIS_URL",
    "CACHE_HOST",
    "CACHE_PORT",
    "CACHE_PASSWORD",
    "NODE_ID",
    "UPLOADS_DIR",
    "TMP_DIR",
    "UPLOAD_TOKEN_SECRET",
    "REPLICATION_SECRET",
    "DISABLE_JOB_WORKERS",
]
COMPOSE = {
    "docker-compose.prod.yml": ".env.example",
    "docker-compose.storage.yml": ".env.storage.example",
}


def env_keys(name: str) -> set[str]:
    keys = set()
    for line in (ROOT / name).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keys.add(line.split("=", 1)[0].strip())
    return keys


@pytest.mark.parametrize("compose,env_file", sorted(COMPOSE.items()))
def test_compose_parses_and_uses_only_documented_variables(compose, env_file):
    text = (ROOT / compose).read_text()
    data = yaml.safe_load(text)
    documented = env_keys(env_file)
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", text))
    assert used, "the compose file interpolates nothing?"
    assert used <= documented, f"undocumented: {sorted(used - documented)}"
    services = data["services"]
    for svc in services.values():
        if svc.get("image", "").startswith("${PIXELFOX_IMAGE"):
            assert svc["env_file"] == ".env"
            assert svc["command"][0] in ("web", "worker", "scheduler")
    assert services["web"]["ports"] == ["127.0.0.1:4000:4000"]
    assert services["worker"]["command"] == ["worker"]
    if "storage" in compose:
        assert "scheduler" not in services
        assert services["web"]["environment"]["PIXELFOX_MIGRATE"] == "skip"
    else:
        assert services["scheduler"]["command"] == ["scheduler"]
        assert services["db"]["profiles"] == ["db"] and services["cache"]["profiles"] == ["cache"]


@pytest.mark.parametrize("env_file", sorted(set(COMPOSE.values())))
def test_env_examples_list_every_spec_variable_with_placeholders(env_file):
    keys = env_keys(env_file)
    assert set(SPEC_VARS) <= keys, sorted(set(SPEC_VARS) - keys)
    text = (ROOT / env_file).read_text()
    for secret in ("SECRET_KEY", "UPLOAD_TOKEN_SECRET", "REPLICATION_SECRET", "DB_PASSWORD"):
        assert re.search(rf"^{secret}=change-me", text, re.M), secret


def test_every_variable_the_code_reads_is_documented():
    code = (ROOT / "pixelfox" / "config.py").read_text()
    code += (ROOT / "gunicorn.conf.py").read_text() + (ROOT / "pixelfox/entrypoint.py").read_text()
    read = set(re.findall(r'_env\("([A-Z_]+)"', code))
    read |= set(re.findall(r'environ\.get\("([A-Z_]+)"', code))
    assert {"SECRET_KEY", "DB_WAIT_SECONDS", "WEB_CONCURRENCY"} <= read  # the scan works
    readme = (ROOT / "README.md").read_text()
    missing = sorted(v for v in read if f"`{v}`" not in readme)
    assert not missing, f"not in the README's configuration table: {missing}"


def test_dockerfile_follows_the_rules():
    assert lint_dockerfile.lint((ROOT / "Dockerfile").read_text()) == []
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM ") >= 2  # multi-stage
    assert "policy" in text and "MAGICK_CONFIGURE_PATH=/app/pixelfox/imaging" in text
    assert (ROOT / "pixelfox/imaging/policy.xml").exists()


def test_dockerfile_rules_catch_bad_files():
    bad = """FROM python:latest
ADD . /app
WORKDIR app
RUN apt-get install -y gcc
RUN sudo pip install flask
CMD gunicorn wsgi:app
"""
    problems = "\n".join(lint_dockerfile.lint(bad))
    for rule in (
        "DL3007",
        "DL3020",
        "DL3000",
        "DL3015",
        "DL3009",
        "DL3042",
        "DL3004",
        "DL3025",
        "DL3002",
        "HEALTHCHECK",
        "build tool",
    ):
        assert rule in problems, rule


def test_gunicorn_config_loads(tmp_path):
    env = dict(
        os.environ,
        APP_HOST="0.0.0.0",
        APP_PORT="4999",
        WEB_CONCURRENCY="5",
        DATABASE_URL=DATABASE_URL,
        REDIS_URL="redis://127.0.0.1:6379/0",
        PIXELFOX_VAR_DIR=str(tmp_path),
    )
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    out = subprocess.run(
        [gunicorn, "--check-config", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    spec = importlib.util.spec_from_file_location("gconf", ROOT / "gunicorn.conf.py")
    module = importlib.util.module_from_spec(spec)
    old = dict(os.environ)
    os.environ.update(APP_HOST="0.0.0.0", APP_PORT="4999", WEB_CONCURRENCY="5")
    try:
        spec.loader.exec_module(module)
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert module.bind == "0.0.0.0:4999" and module.workers == 5


def entrypoint(args, tmp_path, **env):
    full = dict(os.environ, PIXELFOX_VAR_DIR=str(tmp_path), DB_WAIT_SECONDS="10")
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pixelfox.entrypoint", *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def fresh_database():
    name = f"pixelfox_test_{RUN_ID}_ep"
    conn = pymysql.connect(host=DB_HOST, port=DB_PORT, user=DB_USER, password=DB_PASSWORD)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    yield DATABASE_URL.replace(f"/pixelfox_test_{RUN_ID}?", f"/{name}?"), name
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


def test_entrypoint_migrates_once_under_a_lock_then_execs_the_role(tmp_path, fresh_database):
    url, name = fresh_database
    results = []

    def run():
        results.append(
            entrypoint(
                ["migrate"], tmp_path, DATABASE_URL=url, REDIS_URL="redis://127.0.0.1:6379/0"
            )
        )

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr[-500:] for r in results]
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert all(f"database at {head}" in r.stdout for r in results)
    conn = pymysql.connect(
        host=DB_HOST, port=DB_PORT, user=DB_USER, password=DB_PASSWORD, database=name
    )
    with conn.cursor() as cur:
        cur.execute("SELECT version_num FROM alembic_version")
        assert cur.fetchall() == ((head,),)
    conn.close()
    web = entrypoint(
        ["web", "--dry-run"], tmp_path, DATABASE_URL=url, REDIS_URL="redis://127.0.0.1:6379/0"
    )
    assert web.returncode == 0 and "exec gunicorn -c gunicorn.conf.py wsgi:app" in web.stdout
    worker = entrypoint(
        ["worker", "--dry-run"],
        tmp_path,
        DATABASE_URL=url,
        NODE_ID="s1",
        REDIS_URL="redis://:cache-password-in-url@127.0.0.1:6379/3",
    )
    # rq reads the URL from RQ_REDIS_URL: the password never shows in `ps`.
    assert "exec rq worker -w pixelfox.jobs.worker.Worker --with-scheduler node-s1" in worker.stdout
    assert "cache-password-in-url" not in worker.stdout and "--url" not in worker.stdout
    assert "database at" not in worker.stdout  # workers do not migrate
    sched = entrypoint(
        ["scheduler", "--dry-run"], tmp_path, DATABASE_URL=url, REDIS_URL="redis://127.0.0.1:6379/0"
    )
    assert "exec flask --app wsgi scheduler" in sched.stdout


def _alembic_config():
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    return cfg


def test_entrypoint_gives_up_clearly_when_the_database_is_unreachable(tmp_path):
    out = entrypoint(
        ["web", "--dry-run"],
        tmp_path,
        DB_WAIT_SECONDS="2",
        DATABASE_URL="mysql+pymysql://root@127.0.0.1:1/none",
    )
    assert out.returncode != 0
    assert "database not reachable after 2s" in out.stderr


def test_proxy_examples_match_the_app_settings():
    env = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    prefix = env["ACCEL_REDIRECT_PREFIX"]
    from pixelfox.services.settings import BY_KEY

    default_mb = BY_KEY["max_upload_mb"].default
    for name in ("nginx-app.conf", "nginx-storage.conf"):
        text = (ROOT / "deploy" / name).read_text()
        assert f"location {prefix}/" in text and "internal;" in text
        assert int(re.search(r"client_max_body_size (\d+)m", text).group(1)) > default_mb
        assert "proxy_pass http://127.0.0.1:4000" in text
        # X-Forwarded-Host is set by the proxy, never passed through from the client.
        assert "proxy_set_header X-Forwarded-Host $host;" in text
        # Files served after X-Accel-Redirect keep the sandbox CSP (nginx drops upstream's).
        internal = text.split(f"location {prefix}/", 1)[1].split("}", 1)[0]
        csp = "add_header Content-Security-Policy \"default-src 'none'; sandbox\" always"
        assert csp in internal
    for name in ("Caddyfile.app", "Caddyfile.storage"):
        text = (ROOT / "deploy" / name).read_text()
        assert f"strip_prefix {prefix}" in text and "X-Accel-Redirect" in text
        accel = text.split("handle_response @accel", 1)[1]
        forward = "{http.reverse_proxy.header.Content-Security-Policy}"
        assert f"header Content-Security-Policy {forward}" in accel
        assert int(re.search(r"max_size (\d+)MB", text).group(1)) > default_mb


def test_accel_redirect_hands_files_to_the_proxy_after_the_access_check(app, client, auth):
    from tests.conftest import fixture_path, run_jobs, upload

    app.config["ACCEL_REDIRECT_PREFIX"] = "/_pixelfox_files"
    app.config["ACCEL_REDIRECT_ROOT"] = app.config["UPLOADS_DIR"]
    auth.register()
    uuid = upload(client, fixture_path("tiny.png")).get_json()["image_uuid"]
    run_jobs(app)
    status = client.get(f"/api/v1/images/{uuid}/status").get_json()
    path = status["original_url"].split(":4000", 1)[1]
    resp = client.get(path)
    assert resp.status_code == 200 and resp.data == b""
    assert resp.headers["X-Accel-Redirect"] == "/_pixelfox_files/" + path.split("/uploads/")[1]
    assert resp.headers["Content-Type"] == "image/png"
    assert "immutable" in resp.headers["Cache-Control"]
    from pixelfox.extensions import db
    from pixelfox.models import Image

    with app.app_context():
        db.session.execute(db.update(Image).values(visibility="private"))
        db.session.commit()
    denied = client.get(path)
    assert denied.status_code == 404 and "X-Accel-Redirect" not in denied.headers
