"""Pool moves: empty one pool into another, same node or another node, without losing or
duplicating a file (issue 4, SPEC §3, §6). This module starts and controls moves, shows their
progress and resumes lost ones; `move_plan` plans them, `move_items` moves the images.

Every item goes pending → copying → verified → switched → source_deleted. The source stays
readable until every copy is verified; the DB pointers flip in one compare-and-set
transaction; only then is the source deleted.
"""

from __future__ import annotations

import logging

from flask import current_app

from pixelfox import queues
from pixelfox.extensions import db
from pixelfox.models import (
    Image,
    ImageCopy,
    PoolMove,
    PoolMoveItem,
    RegenRun,
    StoragePool,
    TieringRun,
    User,
)
from pixelfox.models.base import utcnow
from pixelfox.models.move import IN_FLIGHT, ITEM_OPEN
from pixelfox.services import copies, heartbeat, nodes, pools
from pixelfox.services.move_plan import (
    job_prefix,
    open_item_ids,
    pool_totals,
    queue_items,
    queue_planner,
    refresh_counts,
)

log = logging.getLogger(__name__)
HEADROOM = 1.10  # free space needed: bytes to move + 10 %


class MoveError(ValueError):
    pass


def preflight(source: StoragePool, target: StoragePool) -> dict:
    """Can this move run, and what will it do? (Also the dry-run plan.)"""
    count, total = pool_totals(source)
    problems = []
    if source.id == target.id:
        problems.append("Source and target are the same pool.")
    _nodes, states = heartbeat.latest()
    state = states.get(target.id)
    if state is None:
        problems.append(f"No recent heartbeat from node {target.node_id}: is its worker running?")
    elif not state.get("healthy"):
        why = state.get("error") or (
            f"writable={state.get('writable')}, "
            f"upload API reachable={state.get('upload_api_reachable')}"
        )
        problems.append(f"The target pool reports unhealthy ({why}).")
    room = pools.room(target, state.get("disk_free") if state else None)
    if room is not None and room < total * HEADROOM:
        problems.append(
            f"Not enough room on the target: {total} bytes to move (+10 % headroom), {room} free."
        )
    notes = []
    if source.failure_domain != target.failure_domain:
        _copies_stay_apart(source, target, problems, notes)
    problems += _path_problems(source, target)
    return {
        "images": count,
        "bytes": total,
        "room": room,
        "problems": problems,
        "notes": notes,
        "source_node": source.node_id,
        "target_node": target.node_id,
        "cross_node": source.node_id != target.node_id,
        "target_heartbeat": state,
    }


def _path_problems(source: StoragePool, target: StoragePool) -> list[str]:
    """Can the source's node copy into the target at all?"""
    problems = []
    if not target.is_active:
        problems.append("The target pool is not active.")
    if source.node_id != target.node_id and not target.is_s3:  # pushed to the target node
        if not target.upload_api_url:
            problems.append(
                "The target pool has no upload_api_url to derive its replicate endpoint from."
            )
        if not current_app.config.get("REPLICATION_SECRET"):
            problems.append("REPLICATION_SECRET is not set: copies between nodes are disabled.")
    return problems


def _copies_stay_apart(source: StoragePool, target: StoragePool, problems, notes) -> None:
    """Copies must stay in distinct failure domains (nodes, buckets): images of the source
    pool that already have a copy in the target's domain would end with two copies there.
    Repair then places one of them elsewhere (re-target) — which needs another domain."""
    on_target_node = (
        db.select(ImageCopy.image_id)
        .join(StoragePool, StoragePool.id == ImageCopy.pool_id)
        .where(copies.in_domain(target), ImageCopy.pool_id != source.id)
    )
    clash = db.session.execute(
        db.select(db.func.count(Image.id)).where(
            Image.storage_pool_id == source.id,
            Image.deleted_at.is_(None),
            Image.id.in_(on_target_node),
        )
    ).scalar_one()
    if not clash:
        return
    active = db.session.execute(
        db.select(StoragePool).where(StoragePool.is_active.is_(True))
    ).scalars()
    lost = nodes.lost()
    others = {p.failure_domain for p in active if p.node_id not in lost or p.is_s3}
    others -= {source.failure_domain, target.failure_domain}
    where = f"in bucket pool {target.name}" if target.is_s3 else f"on node {target.node_id}"
    if copies.wanted() > 1 and not others:
        problems.append(
            f"{clash} images of this pool have their replica {where}: moved there, both "
            "copies would be in one place, and no other node or bucket can take the replica. "
            "Add a node (or move to a pool on another node) first."
        )
    else:
        notes.append(
            f"{clash} images of this pool have a replica {where}; after the move repair "
            "re-targets those replicas to another node or bucket."
        )


def start(
    source: StoragePool, target: StoragePool, user: User | None, dry_run: bool, force: bool = False
) -> PoolMove:
    if source.id == target.id:
        raise MoveError("Choose a different target pool.")
    busy = db.session.execute(
        db.select(PoolMove.id).where(
            PoolMove.source_pool_id == source.id,
            PoolMove.status.in_(("planned", "running", "paused")),
        )
    ).first()
    if busy and not dry_run:
        raise MoveError(f"Move #{busy[0]} of this pool is not finished yet.")
    regen = db.session.execute(
        db.select(RegenRun.id).where(
            RegenRun.status == "running",
            RegenRun.pool_id.is_(None) | RegenRun.pool_id.in_((source.id, target.id)),
        )
    ).first()
    if regen and not dry_run:
        raise MoveError(f"Regenerate run #{regen[0]} is rewriting these images; move after it.")
    check = preflight(source, target)
    if check["problems"] and not dry_run and not force:
        raise MoveError(" ".join(check["problems"]))
    move = PoolMove(
        source_pool_id=source.id,
        target_pool_id=target.id,
        dry_run=dry_run,
        created_by=user.id if user else None,
        total=check["images"],
        bytes_total=check["bytes"],
    )
    if dry_run:
        move.status, move.planning_done, move.finished_at = "done", True, utcnow()
        db.session.add(move)
        db.session.commit()
        return move
    move.status, move.started_at = "running", utcnow()
    db.session.add(move)
    db.session.commit()
    queue_planner(move)
    return move


