"""Replicas and repair (SPEC §9): every image wants `replication_factor` verified copies, each
on a different node. `replicate_image` (on a node that holds a verified copy) pushes the
original and every variant to the copies that are missing, stale or corrupt, and to new
replica pools picked by the placement rule among other nodes. The periodic `repair` pass
promotes replicas off lost nodes, and queues `replicate_image` for every image that has
fewer verified copies on live nodes than wanted. Everything it decides comes from the
database, so it resumes after any crash or a Redis flush.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from flask import current_app
from sqlalchemy.orm import selectinload

from pixelfox import queues
from pixelfox.extensions import db, get_redis
from pixelfox.models import Image, ImageCopy, ImageVariant, StoragePool
from pixelfox.models.base import utcnow
from pixelfox.services import copies, heartbeat, nodes, placement, poolfiles, settings
from pixelfox.services.throttle import ByteThrottle, copy_slots
from pixelfox.storage.copy import Copier, CopyFailed, CopyRetry, FileRef, PoolRef

log = logging.getLogger(__name__)
REPAIR_BATCH = 1000  # images looked at (and queued at most) per repair pass
BATCH = 50  # images per replicate job queued by repair
PUSH_AHEAD = 3  # images pushed at once by one job (their fsyncs overlap the next transfer)
RATE_KEY = "pixelfox:repair-bytes:{}"  # bytes copied per minute, for the MB/s shown
PROGRESS_KEY = "pixelfox:repair:progress"


class ReplicationRetry(RuntimeError):
    """A target could not be reached or refused in transit: RQ retries the job."""


def job_id(image_id: int) -> str:
    return queues.job_id("replicate", image_id)


def source_copy(image: Image, live: set[str]) -> ImageCopy | None:
    """A verified copy to copy from whose node is live to run the job (the primary first)."""
    return next((c for c in copies.live_verified(image, live) if c.pool.node_id in live), None)


def batch_job_id(node: str, image_id: int) -> str:
    """Repair's batches are fixed blocks of image ids per source node, so a pass that runs
    again queues the same jobs (which enqueue_once then leaves alone)."""
    return queues.job_id("replicate", node, image_id // BATCH)


def queue_replication(image: Image, node: str | None = None) -> bool:
    """After files changed (processing, regeneration) or when scrub found a bad copy: queue
    `replicate_image` on `node` (default: the primary's), once."""
    node = node or image.pool.node_id
    if not copies.needs_replication(image, nodes.live() | {node}):  # the caller's node is up
        return False
    try:
        queues.enqueue_once(
            node,
            "pixelfox.jobs.replicas.replicate_image",
            job_id(image.id),
            image.id,
            timeout=3600,
        )
    except Exception:  # Redis down: the repair pass queues it later
        log.exception("could not queue replication of image %s", image.id)
        return False
    return True


@dataclass
class Work:
    """One image to bring up to its copies: push `files` from `source` to `targets`."""

    image: Image
    source: PoolRef
    targets: list[ImageCopy]
    files: list[FileRef]
    size: int
    refs: list[PoolRef] | None = None  # the targets as plain values, for the copy thread


def replicate(image_ids: list[int]) -> dict[str, int]:
    """Bring these images to their wanted number of verified copies, pushing from this node:
    copies that are not verified on live nodes are rewritten, new replicas go to pools that
    placement picks among nodes holding no copy yet. Copies are pushed by a few threads at
    once (file and HTTP I/O only); the rows are written in groups."""
    here = current_app.config["NODE_ID"]
    live = nodes.live() | {here}  # this node runs this job: it is alive
    lost = nodes.lost()
    health = heartbeat.pool_states()
    among = placement.eligible(for_replica=True)
    images = db.session.execute(
        db.select(Image)
        .options(selectinload(Image.variants), selectinload(Image.copies))
        .where(Image.id.in_(image_ids))
    ).scalars()
    counts = {"verified": 0, "failed": 0, "skipped": 0}
    work = []
    for image in images:
        w = _plan(image, here, live, lost, health, among)
        if isinstance(w, str):
            counts["skipped"] += 1
        else:
            work.append(w)
    db.session.commit()  # the new replica rows, all at once
    if not work:
        return counts
    for w in work:  # read in this thread: the copy threads touch no database row
        w.refs = [poolfiles.ref(t.pool) for t in w.targets]
    copier = _copier(here)
    retry, copied = [], 0
    with copy_slots(here), ThreadPoolExecutor(PUSH_AHEAD, thread_name_prefix="replicate") as pool:
        futures = [(w, pool.submit(_push, copier, w)) for w in work]
        for w, future in futures:
            for target, error in zip(w.targets, future.result(), strict=True):
                if error is None:
                    target.status, target.error = copies.USABLE, None
                    target.verified_at = utcnow()
                    counts["verified"] += 1
                    copied += w.size
                elif isinstance(error, CopyRetry):
                    retry.append(f"{w.image.uuid} → {target.pool.node_id}: {error}")
                else:
                    target.error = str(error)
                    if target.status == copies.USABLE:
                        target.status = "pending"
                    counts["failed"] += 1
                    log.warning("%s → pool %s: %s", w.image.uuid, target.pool.name, error)
    db.session.commit()
    _count_bytes(copied)
    if retry:
        raise ReplicationRetry("; ".join(retry[:5]))
    return counts


def _plan(image: Image, here: str, live: set[str], lost: set[str], health: dict, among: list):
    """The Work for one image, or why there is none (new replica rows are added, not yet
    committed)."""
    if image.deleted_at is not None or image.status != "complete":
        return "not complete"
    good = copies.live_verified(image, live)
    source = next((c for c in good if c.pool.node_id == here), None)
    if source is None:
        return "no verified copy on this node"
    home = source.pool.failure_domain
    targets = [
        c
        for c in image.copies
        if c.status != copies.USABLE and c.pool.reachable(live) and c.pool.failure_domain != home
    ]
    taken = {c.pool.failure_domain for c in good} | {t.pool.failure_domain for t in targets}
    size = copies.image_bytes(image)
    for _ in range(copies.wanted() - len(taken)):
        try:
            pool = placement.choose_pool(
                size, health=health, exclude_domains=taken | lost, for_replica=True, among=among
            )
        except placement.NoPoolAvailable:
            log.warning("image %s: no pool on another node takes a replica", image.uuid)
            break
        targets.append(copies.new_replica(image, pool))
        taken.add(pool.failure_domain)
    if not targets:
        return "ok"
    return Work(image, poolfiles.ref(source.pool), targets, copies.files_of(image), size)


def _copier(here: str) -> Copier:
    cfg = current_app.config
    return Copier(
        here=here,
        secret=cfg.get("REPLICATION_SECRET"),
        allow_insecure=cfg.get("ALLOW_INSECURE_NODE_URLS", False),
        throttle=ByteThrottle(
            "pixelfox:repair-rate", lambda: settings.get("repair_max_mb_per_second", fresh=True)
        ),
        overwrite=True,  # a corrupt or stale copy is replaced by the verified bytes
        scratch=poolfiles.scratch(),
    )


def _push(copier: Copier, w: Work) -> list[Exception | None]:
    """In a copy thread (no database): every file of one image to each target; per target
    None (verified) or the error."""
    out: list[Exception | None] = []
    for ref in w.refs:
        try:
            for f in w.files:
                copier.copy(w.source, ref, f)
            out.append(None)
        except (CopyFailed, CopyRetry) as exc:
            out.append(exc)
    return out


def _count_bytes(n: int) -> None:
    key = RATE_KEY.format(int(time.time() // 60))
    redis = get_redis()
    redis.incrby(key, n)
    redis.expire(key, 600)


def rate() -> float:
    """Bytes per second copied by replication over the last two full minutes."""
    minute = int(time.time() // 60)
    values = get_redis().mget([RATE_KEY.format(minute - 1), RATE_KEY.format(minute - 2)])
    return sum(int(v or 0) for v in values) / 120


# --- repair (app node, periodic) -----------------------------------------------------------


def promote_from_lost(limit: int = 1000) -> dict[str, int]:
    """Images whose primary is on a lost node get a verified replica on a live node as their
    primary; copies on lost nodes become `missing`; uploads there that were never processed
    end `failed` (their bytes are gone)."""
    lost_pools = nodes.lost_pool_ids()
    out = {"promoted": 0, "missing": 0, "lost_uploads": 0}
    if not lost_pools:
        return out
    out["missing"] = db.session.execute(
        db.update(ImageCopy)
        .where(ImageCopy.pool_id.in_(lost_pools), ImageCopy.status != "missing")
        .values(status="missing", error="The node was marked lost.")
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    live = nodes.live()
    stranded = db.session.execute(
        db.select(Image)
        .where(Image.storage_pool_id.in_(lost_pools), Image.deleted_at.is_(None))
        .order_by(Image.id)
        .limit(limit)
    ).scalars()
    for image in stranded:
        good = copies.live_verified(image, live)
        if good:
            _make_primary(image, good[0].pool)
            out["promoted"] += 1
        elif image.status in ("pending", "processing"):
            image.status = "failed"
            image.error = "The node that held this upload was marked lost."
            db.session.commit()
            out["lost_uploads"] += 1
    return out


def _make_primary(image: Image, pool: StoragePool) -> None:
    """Point the image (and its variants) at another of its verified copies."""
    db.session.execute(
        db.update(ImageVariant)
        .where(ImageVariant.image_id == image.id)
        .values(storage_pool_id=pool.id)
        .execution_options(synchronize_session=False)
    )
    image.storage_pool_id = pool.id
    db.session.commit()


def repair_pass() -> dict:
    """One pass: promote, then queue replication for images short of copies (at most
    REPAIR_BATCH per pass; queued jobs have fixed ids, so nothing is queued twice)."""
    out = promote_from_lost()
    live = nodes.live()
    queued = without = 0
    ids = copies.under_replicated_ids(0, REPAIR_BATCH)
    batches: dict[str, list[int]] = {}
    for image in db.session.execute(
        db.select(Image).options(selectinload(Image.copies)).where(Image.id.in_(ids))
    ).scalars():
        source = source_copy(image, live)
        if source is None:
            without += 1
            continue
        batches.setdefault(batch_job_id(source.pool.node_id, image.id), []).append(image.id)
    for job, image_ids in batches.items():
        node = job.split("-")[1]
        try:
            queues.enqueue_once(
                node, "pixelfox.jobs.replicas.replicate_images", job, image_ids, timeout=3600
            )
            queued += len(image_ids)
        except Exception:  # Redis down: the next pass queues them
            log.exception("could not queue replication batch %s", job)
    out.update(queued=queued, without_source=without)
    counts = copies.durability()
    sample = ids[:200]
    average = copies.bytes_of(sample) // len(sample) if sample else 0
    snapshot = {
        "counts": counts,
        "bytes_left": average * (counts["under_replicated"] + counts["repairing"]),
        "rate_bytes_per_second": round(rate()),
        "at": time.time(),
    }
    get_redis().set(PROGRESS_KEY, json.dumps(snapshot), ex=180)
    out["durability"] = counts
    return out


def progress() -> dict | None:
    """The latest repair pass's counts, MB/s and ETA (for the dashboard)."""
    raw = get_redis().get(PROGRESS_KEY)
    if not raw:
        return None
    data = json.loads(raw)
    speed = data.get("rate_bytes_per_second") or 0
    data["eta_seconds"] = int(data["bytes_left"] / speed) if speed and data["bytes_left"] else None
    return data
