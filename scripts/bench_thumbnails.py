"""First thumbnails (issue 14), part of `make bench`. The bench starts gunicorn (its default
config) and two `rq worker -w pixelfox.jobs.worker.Worker node-local` itself, on MariaDB
(BENCH_DB_URL's server; its own database, dropped afterwards) and a redis-server of its own.

1. One 12 MP JPEG: upload → medium thumbnail published (`ready`), median of 5.
2. A burst of 96 uploads of 4 MP JPEGs from 12 clients: p95 upload → first thumbnail, and the
   drain time (first upload → last image complete); then the same burst with the single-phase
   processing of before (every output in one job before anything is shown), for comparison.
3. Bytes of the viewer's picture in a browser that takes AVIF, against the JPEG thumbnail.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC
from pathlib import Path

import pymysql
import requests
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="pixelfox-bench-thumbs-"))
SERVER = os.environ.get("BENCH_DB_URL", "mysql+pymysql://root@127.0.0.1:3306")
DB_NAME = f"pixelfox_bench_thumbs_{os.getpid()}"
BURST = int(os.environ.get("BENCH_BURST", "96"))
CLIENTS = 12


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def photos(n: int, width: int, height: int, prefix: str) -> list[Path]:
    """Distinct JPEGs (q90, EXIF kept) made from the photo fixture."""
    from pixelfox.imaging.magick import Image

    out = []
    with Image(filename=f"jpeg:{ROOT / 'tests/fixtures/good/photo.jpg'}") as base:
        for i in range(n):
            path = WORK / f"{prefix}{i}.jpg"
            with base.clone() as img:
                img.crop(left=i % 97, top=i % 89, width=base.width - 100, height=base.height - 100)
                img.resize(width, height)
                img.compression_quality = 90
                img.save(filename=f"jpeg:{path}")
            out.append(path)
    return out


class Stack:
    """gunicorn + workers + own redis-server, on a fresh MariaDB database."""

    def __init__(self, worker_class: str = "pixelfox.jobs.worker.Worker", workers: int = 2):
        self.port = free_port()
        self.redis_port = free_port()
        url = make_url(SERVER)
        self.db_url = str(url.set(database=DB_NAME, query={"charset": "utf8mb4"})).replace(
            "***", url.password or ""
        )
        self.env = dict(
            os.environ,
            DATABASE_URL=self.db_url,
            REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            APP_PORT=str(self.port),
            PUBLIC_DOMAIN=f"http://127.0.0.1:{self.port}",
            UPLOADS_DIR=str(WORK / "uploads"),
            TMP_DIR=str(WORK / "tmp"),
            PIXELFOX_VAR_DIR=str(WORK / "var"),
            PYTHONPATH=str(ROOT / "scripts"),
        )
        self.worker_class, self.n_workers = worker_class, workers
        self.procs: list[subprocess.Popen] = []
        self.url = f"http://127.0.0.1:{self.port}"

    def spawn(self, cmd, name):
        log = open(WORK / f"{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        self.procs.append(proc)
        return proc

    def start(self):
        self.spawn(["redis-server", "--port", str(self.redis_port), "--save", "",
                    "--appendonly", "no", "--dir", str(WORK)], "redis")  # fmt: skip
        bindir = Path(sys.executable).parent
        subprocess.run([str(bindir / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=ROOT,
                       env=self.env, check=True, capture_output=True)  # fmt: skip
        self.spawn([str(bindir / "gunicorn"), "wsgi:app"], "web")
        for i in range(self.n_workers):
            self.spawn([str(bindir / "rq"), "worker", "-w", self.worker_class, "--url",
                        self.env["REDIS_URL"], "node-local"], f"worker{i}")  # fmt: skip
        for _ in range(200):
            try:
                requests.get(f"{self.url}/", timeout=2)  # also makes the default pool
                break
            except requests.RequestException:
                time.sleep(0.2)
        out = subprocess.run(
            [str(bindir / "python"), "-c",
             "from pixelfox import create_app\n"
             "from pixelfox.services import accounts, settings\n"
             "app = create_app()\n"
             "with app.app_context():\n"
             "    u = accounts.create_user('bench', 'bench@example.org', 'bench password')\n"
             "    settings.update({'upload_rate_limit_per_minute': 0,"
             " 'upload_user_rate_limit_per_minute': 0})\n"
             "    print(accounts.rotate_api_key(u))\n"],
            cwd=ROOT, env=self.env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        self.key = out.stdout.strip().splitlines()[-1]
        time.sleep(2)  # the workers load PixelFox
        return self

    def stop(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    def upload(self, path: Path) -> tuple[str, float]:
        started = time.time()
        with open(path, "rb") as fh:
            resp = requests.post(
                f"{self.url}/api/v1/upload",
                files={"file": (path.name, fh, "image/jpeg")},
                headers={"Authorization": f"Bearer {self.key}"},
                timeout=120,
            )
        assert resp.status_code == 201, resp.text
        return resp.json()["image_uuid"], started

    def status(self, uuid: str) -> dict:
        return requests.get(
            f"{self.url}/api/v1/images/{uuid}/status",
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=10,
        ).json()

    def times(self) -> dict[str, tuple]:
        """{uuid: (ready_at, complete_at)} as unix times, from the database."""
        conn = db_conn(DB_NAME)
        with conn.cursor() as cur:
            cur.execute("SELECT uuid, ready_at, processed_at FROM images")
            rows = cur.fetchall()
        conn.close()
        return {
            u: tuple(t.replace(tzinfo=UTC).timestamp() if t else None for t in (r, p))
            for u, r, p in rows
        }

    def variant_sizes(self, kind: str) -> int:
        conn = db_conn(DB_NAME)
        with conn.cursor() as cur:
            sql = "SELECT COALESCE(SUM(size), 0) FROM image_variants WHERE kind = %s"
            cur.execute(sql, (kind,))
            (total,) = cur.fetchone()
        conn.close()
        return int(total)


def db_conn(database: str | None = None):
    url = make_url(SERVER)
    return pymysql.connect(host=url.host or "127.0.0.1", port=url.port or 3306,
                           user=url.username or "root", password=url.password or "",
                           database=database)  # fmt: skip


def fresh_database() -> None:
    conn = db_conn()
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{DB_NAME}`")
        cur.execute(f"CREATE DATABASE `{DB_NAME}` CHARACTER SET utf8mb4")
    conn.close()


def drop_database() -> None:
    conn = db_conn()
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{DB_NAME}`")
    conn.close()


def single_12mp(stack: Stack, files: list[Path]) -> tuple[list[float], list[float]]:
    ready, complete = [], []
    for path in files:
        uuid, started = stack.upload(path)
        while True:
            body = stack.status(uuid)
            if body.get("ready"):
                ready.append(time.time() - started)
                break
            time.sleep(0.01)
        while not stack.status(uuid)["complete"]:
            time.sleep(0.05)
        complete.append(time.time() - started)
    return ready, complete


def burst(stack: Stack, files: list[Path]) -> dict:
    started: dict[str, float] = {}
    lock = threading.Lock()

    def client(mine: list[Path]) -> None:
        for path in mine:
            uuid, t = stack.upload(path)
            with lock:
                started[uuid] = t

    threads = [threading.Thread(target=client, args=(files[i::CLIENTS],)) for i in range(CLIENTS)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = time.time() - t0
    while True:
        times = {u: t for u, t in stack.times().items() if u in started}
        if len(times) == len(files) and all(c for _r, c in times.values()):
            break
        time.sleep(0.5)
    first = sorted(times[u][0] - started[u] for u in started)
    done = sorted(times[u][1] - started[u] for u in started)
    return {
        "accepted": accepted,
        "p95_first": first[int(0.95 * (len(first) - 1))],
        "p95_complete": done[int(0.95 * (len(done) - 1))],
        "drain": max(c for _r, c in times.values()) - min(started.values()),
    }


def main() -> int:
    print(f"\nFirst-thumbnail benchmarks ({os.cpu_count()} cores), work dir {WORK}")
    big = photos(5, 4240, 2832, "big")
    four = photos(BURST, 2448, 1632, "four")
    results = {}
    for mode, worker_class in (
        ("two phases", "pixelfox.jobs.worker.Worker"),
        ("one phase (before)", "bench_single_phase_worker.Worker"),
    ):
        fresh_database()
        stack = Stack(worker_class).start()
        try:
            if mode == "two phases":
                ready, complete = single_12mp(stack, big)
                print("\n1. one 12 MP JPEG: upload → medium thumbnail published (median of 5)")
                print(f"   {statistics.median(ready):.2f} s  {[round(x, 2) for x in ready]}  "
                      f"(goal <= 1.0); whole set {statistics.median(complete):.2f} s")  # fmt: skip
                medium_avif = stack.variant_sizes("thumbnail_medium_avif")
                medium_jpeg = stack.variant_sizes("thumbnail_medium_original")
            results[mode] = burst(stack, four)
        finally:
            stack.stop()
    ours, before = results["two phases"], results["one phase (before)"]
    print(f"\n2. a burst of {BURST} uploads of 4 MP JPEGs from {CLIENTS} clients, two workers")
    for mode, r in results.items():
        print(f"   {mode}: accepted in {r['accepted']:.1f} s; p95 upload → first thumbnail "
              f"{r['p95_first']:.1f} s; p95 → complete {r['p95_complete']:.1f} s; "
              f"drain {r['drain']:.1f} s")  # fmt: skip
    print(f"   first thumbnail p95 {ours['p95_first']:.1f} s (goal <= 30; one phase: "
          f"{before['p95_complete']:.1f} s); drain {ours['drain'] / before['drain']:.2f}× the "
          "one-phase drain (goal within 10 %)")  # fmt: skip
    print("\n3. the viewer's picture in a browser that takes AVIF (medium thumbnails of the 12 MP "
          "photos)")  # fmt: skip
    print(f"   AVIF {medium_avif} bytes vs JPEG {medium_jpeg} bytes — "
          f"{100 * medium_avif / medium_jpeg:.0f} % (goal <= 40 %)")  # fmt: skip
    drop_database()
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    try:
        sys.exit(main())
    finally:
        drop_database()