def start_selected(
    source: StoragePool, target: StoragePool, images: list[tuple[int, int]], run: TieringRun
) -> PoolMove:
    """A tiering move: these (image id, bytes) of `source` into `target`, through the same
    journal as a pool move (its items are made here; there is nothing to plan)."""
    problems = _path_problems(source, target)
    busy = db.session.execute(
        db.select(PoolMove.id).where(
            PoolMove.source_pool_id == source.id,
            PoolMove.status.in_(("planned", "running", "paused")),
            PoolMove.tiering_run_id.is_(None) | (PoolMove.tiering_run_id != run.id),
        )
    ).first()
    if busy:
        problems.append(f"move #{busy[0]} of the source pool is not finished yet.")
    if problems:
        raise MoveError(" ".join(problems))
    move = PoolMove(
        source_pool_id=source.id,
        target_pool_id=target.id,
        kind="tiering",
        tiering_run_id=run.id,
        status="running",
        started_at=utcnow(),
        created_by=run.created_by,
        total=len(images),
        bytes_total=sum(b for _i, b in images),
        plan_cursor=max((i for i, _b in images), default=0),
        planning_done=True,
    )
    db.session.add(move)
    db.session.flush()
    db.session.add_all(
        PoolMoveItem(move_id=move.id, image_id=image_id, bytes=nbytes)
        for image_id, nbytes in images
    )
    db.session.commit()
    queue_items(move, open_item_ids(move.id))
    return move


def set_status(move: PoolMove, action: str) -> PoolMove:
    """pause | resume | cancel | retry, from the admin page."""
    if action == "pause" and move.status == "running":
        move.status = "paused"
    elif action == "resume" and move.status == "paused":
        move.status = "running"
    elif action == "cancel" and move.status in ("planned", "running", "paused"):
        move.status, move.finished_at = "cancelled", utcnow()
    elif action == "retry" and move.status in ("failed", "done", "running", "paused"):
        db.session.execute(
            db.update(PoolMoveItem)
            .where(PoolMoveItem.move_id == move.id, PoolMoveItem.status == "failed")
            .values(status="pending", attempts=0, error=None)
        )
        move.status, move.finished_at = "running", None
    else:
        raise MoveError(f"Cannot {action} a move that is {move.status}.")
    db.session.commit()
    if move.status == "running":
        if not move.planning_done:
            queue_planner(move)
        queue_items(move, open_item_ids(move.id))
    elif move.status == "cancelled":
        # Items already copying finish (switch + delete) so no orphan copy stays behind.
        queue_items(move, open_item_ids(move.id, IN_FLIGHT))
    return move


def progress(move: PoolMove) -> dict:
    """What the progress bar and the JSON show."""
    elapsed = None
    if move.started_at:
        elapsed = max(1.0, ((move.finished_at or utcnow()) - move.started_at).total_seconds())
    rate = move.bytes_moved / elapsed if elapsed else 0
    left = max(0, move.bytes_total - move.bytes_moved)
    finished = move.done + move.failed + move.skipped
    return {
        "id": move.id,
        "status": move.status,
        "total": move.total,
        "done": move.done,
        "failed": move.failed,
        "skipped": move.skipped,
        "bytes_moved": move.bytes_moved,
        "bytes_total": move.bytes_total,
        "dry_run": move.dry_run,
        "percent": round(100 * finished / move.total, 1)
        if move.total
        else (100.0 if move.status == "done" else 0.0),
        "rate_bytes_per_second": round(rate),
        "eta_seconds": round(left / rate) if rate and move.status == "running" else None,
        "planning_done": move.planning_done,
    }


def failed_items(move: PoolMove, limit: int = 50) -> list[PoolMoveItem]:
    return (
        db.session.execute(
            db.select(PoolMoveItem)
            .where(PoolMoveItem.move_id == move.id, PoolMoveItem.status == "failed")
            .limit(limit)
        )
        .scalars()
        .all()
    )


def recover(now=None) -> int:
    """Resume moves whose jobs were lost: re-plan unfinished planning, re-queue open items
    (in-flight ones only for paused/cancelled moves). Returns how many moves were resumed."""
    now = now or utcnow()
    resumed = 0
    for move in (
        db.session.execute(
            db.select(PoolMove).where(PoolMove.status.in_(("running", "paused", "cancelled")))
        )
        .scalars()
        .all()
    ):
        # Paused and cancelled moves only finish images already in flight.
        statuses = ITEM_OPEN if move.status == "running" else IN_FLIGHT
        items = open_item_ids(move.id, statuses)
        needs_plan = move.status == "running" and not move.planning_done
        if not items and not needs_plan:
            if move.status == "running":
                refresh_counts(move.id)
            continue
        nodes = [move.source.node_id, current_app.config["NODE_ID"]]
        if queues.has_live_jobs(job_prefix(move.id), nodes, now):
            continue
        if needs_plan:
            queue_planner(move)
        if items:
            queue_items(move, items)
        resumed += 1
        log.info(
            "move %s resumed: %d open items, planning %s",
            move.id,
            len(items),
            "resumed" if needs_plan else "done",
        )
    return resumed
