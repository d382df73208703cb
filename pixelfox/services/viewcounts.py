"""View counts off the request path: a view is one Redis HINCRBY; a periodic job writes the
counts (the time of the latest view, and the views of the latest day for tiering's promotion)
into `images` in batches.

Each flush renames the live hash to a batch key of its own, so views keep arriving in a fresh
hash while a batch is written. Every chunk of a batch is applied in the same transaction that
records its id in `view_flushes`, so a job retried after a crash at any line applies nothing
twice; a batch left behind by a crash is finished by the next run. Views counted since the
last flush are lost if Redis loses its data (at most a minute of them).
"""

from __future__ import annotations

import logging
import time
import uuid as uuidlib
from datetime import UTC, datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError

from pixelfox.extensions import db, get_redis
from pixelfox.models import Image, ViewFlush
from pixelfox.models.base import utcnow

log = logging.getLogger(__name__)
LIVE_KEY = "pixelfox:views"
BATCH_PREFIX = "pixelfox:views:batch:"
CHUNK = 500


def count_view(image_id: int) -> None:
    """Count one view (fields: `<id>` → views, `t<id>` → unix time of the latest). Without
    Redis the view goes uncounted; the page is still served."""
    try:
        with get_redis().pipeline(transaction=False) as pipe:
            pipe.hincrby(LIVE_KEY, str(image_id), 1)
            pipe.hset(LIVE_KEY, f"t{image_id}", int(time.time()))
            pipe.execute()
    except RedisError:
        log.warning("view of image %s not counted (Redis unavailable)", image_id)


def flush() -> dict[str, int]:
    """Write counted views into the images table (idempotent, resumable)."""
    redis = get_redis()
    batch = BATCH_PREFIX + uuidlib.uuid4().hex
    if redis.exists(LIVE_KEY):
        redis.rename(LIVE_KEY, batch)
    applied = views = 0
    for key in redis.scan_iter(match=BATCH_PREFIX + "*", count=100):
        name = key.decode() if isinstance(key, bytes) else key
        a, v = _apply_batch(name)
        applied, views = applied + a, views + v
    db.session.execute(
        db.delete(ViewFlush).where(ViewFlush.created_at < utcnow() - timedelta(days=2))
    )
    db.session.commit()
    return {"images": applied, "views": views}


def _apply_batch(key: str) -> tuple[int, int]:
    redis = get_redis()
    raw = {k.decode(): int(v) for k, v in redis.hgetall(key).items()}
    counts = {int(k): n for k, n in raw.items() if not k.startswith("t")}
    ids = sorted(counts)
    applied = views = 0
    for number, start in enumerate(range(0, len(ids), CHUNK)):
        chunk = ids[start : start + CHUNK]
        db.session.add(ViewFlush(flush_id=f"{key.rsplit(':', 1)[1]}:{number}"))
        try:
            db.session.flush()
        except IntegrityError:  # applied before a crash: never twice
            db.session.rollback()
            continue
        for image_id in chunk:
            seen = datetime.fromtimestamp(raw.get(f"t{image_id}", time.time()), UTC)
            seen = seen.replace(tzinfo=None)
            n = counts[image_id]
            db.session.execute(
                db.update(Image)
                .where(Image.id == image_id)
                # In this order: MySQL assigns left to right, with the values just set.
                .ordered_values(
                    (Image.view_count, Image.view_count + n),
                    (
                        Image.views_on_day,
                        db.case(
                            (Image.views_day == seen.date(), Image.views_on_day + n),
                            (Image.views_day > seen.date(), Image.views_on_day),
                            else_=n,
                        ),
                    ),
                    (
                        Image.views_day,
                        db.case(
                            (Image.views_day > seen.date(), Image.views_day),
                            else_=seen.date(),
                        ),
                    ),
                    (
                        Image.last_viewed_at,
                        db.case(
                            (Image.last_viewed_at.is_(None), seen),
                            (Image.last_viewed_at < seen, seen),
                            else_=Image.last_viewed_at,
                        ),
                    ),
                )
                .execution_options(synchronize_session=False)
            )
        db.session.commit()
        applied += len(chunk)
        views += sum(counts[i] for i in chunk)
    redis.delete(key)
    return applied, views
