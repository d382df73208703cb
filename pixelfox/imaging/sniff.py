"""Decide an upload's type from its bytes and read its size from the header, without decoding.

Runs in the web process, so it never touches ImageMagick: only byte parsing.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO


@dataclass(frozen=True)
class Kind:
    name: str  # ImageMagick coder we read it with
    mime: str
    ext: str


KINDS = {
    "jpeg": Kind("jpeg", "image/jpeg", ".jpg"),
    "png": Kind("png", "image/png", ".png"),
    "gif": Kind("gif", "image/gif", ".gif"),
    "webp": Kind("webp", "image/webp", ".webp"),
    "avif": Kind("avif", "image/avif", ".avif"),
    "heic": Kind("heic", "image/heic", ".heic"),
    "bmp": Kind("bmp", "image/bmp", ".bmp"),
}
MIME_BY_EXT = {k.ext: k.mime for k in KINDS.values()} | {".jpeg": "image/jpeg"}

AVIF_BRANDS = {b"avif", b"avis"}
HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"}


class Refused(ValueError):
    """The bytes are not an image we accept; `code` is the API error code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Sniffed:
    kind: Kind
    width: int
    height: int

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1_000_000


def _unsupported(detail: str = "") -> Refused:
    msg = "This file is not a supported image (JPEG, PNG, GIF, WebP, AVIF, BMP or HEIC)."
    return Refused(415, "unsupported_type", f"{msg} {detail}".strip())


def _damaged(detail: str) -> Refused:
    return Refused(422, "damaged_image", f"The image file is damaged or incomplete: {detail}.")


def detect(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] == b"BM" and len(head) >= 26:
        return "bmp"
    if head[4:8] == b"ftyp":
        size = struct.unpack(">I", head[:4])[0]
        brands = {head[8:12]} | {head[i : i + 4] for i in range(16, min(size, len(head)), 4)}
        if brands & AVIF_BRANDS:
            return "avif"
        if brands & HEIC_BRANDS:
            return "heic"
    return None


def sniff(fh: BinaryIO, max_megapixels: float | None = None) -> Sniffed:
    """Identify the file, read width/height from its header, check the limit and that the
    file is structurally complete. Raises Refused with a readable message."""
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    if size == 0:
        raise Refused(400, "empty_file", "The file is empty.")
    fh.seek(0)
    head = fh.read(4096)
    name = detect(head)
    if name is None:
        raise _unsupported()
    try:
        width, height = _DIMENSIONS[name](fh, head)
    except (struct.error, IndexError, ValueError) as exc:
        raise _damaged("its header cannot be read") from exc
    if width <= 0 or height <= 0:
        raise _damaged("its header has no valid size")
    sniffed = Sniffed(KINDS[name], width, height)
    if max_megapixels and sniffed.megapixels > max_megapixels:
        raise Refused(
            422,
            "too_many_pixels",
            f"The image is {width}×{height} ({sniffed.megapixels:.0f} megapixels); "
            f"the limit is {max_megapixels:g} megapixels.",
        )
    _COMPLETE[name](fh, size)
    if name == "gif":
        _gif_frames_within(fh, size, max_megapixels)
    return sniffed


def dimensions(fh: BinaryIO) -> tuple[int, int]:
    """Width and height from the header alone (no completeness check); ValueError when the
    header cannot be read."""
    fh.seek(0)
    head = fh.read(4096)
    name = detect(head)
    if name is None:
        raise ValueError("not an image we read")
    try:
        return _DIMENSIONS[name](fh, head)
    except (struct.error, IndexError) as exc:
        raise ValueError("unreadable header") from exc


# --- dimensions -------------------------------------------------------------------------

