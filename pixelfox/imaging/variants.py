"""Variant pipeline (SPEC §4): decode once, orient, strip, then cascade from the largest output.

Workers only: importing this module loads ImageMagick under the project's policy.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from wand.exceptions import WandException

from pixelfox.imaging.magick import Image
from pixelfox.imaging.sniff import dimensions
from pixelfox.storage.local import TempFile, fsync_dir

SIZES = {"medium": 500, "small": 200}  # largest first: each level is made from the previous
AVIF_MIN_SIDE = 64
QUALITY = {"webp": 85, "avif": 60, "jpeg": 85, "heic": 60}
KEEP_PROFILES = ("icc", "icm")
ANIMATED_FORMATS = ("gif", "webp")
ROTATED = ("left_top", "right_top", "right_bottom", "left_bottom")  # EXIF 5–8
FULL_BELOW = 64 * 1024 * 1024  # a failed write with less room than this: the disk is full


class DecodeError(Exception):
    """ImageMagick could not read the source; the message is for people."""


@dataclass(frozen=True)
class Target:
    kind: str  # e.g. "thumbnail_small_webp"
    size: str | None  # "small" | "medium" | None for full size
    fmt: str  # ImageMagick coder to write with
    dest: Path


@dataclass
class Rendered:
    kind: str
    fmt: str
    dest: Path
    width: int
    height: int
    size: int
    sha256: str
    temp: TempFile | None = None  # staged bytes; Result.commit() renames them to `dest`


@dataclass
class Result:
    width: int  # the image's full size, turned upright (also when it was `scaled`)
    height: int
    frames: int
    scaled: bool = False  # decoded at a reduced scale (JPEG shrink-on-load)
    rotated: bool = False  # EXIF turned it by 90° (width and height swapped)
    original: Rendered | None = None  # set when the original was rewritten without metadata
    variants: list[Rendered] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # kinds not made (e.g. AVIF too small)

    def staged(self) -> list[Rendered]:
        out = [self.original] if self.original else []
        return out + [v for v in self.variants if v is not None and v.temp is not None]

    def commit(self) -> None:
        """Rename every staged file into place (renames need no room, so a full disk fails
        earlier, while staging, with nothing changed)."""
        synced = set()
        for r in self.staged():
            r.temp.commit(r.dest, sync_dir=False)
            r.temp = None
            synced.add(r.dest.parent)
        for directory in synced:
            fsync_dir(directory)

    def discard(self) -> None:
        for r in self.staged():
            r.temp.discard()
            r.temp = None


def scaled(width: int, height: int, target_width: int) -> tuple[int, int]:
    """Proportional size for `target_width`, never larger than the source."""
    if width <= target_width:
        return width, height
    return target_width, max(1, round(height * target_width / width))


def _needs_sanitizing(img) -> bool:
    orientation = getattr(img, "orientation", "undefined")
    extra = [name for name in img.profiles if name not in KEEP_PROFILES]
    return bool(extra) or orientation not in ("undefined", "top_left")


def _strip(img) -> None:
    """Remove EXIF (GPS included), XMP, IPTC and comments, keeping the colour profile."""
    kept = {}
    for name in KEEP_PROFILES:
        with contextlib.suppress(KeyError):
            data = img.profiles[name]
            if data:
                kept[name] = data
    img.strip()
    for name, data in kept.items():
        img.profiles[name] = data


def _save(img, fmt: str, dest: Path, temp_dir: Path, quality: int | None = None) -> Rendered:
    """Render into a temp file (staged; Result.commit() puts it in place)."""

    def produce(tmp: Path) -> None:
        if quality:
            img.compression_quality = quality
        img.save(filename=f"{fmt}:{tmp}")

    temp = TempFile(temp_dir, f"{dest.name}.")
    try:
        temp.produced(produce)
    except WandException as exc:
        temp.discard()
        if _out_of_room(temp_dir, exc):  # ImageMagick reports ENOSPC as its own error
            raise OSError(errno.ENOSPC, f"no room left to write {dest.name}") from exc
        raise
    except BaseException:
        temp.discard()
        raise
    return Rendered("", fmt, dest, img.width, img.height, temp.size, temp.sha256, temp)


def _out_of_room(directory: Path, exc: Exception) -> bool:
    """Did a write fail because the filesystem is full (ImageMagick says "WriteBlob Failed" or
    similar, not ENOSPC)?"""
    text = str(exc)
    if "No space left" in text or "quota" in text.lower():
        return True
    if "WriteBlob" not in text and "unable to write" not in text.lower():
        return False
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize < FULL_BELOW


def _first_frame(img):
    return Image(image=img.sequence[0]) if len(img.sequence) > 1 else None


def render(
    src: Path,
    src_fmt: str,
    targets: list[Target],
    temp_dir: Path,
    *,
    strip_original: bool = True,
    decode_hint: str | None = None,
) -> Result:
    """Render every target (and `src` again without metadata, when asked and needed) into
    temp files in `temp_dir`; the caller commits the Result. Nothing is staged after an
    error. `decode_hint` ("WxH", JPEG only) lets libjpeg decode at the smallest scale whose
    sides stay at least that large: a 12 MP photo's thumbnails need a fraction of its pixels.
    Any ImageMagick error means this file cannot be processed (DecodeError); OS errors such
    as a full disk propagate so the job is retried."""
    result = Result(0, 0, 0)
    try:
        return _render(src, src_fmt, targets, temp_dir, strip_original, result, decode_hint)
    except WandException as exc:
        result.discard()
        raise DecodeError(f"ImageMagick could not decode the file ({_short(exc)})") from exc
    except BaseException:
        result.discard()
        raise


def _render(
    src: Path,
    src_fmt: str,
    targets: list[Target],
    temp_dir: Path,
    strip: bool,
    result: Result,
    hint: str | None,
) -> Result:
    img = Image()
    if hint and src_fmt == "jpeg":
        img.options["jpeg:size"] = hint
    with img:
        img.read(filename=f"{src_fmt}:{src}")
        if img.width <= 0 or img.height <= 0:
            raise DecodeError("the file decodes to an empty image")
        full = (img.width, img.height)
        if hint and src_fmt == "jpeg":
            with open(src, "rb") as fh:  # the header's size: did libjpeg scale it down?
                try:
                    full = dimensions(fh)
                except ValueError as exc:
                    raise DecodeError(f"its header cannot be read ({exc})") from exc
            result.scaled = (img.width, img.height) != full
        result.rotated = getattr(img, "orientation", "") in ROTATED
        frames = len(img.sequence)
        animated = frames > 1 and src_fmt in ANIMATED_FORMATS
        if animated:
            img.coalesce()
        rewrite = strip and _needs_sanitizing(img)
        source_quality = img.compression_quality or 92
        img.auto_orient()
        _strip(img)
        result.width, result.height = full[::-1] if result.rotated else full
        result.frames = frames

        if rewrite:
            q = source_quality if src_fmt in ("jpeg", "webp", "heic", "avif") else None
            result.original = _save(img, src_fmt, src, temp_dir, q)

        done: dict[Path, Rendered] = {}
        by_size: dict[str | None, list[Target]] = {}
        for t in targets:
            by_size.setdefault(t.size, []).append(t)

        level = img
        owned = []
        try:
            for size in (None, *SIZES):
                if size is not None:
                    w, h = scaled(level.width, level.height, SIZES[size])
                    if (w, h) != (level.width, level.height):
                        level = level.clone()
                        owned.append(level)
                        level.resize(w, h)
                        if animated:
                            level.optimize_layers()
                for t in by_size.get(size, []):
                    result.variants.append(_render_one(level, t, done, result, temp_dir))
        finally:
            for extra in owned:
                extra.close()
        result.variants = [v for v in result.variants if v is not None]
        return result


def _render_one(level, t: Target, done: dict[Path, Rendered], result: Result, temp_dir: Path):
    if t.fmt == "avif" and min(level.width, level.height) < AVIF_MIN_SIDE:
        result.skipped.append(t.kind)
        return None
    if t.dest in done:  # e.g. a WebP original: its "original" thumbnail *is* the WebP one
        prev = done[t.dest]
        return Rendered(
            t.kind, prev.fmt, prev.dest, prev.width, prev.height, prev.size, prev.sha256
        )
    single = _first_frame(level) if t.fmt in ("avif", "heic", "jpeg", "bmp") else None
    try:
        out = _save(single or level, t.fmt, t.dest, temp_dir, QUALITY.get(t.fmt))
    finally:
        if single is not None:
            single.close()
    out.kind = t.kind
    done[t.dest] = out
    return out


def _short(exc: Exception) -> str:
    text = str(exc).split(" @ ")[0]
    return text[:200]
