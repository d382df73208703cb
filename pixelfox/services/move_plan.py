"""Pool moves, planning: items in batches by image-id cursor, their jobs on the source node,
and the counters (always derived from the items, so they add up)."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError

from pixelfox import queues
from pixelfox.extensions import db
from pixelfox.models import Image, ImageVariant, PoolMove, PoolMoveItem, StoragePool
from pixelfox.models.base import utcnow
from pixelfox.models.move import ITEM_OPEN

PLAN_BATCH = 200
JOB_BATCH = 50


def image_bytes_query(pool_id: int):
    """Per image: original size + its distinct variant files in the pool."""
    variants = (
        db.select(ImageVariant.image_id, func.sum(ImageVariant.size).label("vbytes"))
        .where(ImageVariant.storage_pool_id == pool_id)
        .group_by(ImageVariant.image_id)
        .subquery()
    )
    return (
        db.select(Image.id, (Image.size + func.coalesce(variants.c.vbytes, 0)).label("bytes"))
        .outerjoin(variants, variants.c.image_id == Image.id)
        .where(Image.storage_pool_id == pool_id, Image.deleted_at.is_(None))
    )


def pool_totals(pool: StoragePool) -> tuple[int, int]:
    """(images, bytes) a move of this pool would carry. The count is index-only; the bytes
    are the pool's used_size (originals + variants), which every write keeps current and
    pool_stats recomputes — summing 40 000 variant rows per pool would take most of a second."""
    count = db.session.execute(
        db.select(func.count(Image.id)).where(
            Image.storage_pool_id == pool.id, Image.deleted_at.is_(None)
        )
    ).scalar()
    return int(count), int(pool.used_size or 0)


def job_prefix(move_id: int) -> str:
    return queues.run_prefix("move", move_id)


def queue_planner(move: PoolMove) -> None:
    node = current_app.config["NODE_ID"]
    queues.queue_planner(node, "move", move.id, "pixelfox.jobs.moves.pool_move_enqueue")


def plan(move_id: int) -> int:
    """Create items in batches of 200 by image-id cursor and queue their jobs on the source
    node. Idempotent: the unique (move, image) key makes a second planner a no-op."""
    planned = 0
    while True:
        move = db.session.get(PoolMove, move_id)
        db.session.refresh(move)
        if move is None or move.status != "running" or move.planning_done:
            return planned
        rows = db.session.execute(
            image_bytes_query(move.source_pool_id)
            .where(Image.id > move.plan_cursor)
            .order_by(Image.id)
            .limit(PLAN_BATCH)
        ).all()
        if not rows:
            move.planning_done = True
            db.session.commit()
            refresh_counts(move_id)
            return planned
        ids = [r.id for r in rows]
        have = set(
            db.session.execute(
                db.select(PoolMoveItem.image_id).where(
                    PoolMoveItem.move_id == move_id, PoolMoveItem.image_id.in_(ids)
                )
            ).scalars()
        )
        new = [
            PoolMoveItem(move_id=move_id, image_id=r.id, bytes=int(r.bytes))
            for r in rows
            if r.id not in have
        ]
        db.session.add_all(new)
        db.session.execute(
            db.update(PoolMove)
            .where(PoolMove.id == move_id, PoolMove.plan_cursor < ids[-1])
            .values(plan_cursor=ids[-1])
        )
        try:
            db.session.commit()
        except IntegrityError:  # another planner took this batch
            db.session.rollback()
            continue
        planned += len(new)
        queue_items(move, [i.id for i in new])


def queue_items(move: PoolMove, item_ids: list[int]) -> None:
    node = move.source.node_id
    for start_at in range(0, len(item_ids), JOB_BATCH):
        chunk = item_ids[start_at : start_at + JOB_BATCH]
        queues.enqueue_once(
            node,
            "pixelfox.jobs.moves.move_image",
            queues.job_id("move", move.id, chunk[0]),
            move.id,
            chunk,
            timeout=3600,
        )


def open_item_ids(move_id: int, statuses=ITEM_OPEN) -> list[int]:
    return list(
        db.session.execute(
            db.select(PoolMoveItem.id)
            .where(PoolMoveItem.move_id == move_id, PoolMoveItem.status.in_(statuses))
            .order_by(PoolMoveItem.id)
        ).scalars()
    )


def refresh_counts(move_id: int) -> PoolMove:
    """Counters come from the items, so they always add up; finish the move when no item
    is open any more."""
    rows = db.session.execute(
        db.select(PoolMoveItem.status, func.count(), func.coalesce(func.sum(PoolMoveItem.bytes), 0))
        .where(PoolMoveItem.move_id == move_id)
        .group_by(PoolMoveItem.status)
    ).all()
    by = {status: (int(n), int(b)) for status, n, b in rows}
    move = db.session.get(PoolMove, move_id)
    move.done = by.get("source_deleted", (0, 0))[0]
    move.failed = by.get("failed", (0, 0))[0]
    move.skipped = by.get("skipped", (0, 0))[0]
    move.bytes_moved = by.get("source_deleted", (0, 0))[1]
    if move.planning_done:
        move.total = sum(n for n, _ in by.values())
        move.bytes_total = sum(b for _, b in by.values())
        still_open = sum(by.get(s, (0, 0))[0] for s in ITEM_OPEN)
        if move.status == "running" and still_open == 0:
            move.status = "failed" if move.failed else "done"
            move.finished_at = utcnow()
    db.session.commit()
    return move
