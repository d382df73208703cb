"""Object storage through the S3 API (boto3), for `storage_type = s3` pools. Pure code: the
bucket's configuration and credentials are passed in, nothing of Flask, Redis or the DB.

Every write is verified by the store: single PUTs carry `Content-MD5` (the store refuses
bytes that do not match), multipart uploads (above 16 MiB) carry it per part, and every
object records the file's SHA-256 in `x-amz-meta-sha256`. A failed multipart upload is
aborted, so nothing is left behind.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

MULTIPART_ABOVE = 16 * 1024 * 1024
PART = 16 * 1024 * 1024
READ = 1024 * 1024


@dataclass(frozen=True)
class S3Config:
    endpoint: str
    bucket: str
    region: str
    prefix: str
    access_key: str
    secret_key: str
    addressing_style: str = "path"  # or "virtual"

    def key(self, rel: str) -> str:
        """The object key of a stored path: `[prefix/]original/…`, `[prefix/]variants/…`."""
        prefix = self.prefix.strip("/")
        return f"{prefix}/{rel}" if prefix else rel


class S3Error(Exception):
    """The store refused or could not be reached; the message is for people."""

    def __init__(self, message: str, retry: bool = False, code: str = ""):
        super().__init__(message)
        self.message, self.retry, self.code = message, retry, code

    @property
    def full(self) -> bool:
        """The bucket is over its quota (or the store out of space)."""
        return self.code in ("QuotaExceeded", "EntityTooLarge", "InsufficientStorage")


class SourceMismatch(S3Error):
    """The local file read for an upload does not match the SHA-256 it was given; nothing
    was stored."""


_clients: dict[S3Config, object] = {}
_lock = threading.Lock()


def client(cfg: S3Config):
    """One boto3 client per configuration (clients are thread-safe)."""
    with _lock:
        c = _clients.get(cfg)
        if c is None:
            c = boto3.client(
                "s3",
                endpoint_url=cfg.endpoint,
                region_name=cfg.region,
                aws_access_key_id=cfg.access_key,
                aws_secret_access_key=cfg.secret_key,
                # Every PUT carries Content-MD5, which the signature covers and the store
                # checks: that is the integrity check (and the sha256 metadata ours), so
                # botocore need not hash bodies again for the signature or add CRC32s.
                config=Config(
                    s3={"addressing_style": cfg.addressing_style, "payload_signing_enabled": False},
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    signature_version="s3v4",
                    retries={"max_attempts": 3, "mode": "standard"},
                    connect_timeout=5,
                    read_timeout=60,
                    max_pool_connections=16,
                ),
            )
            _clients[cfg] = c
        return c


def describe(exc: Exception) -> S3Error:
    """A store error in words: its code and message, or why it could not be reached."""
    if isinstance(exc, S3Error):
        return exc
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code, message = err.get("Code", "Error"), err.get("Message") or ""
        if code == str(status):  # no body (HEAD): only the status says what happened
            code = {403: "Forbidden", 404: "NotFound"}.get(status, "Error")
        text = f"The store answered {status} {code}" + (f": {message}" if message else "")
        retry = status >= 500 or code in ("SlowDown", "RequestTimeout")
        return S3Error(text + ".", retry=retry, code=code)
    return S3Error(f"The store cannot be reached ({type(exc).__name__}: {exc}).", retry=True)


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324  (Content-MD5)


def put_file(
    cfg: S3Config,
    rel: str,
    path: Path,
    sha256: str,
    throttle: Callable[[int], None] | None = None,
    hashed: bool = False,
) -> None:
    """Upload a local file to `rel`, verified by the store (Content-MD5); multipart above
    16 MiB, aborted on failure. The bytes are hashed as they are read: if they do not match
    `sha256`, nothing is stored (SourceMismatch) — unless `hashed`: the caller has just
    hashed this very file as it wrote it. Raises S3Error."""
    s3, key = client(cfg), cfg.key(rel)
    size = path.stat().st_size
    meta = {"sha256": sha256}
    digest = hashlib.sha256()
    try:
        if size <= MULTIPART_ABOVE:
            data = path.read_bytes()
            if throttle:
                throttle(len(data))
            if not hashed and hashlib.sha256(data).hexdigest() != sha256:
                raise SourceMismatch(f"{path.name} does not match its SHA-256.")
            s3.put_object(
                Bucket=cfg.bucket, Key=key, Body=data, ContentMD5=_md5(data), Metadata=meta
            )
            return
        upload = s3.create_multipart_upload(Bucket=cfg.bucket, Key=key, Metadata=meta)
        parts = []
        try:
            with open(path, "rb") as fh:
                number = 1
                while block := fh.read(PART):
                    if throttle:
                        throttle(len(block))
                    if not hashed:
                        digest.update(block)
                    got = s3.upload_part(
                        Bucket=cfg.bucket,
                        Key=key,
                        UploadId=upload["UploadId"],
                        PartNumber=number,
                        Body=block,
                        ContentMD5=_md5(block),
                    )
                    parts.append({"ETag": got["ETag"], "PartNumber": number})
                    number += 1
            if not hashed and digest.hexdigest() != sha256:
                raise SourceMismatch(f"{path.name} does not match its SHA-256.")
            s3.complete_multipart_upload(
                Bucket=cfg.bucket,
                Key=key,
                UploadId=upload["UploadId"],
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            try:
                s3.abort_multipart_upload(Bucket=cfg.bucket, Key=key, UploadId=upload["UploadId"])
            except (ClientError, BotoCoreError):
                pass  # the store's lifecycle rules clear what an abort could not
            raise
    except (ClientError, BotoCoreError) as exc:
        raise describe(exc) from exc


def head(cfg: S3Config, rel: str) -> dict | None:
    """{size, sha256} of an object (sha256 from its metadata, may be None); None if absent."""
    try:
        got = client(cfg).head_object(Bucket=cfg.bucket, Key=cfg.key(rel))
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return None
        raise describe(exc) from exc
    except BotoCoreError as exc:
        raise describe(exc) from exc
    return {"size": got["ContentLength"], "sha256": got.get("Metadata", {}).get("sha256")}


def download(
    cfg: S3Config,
    rel: str,
    write: Callable[[bytes], object],
    throttle: Callable[[int], None] | None = None,
) -> str | None:
    """Stream an object's bytes to `write`; the SHA-256 recorded when it was written (None
    if it has none). Raises S3Error (missing: not retryable)."""
    try:
        got = client(cfg).get_object(Bucket=cfg.bucket, Key=cfg.key(rel))
        body = got["Body"]
        try:
            while block := body.read(READ):
                if throttle:
                    throttle(len(block))
                write(block)
        finally:
            body.close()
        return got.get("Metadata", {}).get("sha256")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise S3Error(f"{rel} is missing from the bucket.") from exc
        raise describe(exc) from exc
    except BotoCoreError as exc:
        raise describe(exc) from exc


def delete(cfg: S3Config, rel: str) -> None:
    """Delete an object (absent is fine)."""
    try:
        client(cfg).delete_object(Bucket=cfg.bucket, Key=cfg.key(rel))
    except (ClientError, BotoCoreError) as exc:
        raise describe(exc) from exc


def listed_before(cfg: S3Config, under: str, before: datetime) -> list[str]:
    """Stored paths of the objects under `under` (a stored-path prefix) last modified before
    `before` (naive UTC)."""
    out = []
    try:
        pages = (
            client(cfg)
            .get_paginator("list_objects_v2")
            .paginate(Bucket=cfg.bucket, Prefix=cfg.key(under))
        )
        for page in pages:
            for obj in page.get("Contents", []):
                if obj["LastModified"].astimezone(UTC).replace(tzinfo=None) < before:
                    out.append(obj["Key"][len(cfg.key("")) :])
    except (ClientError, BotoCoreError) as exc:
        raise describe(exc) from exc
    return out


def head_bucket(cfg: S3Config) -> None:
    """Is the bucket there, and may these keys use it? Raises S3Error."""
    try:
        client(cfg).head_bucket(Bucket=cfg.bucket)
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            raise S3Error(
                f"The store answered 404 NoSuchBucket: there is no bucket {cfg.bucket}.",
                code="NoSuchBucket",
            ) from exc
        raise describe(exc) from exc
    except BotoCoreError as exc:
        raise describe(exc) from exc


def probe(cfg: S3Config) -> None:
    """Can PixelFox use this bucket? Put, read back and delete a small probe object under the
    prefix. Raises S3Error with the store's answer in words."""
    s3 = client(cfg)
    rel = f".pixelfox-probe-{int(time.time() * 1000)}"
    data = b"pixelfox probe"
    try:
        s3.put_object(Bucket=cfg.bucket, Key=cfg.key(rel), Body=data, ContentMD5=_md5(data))
        if s3.head_object(Bucket=cfg.bucket, Key=cfg.key(rel))["ContentLength"] != len(data):
            raise S3Error("The store kept the probe object with another size.")
        s3.delete_object(Bucket=cfg.bucket, Key=cfg.key(rel))
    except (ClientError, BotoCoreError) as exc:
        raise describe(exc) from exc


