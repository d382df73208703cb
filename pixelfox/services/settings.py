"""Typed, admin-editable settings (SPEC §8). Read per request, so changes apply at once."""

from __future__ import annotations

import json
from dataclasses import dataclass

from flask import g, has_app_context

from pixelfox.extensions import db
from pixelfox.models import Setting


@dataclass(frozen=True)
class Definition:
    key: str
    type: type
    default: object
    section: str
    help: str
    minimum: float | None = None
    maximum: float | None = None


DEFINITIONS = [
    Definition("site_title", str, "PixelFox", "general", "Name shown in the header and titles."),
    Definition("image_upload_enabled", bool, True, "uploads", "Accept new uploads at all."),
    Definition(
        "direct_upload_enabled",
        bool,
        False,
        "uploads",
        "Browsers upload straight to the storage node that will hold the file.",
    ),
    Definition(
        "upload_rate_limit_per_minute",
        int,
        60,
        "limits",
        "Uploads per minute from one IP address (0 = no limit).",
        0,
        100000,
    ),
    Definition(
        "upload_user_rate_limit_per_minute",
        int,
        60,
        "limits",
        "Uploads per minute by one user (0 = no limit).",
        0,
        100000,
    ),
    Definition("max_upload_mb", int, 50, "limits", "Largest accepted file, in MB.", 1, 10240),
    Definition(
        "max_image_megapixels",
        int,
        100,
        "limits",
        "Largest accepted image, in megapixels, read from the header before decoding.",
        1,
        1000,
    ),
    Definition(
        "replication_require_checksum",
        bool,
        True,
        "replication",
        "Copies between nodes must carry a SHA-256 that the receiver verifies.",
    ),
    Definition(
        "strip_metadata",
        bool,
        True,
        "processing",
        "Remove EXIF (GPS included) from the served original, not only from variants.",
    ),
    Definition(
        "thumbnail_original_enabled",
        bool,
        True,
        "processing",
        "Make thumbnails in the original's format.",
    ),
    Definition("thumbnail_webp_enabled", bool, True, "processing", "Make WebP thumbnails."),
    Definition("thumbnail_avif_enabled", bool, True, "processing", "Make AVIF thumbnails."),
    Definition(
        "move_max_mb_per_second",
        int,
        0,
        "replication",
        "Throttle for each pool move, MB/s (0 = unlimited).",
        0,
        100000,
    ),
    Definition(
        "replication_factor",
        int,
        1,
        "cluster",
        "Verified copies of every image, each on a different node (1–3).",
        1,
        3,
    ),
    Definition(
        "node_down_after_seconds",
        int,
        180,
        "cluster",
        "A node whose heartbeat is older than this is down: links point at its replicas.",
        5,
        86400,
    ),
    Definition(
        "repair_max_mb_per_second",
        int,
        50,
        "cluster",
        "Throttle for copies made by replication and repair, MB/s (0 = unlimited).",
        0,
        100000,
    ),
    Definition(
        "scrub_max_mb_per_second",
        int,
        5,
        "cluster",
        "How fast each node re-reads its files to check them, MB/s (0 = unlimited).",
        0,
        100000,
    ),
    Definition(
        "pool_high_water_percent",
        int,
        90,
        "cluster",
        "Pools fuller than this get no new uploads.",
        1,
        100,
    ),
    Definition(
        "tiering_enabled",
        bool,
        False,
        "tiering",
        "Move cold images to colder pools (a daily pass; /admin/tiering runs one at once).",
    ),
    Definition(
        "tiering_warm_after_days",
        int,
        30,
        "tiering",
        "Images in hot pools not viewed for this many days (never viewed: since upload) "
        "move to a warm pool.",
        1,
        36500,
    ),
    Definition(
        "tiering_cold_after_days",
        int,
        180,
        "tiering",
        "Images not viewed for this many days move to a cold pool (from hot or warm).",
        1,
        36500,
    ),
    Definition(
        "tiering_max_mb_per_second",
        int,
        20,
        "tiering",
        "Throttle for all tiering moves together, MB/s (0 = unlimited).",
        0,
        100000,
    ),
    Definition(
        "tiering_promote_views_per_day",
        int,
        0,
        "tiering",
        "An image in a warm or cold pool viewed more often than this in a day moves back "
        "to hot (0 = never: viewed images stay where they are).",
        0,
        10000000,
    ),
]
BY_KEY = {d.key: d for d in DEFINITIONS}


class InvalidSetting(ValueError):
    pass


def parse(key: str, raw) -> object:
    """Turn form/JSON input into the setting's type, or raise InvalidSetting."""
    d = BY_KEY.get(key)
    if d is None:
        raise InvalidSetting(f"Unknown setting {key!r}.")
    if d.type is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on", "y"):
            return True
        if text in ("0", "false", "no", "off", "n", ""):
            return False
        raise InvalidSetting(f"{key} must be on or off.")
    if d.type is int:
        try:
            value = int(str(raw).strip())
        except ValueError as exc:
            raise InvalidSetting(f"{key} must be a whole number.") from exc
        if d.minimum is not None and value < d.minimum:
            raise InvalidSetting(f"{key} must be at least {d.minimum:g}.")
        if d.maximum is not None and value > d.maximum:
            raise InvalidSetting(f"{key} must be at most {d.maximum:g}.")
        return value
    value = str(raw).strip()
    if not value:
        raise InvalidSetting(f"{key} must not be empty.")
    return value[:200]


def all_settings() -> dict[str, object]:
    """Every setting, stored value or default; cached for the current request or job (the
    job wrapper and the request teardown drop the cache; `get(key, fresh=True)` reads
    again, for long jobs that follow changes)."""
    if has_app_context() and "pixelfox_settings" in g:
        return g.pixelfox_settings
    values = {d.key: d.default for d in DEFINITIONS}
    for row in db.session.execute(db.select(Setting)).scalars():
        if row.key in BY_KEY:
            try:
                values[row.key] = parse(row.key, json.loads(row.value))
            except (InvalidSetting, ValueError):
                pass  # a bad stored value falls back to the default
    if has_app_context():
        g.pixelfox_settings = values
    return values


def forget() -> None:
    """Drop the cached settings of this request or job."""
    if has_app_context():
        g.pop("pixelfox_settings", None)


def get(key: str, fresh: bool = False):
    if fresh:
        forget()
    return all_settings()[key]


def update(changes: dict[str, object]) -> dict[str, object]:
    """Validate every change first, then store them together."""
    parsed = {key: parse(key, raw) for key, raw in changes.items()}
    for key, value in parsed.items():
        row = db.session.get(Setting, key)
        if row is None:
            db.session.add(Setting(key=key, value=json.dumps(value)))
        else:
            row.value = json.dumps(value)
    db.session.commit()
    forget()
    return parsed