SOF_MARKERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_segments(fh: BinaryIO):
    """Yield (marker, payload_offset, length) up to and including SOS."""
    fh.seek(2)
    while True:
        byte = fh.read(1)
        if not byte:
            return
        if byte != b"\xff":
            raise ValueError("bad marker")
        marker = fh.read(1)
        while marker == b"\xff":
            marker = fh.read(1)
        if not marker:
            return
        m = marker[0]
        if m in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            continue
        raw = fh.read(2)
        if len(raw) < 2:
            return
        length = struct.unpack(">H", raw)[0]
        offset = fh.tell()
        yield m, offset, length
        if m == 0xDA:
            return
        fh.seek(offset + length - 2)


def _jpeg_dims(fh: BinaryIO, head: bytes) -> tuple[int, int]:
    for marker, offset, _length in _jpeg_segments(fh):
        if marker in SOF_MARKERS:
            fh.seek(offset)
            _precision, height, width = struct.unpack(">BHH", fh.read(5))
            return width, height
    raise ValueError("no SOF")


def _png_dims(fh: BinaryIO, head: bytes) -> tuple[int, int]:
    if head[12:16] != b"IHDR":
        raise ValueError("no IHDR")
    return struct.unpack(">II", head[16:24])


def _gif_dims(fh: BinaryIO, head: bytes) -> tuple[int, int]:
    return struct.unpack("<HH", head[6:10])