def public_url(base_url: str, cfg: S3Config, rel: str) -> str:
    """A public bucket or a CDN in front of it: base URL + "/" + key."""
    return f"{base_url.rstrip('/')}/{quote(cfg.key(rel), safe='/~')}"


def presigned_get(
    cfg: S3Config, rel: str, ttl: int, round_to: int, now: float | None = None
) -> str:
    """A presigned GET URL (SigV4) that stays the same for `round_to` seconds: it is signed
    as of the start of the current `round_to` window and valid for `ttl` seconds from then,
    so pages that embed it stay cacheable and browsers keep the image. (boto3 signs with the
    current second, which would make every page view a new URL.)"""
    now = now if now is not None else time.time()
    start = int(now // round_to * round_to)
    stamp = datetime.fromtimestamp(start, UTC)
    amz_date, day = stamp.strftime("%Y%m%dT%H%M%SZ"), stamp.strftime("%Y%m%d")
    parts = urlsplit(cfg.endpoint)
    key = quote(cfg.key(rel), safe="/~")
    if cfg.addressing_style == "virtual":
        host, path = f"{cfg.bucket}.{parts.netloc}", f"/{key}"
    else:
        host, path = parts.netloc, f"/{cfg.bucket}/{key}"
    scope = f"{day}/{cfg.region}/s3/aws4_request"
    params = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{cfg.access_key}/{scope}",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": str(min(ttl, 7 * 24 * 3600)),
        "X-Amz-SignedHeaders": "host",
    }
    query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items())
    )
    canonical = "\n".join(["GET", path, query, f"host:{host}\n", "host", "UNSIGNED-PAYLOAD"])
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    signing = ("AWS4" + cfg.secret_key).encode()
    for part in (day, cfg.region, "s3", "aws4_request"):
        signing = hmac.new(signing, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{parts.scheme}://{host}{path}?{query}&X-Amz-Signature={signature}"
