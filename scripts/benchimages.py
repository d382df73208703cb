"""Images the benchmarks share (no side effects on import)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_12mp_jpeg(path: Path) -> Path:
    from pixelfox.imaging.magick import Image

    with Image(filename=f"jpeg:{ROOT / 'tests/fixtures/good/photo.jpg'}") as img:
        img.resize(4240, 2832)  # 12.0 MP, EXIF (orientation, GPS) kept
        img.compression_quality = 90
        img.save(filename=f"jpeg:{path}")
    return path
