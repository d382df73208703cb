"""A real S3 server for the tests: Ceph's RADOS Gateway started by scripts/s3-start.sh in this
run's own data directory, on free ports, with keys made for this run; stopped by
scripts/s3-stop.sh at the end of the session (by the PIDs it recorded)."""

from __future__ import annotations

import os
import random
import secrets
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports() -> tuple[int, int, int]:
    """(S3, monitor (+1), OSD range start (+99)) below the kernel's ephemeral range."""
    for _ in range(200):
        base = random.randrange(20000, 32000, 200)
        s3_port, mon, osd = base, base + 10, base + 100
        if all(_free(p) for p in (s3_port, mon, mon + 1, *range(osd, osd + 100, 7))):
            return s3_port, mon, osd
    raise RuntimeError("no free ports for the S3 server")


@dataclass
class S3Server:
    directory: Path
    endpoint: str
    access_key: str
    secret_key: str

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
        )

    def new_bucket(self) -> str:
        name = f"pf-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        out = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
            out += [o["Key"] for o in page.get("Contents", [])]
        return sorted(out)

    def drop_bucket(self, bucket: str) -> None:
        c = self.client()
        try:
            for key in self.keys(bucket):
                c.delete_object(Bucket=bucket, Key=key)
            c.delete_bucket(Bucket=bucket)
        except c.exceptions.NoSuchBucket:
            pass

    def pool_fields(self, bucket: str, **extra) -> dict:
        """The pool form's fields for one of this server's buckets."""
        fields = {
            "name": f"bucket-{bucket[-6:]}",
            "storage_type": "s3",
            "storage_tier": "cold",
            "node_id": "local",
            "s3_endpoint": self.endpoint,
            "s3_bucket": bucket,
            "s3_region": "us-east-1",
            "s3_prefix": "pixelfox",
            "s3_access_key": self.access_key,
            "s3_secret_key": self.secret_key,
            "s3_addressing_style": "path",
            "priority": "100",
            "weight": "100",
            "is_active": "y",
            "accepts_uploads": "y",
        }
        fields.update(extra)
        return fields

    def stop(self) -> None:
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "s3-stop.sh"), str(self.directory)],
            check=False,
            timeout=120,
        )


def start(directory: Path) -> S3Server:
    s3_port, mon, osd = _ports()
    access, secret = f"pf{secrets.token_hex(8)}", secrets.token_hex(20)
    env = dict(
        os.environ,
        S3_PORT=str(s3_port),
        MON_PORT=str(mon),
        OSD_PORT_MIN=str(osd),
        S3_ACCESS_KEY=access,
        S3_SECRET_KEY=secret,
        MEMSTORE_BYTES=str(8 * 1024**3),
    )
    log = directory.parent / f"{directory.name}.start.log"
    with open(log, "wb") as out:
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / "s3-start.sh"), str(directory)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
            timeout=300,
            check=False,
        )
    server = S3Server(directory, f"http://127.0.0.1:{s3_port}", access, secret)
    if done.returncode != 0:
        server.stop()
        raise RuntimeError(f"the S3 server did not start: {log.read_text()[-2000:]}")
    return server
