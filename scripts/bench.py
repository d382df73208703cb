"""`make bench`: PixelFox's speed and memory goals, measured (never asserted in tests).

1. process_image on a 12-megapixel JPEG (full variant set) vs the equivalent chain of
   `convert` commands producing the same outputs, run alternately; ratio goal <= 1.0.
2. Peak RSS of the web process (gunicorn, one worker) while receiving a 200 MB upload,
   above its idle RSS; goal < 60 MB.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="pixelfox-bench-"))
os.environ["PIXELFOX_VAR_DIR"] = str(WORK / "var")
for key in ("DATABASE_URL", "REDIS_URL", "CACHE_HOST", "DB_HOST", "UPLOADS_DIR", "TMP_DIR"):
    os.environ.pop(key, None)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchimages import make_12mp_jpeg  # noqa: E402

CONVERT = "/usr/bin/convert"  # the real ImageMagick CLI, same library and policy as ours
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def convert_chain(src: Path, out: Path, quality: int) -> None:
    """The same outputs with one `convert` per output file (each decodes the source)."""
    base = [CONVERT, f"jpeg:{src}", "-auto-orient", "-strip"]
    jobs = [
        [*base, "-quality", str(quality), f"jpeg:{out / 'original.jpg'}"],
        [*base, "-quality", "85", f"webp:{out / 'full.webp'}"],
        [*base, "-quality", "60", f"avif:{out / 'full.avif'}"],
    ]
    for name, width in (("medium", 500), ("small", 200)):
        resized = [*base, "-resize", f"{width}x"]
        jobs += [
            [*resized, "-quality", "85", f"jpeg:{out / f'{name}.jpg'}"],
            [*resized, "-quality", "85", f"webp:{out / f'{name}.webp'}"],
            [*resized, "-quality", "60", f"avif:{out / f'{name}.avif'}"],
        ]
    env = dict(os.environ, MAGICK_CONFIGURE_PATH=str(ROOT / "pixelfox" / "imaging"))
    for cmd in jobs:
        subprocess.run(cmd, check=True, env=env)


def bench_processing() -> dict:
    from flask_migrate import upgrade

    from pixelfox import create_app
    from pixelfox.extensions import db
    from pixelfox.imaging.magick import Image
    from pixelfox.services import accounts, pools, processing, uploads

    src = make_12mp_jpeg(WORK / "12mp.jpg")
    with Image(filename=f"jpeg:{src}") as img:
        quality = img.compression_quality
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{WORK / 'bench.db'}",
            "UPLOADS_DIR": str(WORK / "uploads"),
            "TMP_DIR": str(WORK / "tmp"),
        }
    )
    ours, chain = [], []
    with app.test_request_context():
        upgrade()
        pools.ensure_default_pool()
        user = accounts.create_user("bench", "bench@example.org", "bench password")
        with open(src, "rb") as fh:
            image = uploads.receive(fh, "12mp.jpg", user, "127.0.0.1").image
        original = Path(image.pool.base_path) / image.stored_path
        for _ in range(ROUNDS):
            shutil.copyfile(src, original)  # the pristine upload again (it gets rewritten)
            t = time.perf_counter()  # both phases: thumbnails, then the full-size files
            assert processing.process(image.id, force=True) == "ready"
            assert processing.finish(image.id, force=True) == "complete"
            ours.append(time.perf_counter() - t)
            out = WORK / "chain"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            t = time.perf_counter()
            convert_chain(src, out, quality)
            chain.append(time.perf_counter() - t)
        db.session.remove()
    return {
        "ours": statistics.median(ours),
        "chain": statistics.median(chain),
        "ours_all": ours,
        "chain_all": chain,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bmp_header(width: int, height: int) -> bytes:
    import struct

    row = (width * 3 + 3) & ~3
    pixels = row * height
    return (
        b"BM"
        + struct.pack("<IHHI", 54 + pixels, 0, 0, 54)
        + struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, pixels, 2835, 2835, 0, 0)
    )


class SyntheticBody:
    """A file-like multipart body of known length: head, `size` filler bytes, tail."""

    def __init__(self, parts: list[bytes], size: int):
        self.head, self.tail = parts
        self.left = size
        self.len = len(self.head) + size + len(self.tail)
        self.sent_tail = False

    def __len__(self) -> int:
        return self.len

    def read(self, n: int = -1) -> bytes:
        if self.head:
            out, self.head = self.head, b""
            return out
        if self.left:
            take = min(self.left, 1024 * 1024 if n is None or n < 0 else n)
            self.left -= take
            return b"\x80" * take
        if not self.sent_tail:
            self.sent_tail = True
            return self.tail
        return b""


def bench_upload_memory() -> dict:
    import psutil
    import requests

    from pixelfox import create_app
    from pixelfox.services import accounts, settings

    port = free_port()
    env = dict(
        os.environ,
        DATABASE_URL=f"sqlite:///{WORK / 'mem.db'}",
        APP_PORT=str(port),
        UPLOADS_DIR=str(WORK / "mem-uploads"),
        TMP_DIR=str(WORK / "mem-tmp"),
        DISABLE_JOB_WORKERS="1",
    )
    flask = os.path.join(os.path.dirname(sys.executable), "flask")
    subprocess.run(
        [flask, "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    os.environ["DATABASE_URL"] = env["DATABASE_URL"]
    app = create_app({"UPLOADS_DIR": env["UPLOADS_DIR"], "TMP_DIR": env["TMP_DIR"]})
    env["REDIS_URL"] = app.config["REDIS_URL"]  # the embedded Redis this process started
    with app.test_request_context():
        user = accounts.create_user("mem", "mem@example.org", "mem password 1")
        key = accounts.rotate_api_key(user)
        settings.update({"max_upload_mb": 300, "upload_rate_limit_per_minute": 0})
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    web = subprocess.Popen(
        [gunicorn, "-w", "1", "-b", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.get(f"{base}/api/v1/ping", timeout=10)
                break
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.2)
        requests.get(f"{base}/", timeout=5)  # warm: templates, DB, settings
        worker = [c for c in psutil.Process(web.pid).children()][0]
        time.sleep(0.5)
        idle = worker.memory_info().rss
        peak = idle
        done = threading.Event()

        def sample():
            nonlocal peak
            while not done.is_set():
                peak = max(peak, worker.memory_info().rss)
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        width, height = 8192, 8192  # 201 MB of 24-bit BMP, 67 MP
        header = bmp_header(width, height)
        pixels = ((width * 3 + 3) & ~3) * height
        boundary = "pixelfoxbench"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="big.bmp"\r\nContent-Type: image/bmp\r\n\r\n'
        ).encode() + header
        tail = f"\r\n--{boundary}--\r\n".encode()
        body = SyntheticBody([head, tail], pixels)

        t = time.perf_counter()
        resp = requests.post(
            f"{base}/api/v1/upload",
            data=body,
            headers={
                "Authorization": f"Bearer {key}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(len(head) + pixels + len(tail)),
            },
            timeout=300,
        )
        elapsed = time.perf_counter() - t
        done.set()
        sampler.join()
        assert resp.status_code == 201, resp.text
    finally:
        web.terminate()
        web.wait(timeout=10)
    size = len(head) + pixels
    return {
        "idle_mb": idle / 2**20,
        "peak_mb": peak / 2**20,
        "above_idle_mb": (peak - idle) / 2**20,
        "upload_mb": size / 2**20,
        "seconds": elapsed,
    }


def main() -> int:
    print(f"PixelFox benchmarks ({os.cpu_count()} cores), work dir {WORK}")
    p = bench_processing()
    ratio = p["ours"] / p["chain"]
    print("\n1. process_image, 12 MP JPEG, full variant set (9 outputs + clean original)")
    print(
        f"   ours (median of {ROUNDS}):          {p['ours']:.2f} s   "
        f"{[round(x, 2) for x in p['ours_all']]}"
    )
    print(
        f"   convert chain (median of {ROUNDS}): {p['chain']:.2f} s   "
        f"{[round(x, 2) for x in p['chain_all']]}"
    )
    print(
        f"   ratio ours/convert: {ratio:.2f}  (goal <= 1.0: {'met' if ratio <= 1.0 else 'MISSED'}; "
        f"issue 14: <= 0.6: {'met' if ratio <= 0.6 else 'MISSED'})"
    )
    m = bench_upload_memory()
    print(f"\n2. web process memory while receiving a {m['upload_mb']:.0f} MiB upload")
    print(
        f"   idle RSS {m['idle_mb']:.1f} MB, peak {m['peak_mb']:.1f} MB, "
        f"above idle {m['above_idle_mb']:.1f} MiB in {m['seconds']:.1f} s  "
        f"(goal < 60 MB: {'met' if m['above_idle_mb'] < 60 else 'MISSED'})"
    )
    shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