def _webp_dims(fh: BinaryIO, head: bytes) -> tuple[int, int]:
    chunk = head[12:16]
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        bits = struct.unpack("<I", head[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        w = int.from_bytes(head[24:27], "little") + 1
        h = int.from_bytes(head[27:30], "little") + 1
        return w, h
    raise ValueError("unknown WebP chunk")


def _bmp_dims(fh: BinaryIO, head: bytes) -> tuple[int, int]:
    dib = struct.unpack("<I", head[14:18])[0]
    if dib == 12:
        return struct.unpack("<HH", head[18:22])
    w, h = struct.unpack("<ii", head[18:26])
    return abs(w), abs(h)


def _boxes(fh: BinaryIO, start: int, end: int):
    """Yield (type, payload_start, box_end) for ISO-BMFF boxes in [start, end)."""
    pos = start
    while pos + 8 <= end:
        fh.seek(pos)
        size, kind = struct.unpack(">I4s", fh.read(8))
        header = 8
        if size == 1:
            size = struct.unpack(">Q", fh.read(8))[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError("box overruns")
        yield kind, pos + header, pos + size
        pos += size


def _heif_dims(fh: BinaryIO, head: bytes) -> tuple[int, int]:
    fh.seek(0, os.SEEK_END)
    end = fh.tell()
    best = (0, 0)
    for kind, start, stop in _boxes(fh, 0, end):
        if kind != b"meta":
            continue
        for k2, s2, e2 in _boxes(fh, start + 4, stop):  # meta is a full box
            if k2 != b"iprp":
                continue
            for k3, s3, e3 in _boxes(fh, s2, e2):
                if k3 != b"ipco":
                    continue
                for k4, s4, _e4 in _boxes(fh, s3, e3):
                    if k4 == b"ispe":
                        fh.seek(s4 + 4)
                        w, h = struct.unpack(">II", fh.read(8))
                        if w * h > best[0] * best[1]:
                            best = (w, h)
    if best == (0, 0):
        raise ValueError("no ispe")
    return best


_DIMENSIONS = {
    "jpeg": _jpeg_dims,
    "png": _png_dims,
    "gif": _gif_dims,
    "webp": _webp_dims,
    "bmp": _bmp_dims,
    "avif": _heif_dims,
    "heic": _heif_dims,
}


# --- completeness -----------------------------------------------------------------------


def _tail(fh: BinaryIO, size: int, n: int = 64) -> bytes:
    fh.seek(max(0, size - n))
    return fh.read(n)


def _jpeg_complete(fh: BinaryIO, size: int) -> None:
    sos_end = None
    for marker, offset, length in _jpeg_segments(fh):
        if marker == 0xDA:
            sos_end = offset + length - 2
    if sos_end is None:
        raise _damaged("it has no image data")
    # The end-of-image marker must follow the entropy-coded data; inside that data 0xFF is
    # always stuffed, so the first FFD9 after the scan header is the real one.
    fh.seek(sos_end)
    carry = b""
    while True:
        block = fh.read(1024 * 1024)
        if not block:
            raise _damaged("the JPEG data ends early (truncated upload?)")
        if b"\xff\xd9" in carry + block:
            return
        carry = block[-1:]


def _png_complete(fh: BinaryIO, size: int) -> None:
    if b"IEND" not in _tail(fh, size):
        raise _damaged("the PNG data ends early (no IEND chunk)")


def _gif_complete(fh: BinaryIO, size: int) -> None:
    if b";" not in _tail(fh, size, 16):
        raise _damaged("the GIF data ends early (no trailer)")


def _webp_complete(fh: BinaryIO, size: int) -> None:
    fh.seek(4)
    riff = struct.unpack("<I", fh.read(4))[0]
    if riff + 8 > size:
        raise _damaged("the WebP data ends early")


def _bmp_complete(fh: BinaryIO, size: int) -> None:
    fh.seek(10)
    offset = struct.unpack("<I", fh.read(4))[0]
    if offset >= size:
        raise _damaged("the bitmap has no pixel data")


def _heif_complete(fh: BinaryIO, size: int) -> None:
    try:
        kinds = [k for k, _s, _e in _boxes(fh, 0, size)]
    except (ValueError, struct.error) as exc:
        raise _damaged("the HEIF container ends early") from exc
    if b"meta" not in kinds or b"mdat" not in kinds:
        raise _damaged("the HEIF container has no image data")


_COMPLETE = {
    "jpeg": _jpeg_complete,
    "png": _png_complete,
    "gif": _gif_complete,
    "webp": _webp_complete,
    "bmp": _bmp_complete,
    "avif": _heif_complete,
    "heic": _heif_complete,
}


# --- GIF frames ---------------------------------------------------------------------------

MAX_FRAMES = 1000  # as policy.xml's list-length: ImageMagick refuses longer sequences too


def _gif_frames_within(fh: BinaryIO, size: int, max_megapixels: float | None) -> None:
    """Walk every block of a GIF: each frame's own declared size (not only the logical
    screen) must stay within the pixel limit, and the frame count within MAX_FRAMES. A 1×1
    screen holding a 60000×60000 frame is a pixel flood too."""
    with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        pos = 13
        if data[10] & 0x80:  # global colour table
            pos += 3 * (2 << (data[10] & 0x07))
        frames = 0
        while pos < size:
            block = data[pos]
            if block == 0x3B:  # trailer
                return
            if block == 0x21:  # extension: label, then sub-blocks
                pos = _gif_skip_sub_blocks(data, pos + 2, size)
                continue
            if block != 0x2C or pos + 10 > size:
                raise _damaged("the GIF has a block it does not know")
            _left, _top, width, height, packed = struct.unpack("<HHHHB", data[pos + 1 : pos + 10])
            frames += 1
            if frames > MAX_FRAMES:
                raise Refused(
                    422,
                    "too_many_frames",
                    f"The animation has more than {MAX_FRAMES} frames; that is the limit.",
                )
            if max_megapixels and width * height / 1_000_000 > max_megapixels:
                raise Refused(
                    422,
                    "too_many_pixels",
                    f"A frame of this GIF is {width}×{height} "
                    f"({width * height / 1_000_000:.0f} megapixels); "
                    f"the limit is {max_megapixels:g} megapixels.",
                )
            pos += 10
            if packed & 0x80:  # local colour table
                pos += 3 * (2 << (packed & 0x07))
            pos = _gif_skip_sub_blocks(data, pos + 1, size)  # after the LZW code size byte
        raise _damaged("the GIF data ends early (no trailer)")


def _gif_skip_sub_blocks(data, pos: int, size: int) -> int:
    while pos < size:
        length = data[pos]
        pos += 1 + length
        if length == 0:
            return pos
    raise _damaged("the GIF data ends early")
