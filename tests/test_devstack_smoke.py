"""`make run`'s path: SQLite under var/ and the embedded Redis, web + worker + scheduler as
real processes, driven over HTTP like a person would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import requests

from tests.conftest import ROOT, browser_login, fixture_path, free_port


def clean_env(tmp_path, port: int) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DB_", "CACHE_", "REDIS", "DATABASE"))
    }
    env.update(
        PIXELFOX_VAR_DIR=str(tmp_path / "var"),
        APP_PORT=str(port),
        PUBLIC_DOMAIN=f"http://127.0.0.1:{port}",
        PYTHONUNBUFFERED="1",
    )
    for key in ("UPLOADS_DIR", "TMP_DIR", "NODE_ID", "SECRET_KEY", "UPLOAD_TOKEN_SECRET"):
        env.pop(key, None)
    return env


def test_migrations_on_sqlite_have_no_drift(tmp_path):
    env = clean_env(tmp_path, free_port())
    flask = [os.path.join(os.path.dirname(sys.executable), "flask"), "--app", "wsgi"]
    outputs = {}
    for args in (["db", "upgrade"], ["db", "check"], ["db", "current"]):
        out = subprocess.run(
            [*flask, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        outputs[args[1]] = out.stdout + out.stderr
    assert (tmp_path / "var" / "pixelfox.db").exists()
    assert "No new upgrade operations detected" in outputs["check"]
    assert "(head)" in outputs["current"]


def test_make_run_stack_serves_uploads_end_to_end(tmp_path):
    port = free_port()
    env = clean_env(tmp_path, port)
    log = open(tmp_path / "stack.log", "wb")  # noqa: SIM115
    stack = subprocess.Popen(
        [sys.executable, "-m", "pixelfox.devstack"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if requests.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        health = requests.get(f"{base}/api/v1/health", timeout=5).json()
        assert health["status"] == "ok", (tmp_path / "stack.log").read_text()

        browser, token = browser_login(base, "smoke")
        assert "Upload images" in browser.get(f"{base}/").text
        with open(fixture_path("photo.jpg"), "rb") as fh:
            resp = browser.post(
                f"{base}/upload",
                files={"file": ("photo.jpg", fh)},
                data={"csrf_token": token},
                headers={"Accept": "application/json"},
            )
        assert resp.status_code == 201, resp.text
        status_url = resp.json()["status_url"]
        deadline = time.time() + 90
        status = {}
        while time.time() < deadline:
            status = browser.get(status_url).json()
            if status["complete"]:
                break
            time.sleep(0.5)
        assert status.get("status") == "complete", (tmp_path / "stack.log").read_text()
        thumb = requests.get(status["variants"]["thumbnail_small_webp"], timeout=5)
        assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/webp"
        assert (tmp_path / "var" / "pixelfox.db").exists()
        assert (tmp_path / "var" / "uploads" / "variants").is_dir()
    finally:
        os.killpg(stack.pid, signal.SIGINT)  # Ctrl-C stops all of it
        code = stack.wait(timeout=30)
        log.close()
    assert code == 0
    time.sleep(0.5)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "web process still listening"
