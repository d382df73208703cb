"""Pool moves: empty one pool into another, same node or another node, without losing or
duplicating a file (issue 4, SPEC §3, §6).

Every item goes pending → copying → verified → switched → source_deleted. The source stays
readable until every copy is verified; the DB pointers flip in one compare-and-set
transaction; only then is the source deleted. Each step checks the world before acting, so
running it again after a crash at any line converges.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from pixelfox.extensions import db, get_redis
from pixelfox.jobs.queues import enqueue_once
from pixelfox.models import Image, ImageVariant, PoolMove, PoolMoveItem, StoragePool, User
from pixelfox.models.base import utcnow
from pixelfox.models.move import IN_FLIGHT, ITEM_OPEN
from pixelfox.services import settings
from pixelfox.storage import local, paths, push

log = logging.getLogger(__name__)
PLAN_BATCH = 200
JOB_BATCH = 50
MAX_ATTEMPTS = 3
HEADROOM = 1.10  # free space needed: bytes to move + 10 %
SLOT_TTL = 15 * 60


class MoveError(ValueError):
    pass


class ItemFailed(Exception):
    """This item cannot be moved; the reason is for people."""


class Transient(Exception):
    """Try this item again (network, target restarting, checksum refused)."""


# --- planning and control -------------------------------------------------------------------


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


def preflight(source: StoragePool, target: StoragePool) -> dict:
    """Can this move run, and what will it do? (Also the dry-run plan.)"""
    from pixelfox.services import heartbeat

    count, total = pool_totals(source)
    problems = []
    if source.id == target.id:
        problems.append("Source and target are the same pool.")
    if not target.is_active:
        problems.append("The target pool is not active.")
    _nodes, states = heartbeat.latest()
    state = states.get(target.id)
    if state is None:
        problems.append(f"No recent heartbeat from node {target.node_id}: is its worker running?")
    elif not state.get("healthy"):
        problems.append(
            f"The target pool reports unhealthy (writable={state.get('writable')}, "
            f"upload API reachable={state.get('upload_api_reachable')})."
        )
    room = None
    if target.max_size:
        room = target.max_size - (target.used_size or 0)
    if state is not None:
        disk = state.get("disk_free")
        room = disk if room is None else min(room, disk)
    if room is not None and room < total * HEADROOM:
        problems.append(
            f"Not enough room on the target: {total} bytes to move (+10 % headroom), {room} free."
        )
    if source.node_id != target.node_id:
        if not target.upload_api_url:
            problems.append(
                "The target pool has no upload_api_url to derive its replicate endpoint from."
            )
        if not current_app.config.get("REPLICATION_SECRET"):
            problems.append("REPLICATION_SECRET is not set: copies between nodes are disabled.")
    return {
        "images": count,
        "bytes": total,
        "room": room,
        "problems": problems,
        "source_node": source.node_id,
        "target_node": target.node_id,
        "cross_node": source.node_id != target.node_id,
        "target_heartbeat": state,
    }


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
    from pixelfox.models import RegenRun

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


def queue_planner(move: PoolMove) -> None:
    enqueue_once(
        current_app.config["NODE_ID"],
        "pixelfox.jobs.moves.pool_move_enqueue",
        f"move-{move.id}-plan",
        move.id,
    )


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
        enqueue_once(
            node,
            "pixelfox.jobs.moves.move_image",
            f"move-{move.id}-{chunk[0]}",
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


# --- moving items (runs on the source node) -------------------------------------------------


@dataclass
class FileRef:
    rel: str
    sha256: str
    size: int


GROUP_MAX = 20  # images switched in one transaction
# Images copied at once (threads doing file and HTTP I/O only, no database): each copy waits
# for its fsync (here, or on the target node before it answers), so a few in flight overlap
# those waits with the next transfer, and hashing runs on every core.
PUSH_AHEAD = 3
GROUP_SECONDS = 0.5  # ... or whatever is verified after this long


@dataclass
class Ready:
    """An item whose files are verified on the target (or already switched)."""

    item: PoolMoveItem
    image: Image
    files: list[FileRef]
    needs_switch: bool


def move_items(move_id: int, item_ids: list[int]) -> dict:
    """Move a batch of items. Copies are made and verified one image at a time; the DB
    switch is done for a group of up to GROUP_MAX verified images in one transaction (one
    commit instead of one per image); sources are deleted only after that commit."""
    counts: dict[str, int] = {}
    move = db.session.get(PoolMove, move_id)
    if move is None:
        return counts
    session = db.session()
    session.expire_on_commit = False  # rows are re-read on purpose below, not after commits
    group: list[Ready] = []

    def flush() -> None:
        for result in _complete(move, group):
            counts[result] = counts.get(result, 0) + 1
        group.clear()

    try:
        items = {
            i.id: i
            for i in db.session.execute(
                db.select(PoolMoveItem).where(PoolMoveItem.id.in_(item_ids))
            ).scalars()
        }
        images = {
            i.id: i
            for i in db.session.execute(
                db.select(Image)
                .options(selectinload(Image.variants))
                .where(Image.id.in_([i.image_id for i in items.values()]))
            ).scalars()
        }
        checked = grouped = time.monotonic()
        throttle = _throttle(move.id)
        ahead = PUSH_AHEAD
        executor = ThreadPoolExecutor(ahead, thread_name_prefix="push") if ahead else None
        inflight: deque = deque()  # (item, image, files, future), oldest first
        src_ref, dst_ref = _PoolRef.of(move.source), _PoolRef.of(move.target)
        app = current_app._get_current_object()

        def take(ready) -> None:
            nonlocal grouped
            if isinstance(ready, str):
                counts[ready] = counts.get(ready, 0) + 1
                return
            if not group:
                grouped = time.monotonic()
            group.append(ready)
            if len(group) >= GROUP_MAX or time.monotonic() - grouped > GROUP_SECONDS:
                flush()

        def drain(keep: int) -> None:
            """Collect finished pushes in order until at most `keep` are in flight."""
            while inflight and (len(inflight) > keep or inflight[0][3].done()):
                item, image, files, future = inflight.popleft()
                try:
                    future.result()
                except (ItemFailed, Transient):
                    take(_prepare(move, item, image, throttle))  # retries and records it
                    continue
                item.status = "verified"
                take(Ready(item, image, files, needs_switch=True))

        try:
            with _slot(move.source.node_id):
                for item_id in item_ids:
                    if time.monotonic() - checked > 0.5:  # notice pause/cancel within a second
                        drain(ahead)
                        flush()
                        refresh_counts(move.id)  # commits, and keeps the progress bar moving
                        db.session.refresh(move)
                        throttle.refresh()
                        checked = time.monotonic()
                    item = items.get(item_id)
                    if item is None:
                        continue
                    in_flight = item.status in IN_FLIGHT
                    if move.status != "running" and not (
                        in_flight and move.status in ("paused", "cancelled")
                    ):
                        continue  # paused/cancelled: pending items wait; in-flight ones finish
                    if executor is None:
                        take(_prepare(move, item, images.get(item.image_id), throttle))
                        continue
                    pre = _precheck(move, item, images.get(item.image_id))
                    if isinstance(pre, (str, Ready)):
                        take(pre)
                        continue
                    image, files = pre
                    item.status = "copying"
                    item.attempts += 1
                    future = executor.submit(_push_files, app, src_ref, dst_ref, files, throttle)
                    inflight.append((item, image, files, future))
                    drain(ahead - 1)
                drain(0)
                flush()
        finally:
            if executor is not None:
                executor.shutdown(wait=True)
        db.session.commit()
    finally:
        session.expire_on_commit = True
    refresh_counts(move_id)
    return counts


def move_one(move: PoolMove, item: PoolMoveItem, image: Image | None = None, throttle=None) -> str:
    """One image from start to end: copy and verify, switch, delete the source."""
    ready = _prepare(move, item, image, throttle or _throttle(move.id))
    if isinstance(ready, str):
        return ready
    return _complete(move, [ready])[0]


def _prepare(move: PoolMove, item: PoolMoveItem, image: Image | None, throttle) -> Ready | str:
    """Copy and verify one image's files on the target (retrying transient errors), or say
    why the item is finished already (skipped, failed, done)."""
    pre = _precheck(move, item, image)
    if isinstance(pre, (str, Ready)):
        return pre
    image, files = pre
    source, target = move.source, move.target
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            # Status and attempts are written with the switch: one commit per group.
            # A crash before it leaves the item pending, and a re-run copies again
            # (verified copies already on the target are kept, not rewritten).
            item.status = "copying"
            item.attempts += 1
            synced = set()
            for f in files:
                _copy(move, source, target, f, synced, throttle)
            for directory in synced:
                local.fsync_dir(directory)
            item.status = "verified"
            return Ready(item, image, files, needs_switch=True)
        except ItemFailed as exc:
            db.session.rollback()
            item = db.session.get(PoolMoveItem, item.id)
            item.attempts += 1
            return _finish(item, "failed", str(exc))
        except Transient as exc:
            db.session.rollback()  # the attempt count is written here, not lost with it
            item = db.session.get(PoolMoveItem, item.id)
            item.attempts += 1
            item.error = f"attempt {attempt}: {exc}"
            db.session.commit()
            if attempt == MAX_ATTEMPTS:
                return _finish(item, "failed", f"Gave up after {attempt} attempts: {exc}")
            time.sleep(min(2**attempt, 8))
            db.session.refresh(image)
            if image.storage_pool_id == target.id:  # another run switched it meanwhile
                return Ready(item, image, files, needs_switch=False)
            if image.storage_pool_id != source.id:
                return _finish(item, "skipped", "The image changed pool during the move.")
    return item.status


def _precheck(
    move: PoolMove, item: PoolMoveItem, image: Image | None
) -> Ready | str | tuple[Image, list[FileRef]]:
    """A final status, a Ready (already switched before a crash), or (image, files) to copy."""
    if item.status in ("source_deleted", "skipped", "failed"):
        return item.status
    source, target = move.source, move.target
    if image is None:
        image = db.session.get(Image, item.image_id)
    if image is None or image.deleted_at is not None:
        return _finish(item, "skipped", "The image was deleted.")
    if image.storage_pool_id not in (source.id, target.id):
        return _finish(item, "skipped", "The image is in another pool now.")
    if image.storage_pool_id == source.id and image.status in ("pending", "processing"):
        return _finish(item, "failed", "The image is still being processed; retry later.")
    files = _files(image, source.id if image.storage_pool_id == source.id else target.id)
    if image.storage_pool_id == target.id:
        return Ready(item, image, files, needs_switch=False)  # switched before a crash
    return image, files


@dataclass(frozen=True)
class _PoolRef:
    """The pool fields a push needs, as plain values (safe to read in a push thread)."""

    id: int
    node_id: str
    base_path: str
    upload_api_url: str | None

    @classmethod
    def of(cls, pool: StoragePool) -> _PoolRef:
        return cls(pool.id, pool.node_id, pool.base_path, pool.upload_api_url)


def _push_files(app, source: _PoolRef, target: _PoolRef, files: list[FileRef], throttle) -> None:
    """Copy (same node) or push (another node) one image's files, in a copy thread: file and
    HTTP I/O only, no database. Raises ItemFailed or Transient like _copy."""
    with app.app_context():
        for f in files:
            _copy(None, source, target, f, None, throttle)


def _complete(move: PoolMove, group: list[Ready]) -> list[str]:
    """Switch the verified images of a group in one transaction, then delete their sources.
    The deletions are recorded with the next commit; a crash before it re-runs them
    (deleting a missing source is a no-op)."""
    if not group:
        return []
    source, target = move.source, move.target
    switched = _switch_group([r for r in group if r.needs_switch], source, target)
    results = []
    for r in group:
        if r.needs_switch and r.item.id not in switched:
            if r.item.status in ("source_deleted", "skipped", "failed"):
                results.append(r.item.status)  # another run of this batch finished it
            else:
                results.append(
                    _finish(r.item, "skipped", "The image changed pool during the move.")
                )
            continue
        _delete_source(source, target, r.files)
        r.item.status, r.item.error = "source_deleted", None
        results.append("source_deleted")
    return results


def _switch_group(group: list[Ready], source: StoragePool, target: StoragePool) -> set[int]:
    """Flip every image of the group and its variants to the target in one transaction
    (compare-and-set on the source pool); returns the ids of the items switched. If any image
    changed pool meanwhile, fall back to one transaction per image."""
    if not group:
        return set()
    ids = [r.image.id for r in group]
    _shift_used(source, target, sum(r.item.bytes for r in group))
    flipped = db.session.execute(
        db.update(Image)
        .where(Image.id.in_(ids), Image.storage_pool_id == source.id)
        .values(storage_pool_id=target.id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if flipped != len(ids):
        # Some image changed pool meanwhile (moved elsewhere, or switched by a second run of
        # this batch, e.g. the job of a worker killed while its work horse lived on).
        db.session.rollback()  # expires everything: statuses below are read fresh
        done = set()
        for r in group:
            item = db.session.get(PoolMoveItem, r.item.id)
            db.session.refresh(r.image)
            if item.status in ("source_deleted", "skipped", "failed"):
                continue  # finished by the other run; never move a status backwards
            if r.image.storage_pool_id == target.id:  # switched by the other run
                done.add(item.id)
            elif r.image.storage_pool_id == source.id:
                item.status = "verified"
                if _switch(r.image, item, source, target):
                    done.add(item.id)
        return done
    db.session.execute(
        db.update(ImageVariant)
        .where(ImageVariant.image_id.in_(ids), ImageVariant.storage_pool_id == source.id)
        .values(storage_pool_id=target.id)
        .execution_options(synchronize_session=False)
    )
    for r in group:
        r.item.status = "switched"
    db.session.commit()
    for r in group:
        set_committed_value(r.image, "storage_pool_id", target.id)  # matches the row
    return {r.item.id for r in group}


def _finish(item: PoolMoveItem, status: str, error: str | None) -> str:
    item.status, item.error = status, error
    db.session.commit()
    return status


def _files(image: Image, pool_id: int) -> list[FileRef]:
    seen, out = set(), []
    refs = [FileRef(image.stored_path, image.sha256, image.size)]
    refs += [
        FileRef(v.stored_path, v.sha256, v.size)
        for v in image.variants
        if v.storage_pool_id == pool_id
    ]
    for f in refs:
        if f.rel not in seen:
            seen.add(f.rel)
            out.append(f)
    return out


def _copy(
    move: PoolMove | None,
    source: StoragePool | _PoolRef,
    target: StoragePool | _PoolRef,
    f: FileRef,
    synced: set | None = None,
    throttle=None,
) -> None:
    """Make a verified copy of one file on the target (idempotent). Local copies leave the
    directory fsync to the caller (`synced` collects directories), once per image."""
    src = paths.resolve(source.base_path, f.rel)
    throttle = throttle or _throttle(move.id)
    if target.node_id == current_app.config["NODE_ID"]:
        dst = paths.resolve(target.base_path, f.rel)
        if dst == src:
            return  # same file: nothing to copy
        if dst.exists():
            if local.hash_file(dst)[1] == f.sha256:
                return
            raise ItemFailed(f"A different file is already at the target path {f.rel}.")
        if not src.exists():
            raise ItemFailed(f"{f.rel} is missing on the source and has no copy on the target.")
        if _link(src, dst, f, throttle):
            if synced is not None:
                synced.add(dst.parent)
            else:
                local.fsync_dir(dst.parent)
            return
        with open(src, "rb") as fh:
            chunks = (throttle(len(b)) or b for b in local.iter_file(fh))
            try:
                local.receive_verified(
                    chunks,
                    dst,
                    src.stat().st_size,
                    f.sha256,
                    paths.tmp_dir(target.base_path),
                    sync_dir=synced is None,
                )
                if synced is not None:
                    synced.add(dst.parent)
            except local.Mismatch as exc:
                raise ItemFailed(
                    f"{f.rel} on the source does not match its recorded SHA-256; it was not copied."
                ) from exc
        return
    secret = current_app.config.get("REPLICATION_SECRET")
    if not secret:
        raise ItemFailed("REPLICATION_SECRET is not set.")
    url = push.replicate_url(target.upload_api_url or "")
    if not src.exists():
        try:
            there = push.remote_stat(url, secret, target.id, f.rel)
        except push.PushError as exc:
            raise Transient(f"cannot reach node {target.node_id}: {exc.message}") from exc
        if there and there["sha256"] == f.sha256:
            return  # copied before the source went missing
        raise ItemFailed(f"{f.rel} is missing on the source and has no copy on the target.")
    try:
        push.push_file(url, secret, target.id, f.rel, src, f.sha256, on_chunk=lambda n: throttle(n))
    except push.PushError as exc:
        if exc.status == 409:
            raise ItemFailed(f"A different file is already at {f.rel} on the target.") from exc
        if exc.status in (400, 401, 404, 507):
            raise ItemFailed(f"Node {target.node_id} refused {f.rel}: {exc.message}") from exc
        raise Transient(f"node {target.node_id}: {exc.status} {exc.message}") from exc


def _link(src: Path, dst: Path, f: FileRef, throttle) -> bool:
    """Pools on one filesystem: verify the source against its recorded SHA-256 (one read),
    then give it a second name on the target (a hard link: atomic, no bytes copied, and the
    data is already durable). False when the filesystems differ: copy instead."""
    digest = hashlib.sha256()
    with open(src, "rb") as fh:
        for block in local.iter_file(fh):
            throttle(len(block))
            digest.update(block)
    if digest.hexdigest() != f.sha256:
        raise ItemFailed(
            f"{f.rel} on the source does not match its recorded SHA-256; it was not copied."
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except FileExistsError:
        if local.hash_file(dst)[1] == f.sha256:
            return True
        raise ItemFailed(f"A different file is already at the target path {f.rel}.") from None
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            return False
        raise
    return True


def _shift_used(source: StoragePool, target: StoragePool, nbytes: int) -> None:
    """Move `nbytes` of used_size from source to target. The pool rows are locked first: the
    foreign-key checks of the flips take shared locks that a later pool update would have to
    upgrade, which deadlocks against concurrent uploads on MySQL/MariaDB."""
    db.session.execute(
        db.update(StoragePool)
        .where(StoragePool.id.in_((source.id, target.id)))
        .values(
            used_size=db.case(
                (StoragePool.id == target.id, StoragePool.used_size + nbytes),
                (StoragePool.used_size > nbytes, StoragePool.used_size - nbytes),
                else_=0,
            )
        )
        .execution_options(synchronize_session=False)
    )


def _switch(image: Image, item: PoolMoveItem, source: StoragePool, target: StoragePool) -> bool:
    """Flip one image and its variants to the target in one transaction (compare-and-set on
    the source pool) and adjust both pools' used_size."""
    _shift_used(source, target, item.bytes)
    flipped = db.session.execute(
        db.update(Image)
        .where(Image.id == image.id, Image.storage_pool_id == source.id)
        .values(storage_pool_id=target.id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if flipped != 1:
        db.session.rollback()  # undoes the used_size change too
        db.session.refresh(image)
        return image.storage_pool_id == target.id
    db.session.execute(
        db.update(ImageVariant)
        .where(ImageVariant.image_id == image.id, ImageVariant.storage_pool_id == source.id)
        .values(storage_pool_id=target.id)
        .execution_options(synchronize_session=False)
    )
    item.status = "switched"
    db.session.commit()
    set_committed_value(image, "storage_pool_id", target.id)  # matches the row; no reload
    return True


def _delete_source(source: StoragePool, target: StoragePool, files: list[FileRef]) -> None:
    for f in files:
        src = paths.resolve(source.base_path, f.rel)
        if target.node_id == current_app.config["NODE_ID"]:
            if paths.resolve(target.base_path, f.rel) == src:
                continue  # same file
        local.remove(src)


# --- throttle and per-node concurrency (shared by every worker through Redis) ------------


class _throttle:
    """Called with a byte count; sleeps so this move stays under move_max_mb_per_second
    across all workers. One per batch; `refresh()` re-reads the setting (every half second
    with the pause check), so a change applies at once without a settings query per file."""

    def __init__(self, move_id: int):
        self.move_id = move_id
        self.redis = get_redis()
        self.refresh()

    def refresh(self) -> None:
        self.limit = int(settings.get("move_max_mb_per_second")) * 1024 * 1024

    def __call__(self, n: int) -> None:
        if self.limit <= 0:
            return None
        while True:
            second = int(time.time())
            key = f"pixelfox:move-rate:{self.move_id}:{second}"
            used = self.redis.incrby(key, n)
            self.redis.expire(key, 5)
            if used <= self.limit or used == n:  # a chunk larger than the limit still passes
                return None
            self.redis.decrby(key, n)
            time.sleep(max(0.01, second + 1 - time.time()))


_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
  return 1
end
return 0
"""


class _slot:
    """At most MOVE_MAX_CONCURRENT_PER_NODE items copy at once on a node (leases expire)."""

    def __init__(self, node: str):
        self.key = f"pixelfox:move-slots:{node}"
        self.token = f"{time.time()}-{id(self)}"
        self.cap = int(current_app.config.get("MOVE_MAX_CONCURRENT_PER_NODE", 2))

    def __enter__(self):
        redis = get_redis()
        while True:
            now = time.time()
            if redis.eval(_ACQUIRE, 1, self.key, now, self.cap, now + SLOT_TTL, self.token):
                return self
            time.sleep(0.2)

    def __exit__(self, *exc):
        get_redis().zrem(self.key, self.token)
        return False


# --- recovery (the sweeper, every minute) ---------------------------------------------------


def _has_live_jobs(move: PoolMove, now) -> bool:
    from rq import Queue
    from rq.registry import ScheduledJobRegistry, StartedJobRegistry

    from pixelfox.jobs.queues import is_live, queue_name

    prefix = f"move-{move.id}-"
    ids = set()
    for node in {move.source.node_id, current_app.config["NODE_ID"]}:
        q = Queue(queue_name(node), connection=get_redis())
        ids.update(q.get_job_ids())
        ids.update(StartedJobRegistry(queue=q).get_job_ids())
        ids.update(ScheduledJobRegistry(queue=q).get_job_ids())
    return any(is_live(j, now) for j in ids if j.startswith(prefix))


def recover(now=None) -> int:
    """Resume moves whose jobs were lost: re-plan unfinished planning, re-queue open items
    (in-flight ones only for paused/cancelled moves). Returns how many moves were resumed."""
    from datetime import UTC, datetime

    now = now or datetime.now(UTC).replace(tzinfo=None)
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
        if _has_live_jobs(move, now):
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
