"""The one path builder (SPEC §4) and the one traversal guard."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path, PurePosixPath

TOP_DIRS = ("original", "variants")
SIZE_SUFFIX = {"small": "_small", "medium": "_medium"}


class UnsafePath(ValueError):
    """A relative path that could leave the pool's base directory."""


def original_path(uuid: str, ext: str, when: datetime) -> str:
    return f"original/{when:%Y/%m/%d}/{uuid}{ext}"


def variant_path(original: str, uuid: str, ext: str, size: str | None = None) -> str:
    """variants/<same date dirs as the original>/<uuid>[_small|_medium]<ext>."""
    parts = PurePosixPath(original).parts
    date_dirs = "/".join(parts[1:-1])
    suffix = SIZE_SUFFIX[size] if size else ""
    return f"variants/{date_dirs}/{uuid}{suffix}{ext}"


def check_relative(rel: str) -> str:
    """Validate a stored path: relative, under original/ or variants/, no tricks."""
    if not rel or "\x00" in rel or "\\" in rel or rel.startswith("/"):
        raise UnsafePath(rel)
    parts = PurePosixPath(rel).parts
    if len(parts) < 2 or parts[0] not in TOP_DIRS:
        raise UnsafePath(rel)
    if any(p in ("", ".", "..") for p in parts) or any(p.startswith(".") for p in parts):
        raise UnsafePath(rel)
    return rel


def resolve(base_path: str, rel: str) -> Path:
    """Absolute path of `rel` inside `base_path`; refuses anything that escapes it,
    symlinks included."""
    check_relative(rel)
    if not os.path.isabs(base_path):  # e.g. an object-storage pool's "s3://…": no directory
        raise UnsafePath(f"{rel} (the pool has no directory)")
    base = Path(base_path).resolve()
    target = (base / rel).resolve()
    if os.path.commonpath([base, target]) != str(base):
        raise UnsafePath(rel)
    return target


def tmp_dir(base_path: str) -> Path:
    """Temp files live inside the pool so the final rename stays on one filesystem."""
    return Path(base_path) / ".tmp"
