"""Pushing a file to another node's replicate endpoint, streamed, with its SHA-256."""

from __future__ import annotations

import ipaddress
import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import requests

CHUNK = 1024 * 1024
_local = threading.local()


def _session() -> requests.Session:
    """One keep-alive session per thread (moves push from a few threads at once)."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


def secret_safe_url(url: str, allow_insecure: bool = False) -> bool:
    """May a secret (upload token, REPLICATION_SECRET) travel to this URL? https always; plain
    http only to loopback or private addresses (a private network), or when the operator
    allows it explicitly (ALLOW_INSECURE_NODE_URLS=1)."""
    parts = urlsplit(url or "")
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if allow_insecure:
        return True
    host = (parts.hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name could resolve anywhere: it needs https
    return address.is_loopback or address.is_private or address.is_link_local


class PushError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def replicate_url(upload_api_url: str) -> str:
    """The target node's replicate endpoint, derived from its pool's upload_api_url."""
    base = upload_api_url.rstrip("/")
    suffix = "/api/internal/upload"
    if base.endswith(suffix):
        base = base[: -len(suffix)]
    return base + "/api/internal/replicate"


class MultipartFile:
    """A multipart/form-data body of known length: fields first, then the file, read lazily
    in chunks (so memory stays flat whatever the size). `on_chunk(n)` may sleep (throttle)."""

    def __init__(
        self,
        fields: dict[str, str],
        path: Path,
        size: int,
        on_chunk: Callable[[int], None] | None = None,
    ):
        self.boundary = "pixelfox-" + secrets.token_hex(12)
        head = b""
        for name, value in fields.items():
            head += (
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"'
                f"\r\n\r\n{value}\r\n"
            ).encode()
        head += (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        self.parts = [head]
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.path, self.size, self.on_chunk = path, size, on_chunk
        self.fh = None
        self.len = len(head) + size + len(self.tail)
        self.done = False

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return self.len

    def read(self, n: int = -1) -> bytes:
        if self.parts:
            return self.parts.pop(0)
        if self.fh is None and not self.done:
            self.fh = open(self.path, "rb")  # noqa: SIM115  closed at EOF below
        if self.fh is not None:
            block = self.fh.read(CHUNK)
            if block:
                if self.on_chunk:
                    self.on_chunk(len(block))
                return block
            self.fh.close()
            self.fh = None
            self.done = True
            return self.tail
        return b""


def push_file(
    url: str,
    secret: str,
    pool_id: int,
    stored_path: str,
    path: Path,
    sha256: str,
    on_chunk: Callable[[int], None] | None = None,
    overwrite: bool = False,
    timeout: float = 60,
) -> dict:
    """PUT one file to a replicate endpoint (`overwrite`: replace different bytes there).
    Returns its JSON on 200; raises PushError (status 0 when the node could not be
    reached)."""
    size = os.path.getsize(path)
    fields = {"pool_id": str(pool_id), "stored_path": stored_path, "size": str(size)}
    fields["sha256"] = sha256
    if overwrite:
        fields["overwrite"] = "1"
    body = MultipartFile(fields, path, size, on_chunk)
    try:
        resp = _session().put(
            url,
            data=body,
            timeout=timeout,
            headers={
                "Authorization": f"Bearer {secret}",
                "Content-Type": body.content_type,
                "Content-Length": str(len(body)),
            },
        )
    except requests.RequestException as exc:
        raise PushError(0, f"{type(exc).__name__}: {exc}") from exc
    finally:
        if body.fh is not None:
            body.fh.close()
    if resp.status_code != 200:
        try:
            message = resp.json().get("message", resp.text[:200])
        except ValueError:
            message = resp.text[:200]
        raise PushError(resp.status_code, message)
    return resp.json()


def remote_stat(
    url: str, secret: str, pool_id: int, stored_path: str, timeout: float = 30
) -> dict | None:
    """{size, sha256} of a file on another node, None if it has none; PushError otherwise."""
    try:
        resp = _session().get(
            url,
            params={"pool_id": pool_id, "stored_path": stored_path},
            headers={"Authorization": f"Bearer {secret}"},
            timeout=timeout,
        )
    except requests.RequestException as exc:
        raise PushError(0, f"{type(exc).__name__}: {exc}") from exc
    if resp.status_code == 404 and resp.json().get("error") == "not_found":
        return None
    if resp.status_code != 200:
        raise PushError(resp.status_code, resp.text[:200])
    return resp.json()
