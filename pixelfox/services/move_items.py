"""Pool moves, the item mover (runs on the source node): copy and verify each image's files
on the target, switch the database pointers for a group of images in one compare-and-set
transaction, then delete the sources.

Every item goes pending → copying → verified → switched → source_deleted. Each step checks the
world before acting, so running a batch again after a crash at any line converges.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from flask import current_app
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from pixelfox.extensions import db
from pixelfox.models import Image, ImageCopy, ImageVariant, PoolMove, PoolMoveItem, StoragePool
from pixelfox.models.move import IN_FLIGHT
from pixelfox.services import copies, poolfiles, settings
from pixelfox.services.move_plan import refresh_counts
from pixelfox.services.throttle import ByteThrottle, copy_slots
from pixelfox.storage import local
from pixelfox.storage.copy import Copier, CopyFailed, CopyRetry, FileRef, PoolRef

MAX_ATTEMPTS = 3
GROUP_MAX = 20  # images switched in one transaction
GROUP_SECONDS = 0.5  # ... or whatever is verified after this long
# Images copied at once (threads doing file and HTTP I/O only, no database): each copy waits
# for its fsync (here, or on the target node before it answers), so a few in flight overlap
# those waits with the next transfer, and hashing runs on every core.
PUSH_AHEAD = 3
# A bucket answers every object after a round trip through its gateway: more copies in flight
# hide that latency (the store, not this node's disk, is what they wait for).
PUSH_AHEAD_BUCKET = 6
FINAL = ("source_deleted", "skipped", "failed")


@dataclass
class Ready:
    """An item whose files are verified on the target (or already switched)."""

    item: PoolMoveItem
    image: Image
    files: list[FileRef]
    needs_switch: bool


def copier_for(move: PoolMove) -> Copier:
    """This node's copier for one move, with the move's byte throttle (tiering moves share
    one: tiering_max_mb_per_second for all of them together)."""
    cfg = current_app.config
    if move.kind == "tiering":
        key, setting = "pixelfox:tiering-rate", "tiering_max_mb_per_second"
    else:
        key, setting = f"pixelfox:move-rate:{move.id}", "move_max_mb_per_second"
    return Copier(
        here=cfg["NODE_ID"],
        secret=cfg.get("REPLICATION_SECRET"),
        allow_insecure=cfg.get("ALLOW_INSECURE_NODE_URLS", False),
        throttle=ByteThrottle(key, lambda: settings.get(setting, fresh=True)),
        scratch=poolfiles.scratch(),
    )


def move_items(move_id: int, item_ids: list[int]) -> dict:
    """Move a batch of items. Copies are made and verified by a few threads at once; the DB
    switch is done for a group of up to GROUP_MAX verified images in one transaction (one
    commit instead of one per image); sources are deleted only after that commit."""
    counts: dict[str, int] = {}
    move = db.session.get(PoolMove, move_id)
    if move is None:
        return counts
    session = db.session()
    session.expire_on_commit = False  # rows are re-read on purpose below, not after commits
    group: list[Ready] = []
    copier = copier_for(move)

    def flush() -> None:
        for result in _complete(move, group, copier):
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
        inflight: deque = deque()  # (item, image, files, future), oldest first
        src_ref, dst_ref = poolfiles.ref(move.source), poolfiles.ref(move.target)
        ahead = PUSH_AHEAD_BUCKET if move.source.is_s3 or move.target.is_s3 else PUSH_AHEAD

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
            """Collect finished copies in order until at most `keep` are in flight."""
            while inflight and (len(inflight) > keep or inflight[0][3].done()):
                item, image, files, future = inflight.popleft()
                try:
                    future.result()
                except (CopyFailed, CopyRetry):
                    db.session.refresh(image)  # another run may have switched it meanwhile
                    take(_prepare(move, item, image, copier))  # retries and records it
                    continue
                item.status = "verified"
                take(Ready(item, image, files, needs_switch=True))

        with (
            copy_slots(move.source.node_id),
            ThreadPoolExecutor(ahead, thread_name_prefix="copy") as executor,
        ):
            for item_id in item_ids:
                if time.monotonic() - checked > 0.5:  # notice pause/cancel within a second
                    drain(ahead)
                    flush()
                    refresh_counts(move.id)  # commits, and keeps the progress bar moving
                    db.session.refresh(move)
                    copier.throttle.refresh()
                    checked = time.monotonic()
                item = items.get(item_id)
                if item is None:
                    continue
                in_flight = item.status in IN_FLIGHT
                if move.status != "running" and not (
                    in_flight and move.status in ("paused", "cancelled")
                ):
                    continue  # paused/cancelled: pending items wait; in-flight ones finish
                pre = _precheck(move, item, images.get(item.image_id))
                if isinstance(pre, (str, Ready)):
                    take(pre)
                    continue
                image, files = pre
                item.status = "copying"
                item.attempts += 1
                future = executor.submit(_copy_files, copier, src_ref, dst_ref, files)
                inflight.append((item, image, files, future))
                drain(ahead - 1)
            drain(0)
            flush()
        db.session.commit()
    finally:
        session.expire_on_commit = True
    refresh_counts(move_id)
    return counts


def _copy_files(copier: Copier, source: PoolRef, target: PoolRef, files: list[FileRef]) -> None:
    """One image's files, in a copy thread (file and HTTP I/O only, no database); directories
    are fsynced once per image."""
    synced: set = set()
    for f in files:
        copier.copy(source, target, f, synced)
    for directory in synced:
        local.fsync_dir(directory)


def _prepare(move: PoolMove, item: PoolMoveItem, image: Image | None, copier: Copier):
    """Copy and verify one image's files on the target in this thread (retrying transient
    errors), or say why the item is finished already (skipped, failed, done)."""
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
            _copy_files(copier, poolfiles.ref(source), poolfiles.ref(target), files)
            item.status = "verified"
            return Ready(item, image, files, needs_switch=True)
        except CopyFailed as exc:
            db.session.rollback()
            item = db.session.get(PoolMoveItem, item.id)
            db.session.refresh(image)
            if image.storage_pool_id == target.id:  # another run switched it meanwhile
                return Ready(item, image, files, needs_switch=False)
            item.attempts += 1
            return _finish(item, "failed", str(exc))
        except CopyRetry as exc:
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


def _precheck(move: PoolMove, item: PoolMoveItem, image: Image | None):
    """A final status, a Ready (already switched before a crash), or (image, files) to copy."""
    if item.status in FINAL:
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
    files = copies.files_of(image)
    if image.storage_pool_id == target.id:
        return Ready(item, image, files, needs_switch=False)  # switched before a crash
    return image, files


def _complete(move: PoolMove, group: list[Ready], copier: Copier) -> list[str]:
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
            if r.item.status in FINAL:
                results.append(r.item.status)  # another run of this batch finished it
            else:
                results.append(
                    _finish(r.item, "skipped", "The image changed pool during the move.")
                )
            continue
        copier.delete(poolfiles.ref(source), poolfiles.ref(target), r.files)
        r.item.status, r.item.error = "source_deleted", None
        results.append("source_deleted")
    return results


def _flip(group: list[Ready], source: StoragePool, target: StoragePool) -> bool:
    """Point these images and their variants at the target in one transaction
    (compare-and-set on the source pool), moving their bytes between the pools' used_size,
    and commit. False — everything rolled back — if any image was not in the source pool."""
    ids = [r.image.id for r in group]
    _shift_used(source, target, sum(r.item.bytes for r in group))
    flipped = db.session.execute(
        db.update(Image)
        .where(Image.id.in_(ids), Image.storage_pool_id == source.id)
        .values(storage_pool_id=target.id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if flipped != len(ids):
        db.session.rollback()  # undoes the used_size change too; statuses are read fresh
        return False
    db.session.execute(
        db.update(ImageVariant)
        .where(ImageVariant.image_id.in_(ids), ImageVariant.storage_pool_id == source.id)
        .values(storage_pool_id=target.id)
        .execution_options(synchronize_session=False)
    )
    # The primary's copy moves with it; a replica already in the target pool (the same bytes
    # at the same paths) merges into it, and repair makes a new one elsewhere.
    db.session.execute(
        db.delete(ImageCopy)
        .where(ImageCopy.image_id.in_(ids), ImageCopy.pool_id == target.id)
        .execution_options(synchronize_session=False)
    )
    db.session.execute(
        db.update(ImageCopy)
        .where(ImageCopy.image_id.in_(ids), ImageCopy.pool_id == source.id)
        .values(pool_id=target.id)
        .execution_options(synchronize_session=False)
    )
    for r in group:
        r.item.status = "switched"
    db.session.commit()
    for r in group:
        set_committed_value(r.image, "storage_pool_id", target.id)  # matches the row
    return True


def _switch_group(group: list[Ready], source: StoragePool, target: StoragePool) -> set[int]:
    """Switch a group in one transaction; returns the ids of the items switched. If any image
    changed pool meanwhile (moved elsewhere, or switched by a second run of this batch, e.g.
    the job of a worker killed while its work horse lived on), one transaction per image."""
    if not group:
        return set()
    if _flip(group, source, target):
        return {r.item.id for r in group}
    done = set()
    for r in group:
        item = db.session.get(PoolMoveItem, r.item.id)
        db.session.refresh(r.image)
        if item.status in FINAL:
            continue  # finished by the other run; never move a status backwards
        if r.image.storage_pool_id == source.id:
            if _flip([r], source, target):
                done.add(item.id)
                continue
            db.session.refresh(r.image)
        if r.image.storage_pool_id == target.id:  # switched by the other run
            done.add(item.id)
    return done


def _finish(item: PoolMoveItem, status: str, error: str | None) -> str:
    item.status, item.error = status, error
    db.session.commit()
    return status


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
