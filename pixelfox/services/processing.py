"""Turning an original into its variants (SPEC §4). Runs in workers only."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import current_app

from pixelfox import queues
from pixelfox.extensions import db
from pixelfox.imaging.sniff import KINDS
from pixelfox.models import Image, ImageVariant, StoragePool
from pixelfox.models.base import utcnow
from pixelfox.models.image import is_thumbnail
from pixelfox.services import copies, placement, replicas, settings
from pixelfox.services.poolfiles import PoolFiles
from pixelfox.storage import local, paths, s3

log = logging.getLogger(__name__)
KIND_BY_MIME = {k.mime: k for k in KINDS.values()}


class WrongNode(RuntimeError):
    """The job reached a node that does not hold the image's bytes."""


class StorageFull(RuntimeError):
    """The pool's disk is full: nothing was written; the job retries later."""


class StoreUnavailable(RuntimeError):
    """An object-storage pool's store refused or could not be reached: the job retries."""


# pixelfox.imaging.variants is imported inside the functions below: importing it loads
# ImageMagick, which only workers may do (the web imports this module through regen).

# Two phases. Phase 1 (`process`, queued ahead of other work) makes what the viewer and the
# copy boxes need first — the small and medium thumbnails in every format — from a JPEG
# decoded at the scale they need, and publishes them at once (`ready_at`). Phase 2
# (`finish`, queued behind) makes the heavy outputs — full-size WebP and AVIF — and rewrites
# the original without its metadata; then the image is `complete`.
THUMBNAILS, FULL = 1, 2
# Decode JPEGs for the thumbnails at the smallest DCT scale whose sides are all >= this
# (the medium thumbnail is 500 px wide, whichever way the image is turned).
DECODE_HINT = "500x500"


def plan(image: Image, base: Path | str, opts: dict, phase: int | None = None):
    """(the source's kind, the variant targets of `phase`, or of both phases), with their
    files under `base` (the pool's directory, or an object-storage pool's staging one)."""
    from pixelfox.imaging.variants import Target

    src = KIND_BY_MIME[image.mime_type]

    def dest(ext: str, size: str | None = None) -> Path:
        return paths.resolve(
            str(base), paths.variant_path(image.stored_path, image.uuid, ext, size)
        )

    targets = []
    if phase in (None, FULL):
        targets += [
            Target("webp", None, "webp", dest(".webp")),
            Target("avif", None, "avif", dest(".avif")),
        ]
    if phase in (None, THUMBNAILS):
        wanted = [
            ("original", src.name, src.ext, opts["thumbnail_original_enabled"]),
            ("webp", "webp", ".webp", opts["thumbnail_webp_enabled"]),
            ("avif", "avif", ".avif", opts["thumbnail_avif_enabled"]),
        ]
        for size in ("small", "medium"):
            for label, fmt, ext, enabled in wanted:
                if enabled:
                    targets.append(Target(f"thumbnail_{size}_{label}", size, fmt, dest(ext, size)))
    return src, targets


def _load(image_id: int):
    image = db.session.get(Image, image_id)
    if image is None or image.deleted_at is not None:
        return None
    if image.pool.node_id != current_app.config["NODE_ID"]:
        raise WrongNode(f"image {image.uuid} lives on node {image.pool.node_id}")
    return image


def process(image_id: int, force: bool = False) -> str:
    """Phase 1: the thumbnails, published at once; then phase 2 is queued. Safe to run again
    at any point: files have fixed names and are written atomically, rows are upserted by
    (image, kind); thumbnails in place are not made again unless `force`."""
    image = _load(image_id)
    if image is None:
        return "gone"
    with PoolFiles(image.pool) as files:
        outcome = _thumbnails(image, files, settings.all_settings(), force)
    if outcome == "ready":
        queue_finish(image, force)
    return outcome


def _thumbnails(image: Image, files: PoolFiles, opts: dict, force: bool) -> str:
    if (
        not force
        and image.status == "complete"
        and _intact(image, files, plan(image, files.base, opts)[1])
    ):
        return "complete"
    src_kind, targets = plan(image, files.base, opts, THUMBNAILS)
    if not force and image.ready_at is not None and _intact(image, files, targets):
        return "ready"  # phase 1 ended before a crash: on with phase 2
    if image.status != "complete":  # a complete image stays published while rendered again
        image.status, image.error = "processing", None
        db.session.commit()
    hint = DECODE_HINT if src_kind.name == "jpeg" else None
    result = _render(image, files, src_kind, targets, strip=False, hint=hint)
    if isinstance(result, str):
        return result
    _record(image, files, result, THUMBNAILS)
    image.width, image.height = result.width, result.height
    image.ready_at = utcnow()
    db.session.commit()
    log.info("image %s ready: %d thumbnails", image.uuid, len(result.variants))
    return "ready"


def finish(image_id: int, force: bool = False) -> str:
    """Phase 2: full-size WebP and AVIF, the original without metadata; then `complete`, and
    the copies on other nodes are brought up to date. Idempotent like phase 1."""
    image = _load(image_id)
    if image is None:
        return "gone"
    if image.ready_at is None:  # phase 1 first (it queues this again)
        return process(image_id, force)
    with PoolFiles(image.pool) as files:
        outcome = _full(image, files, settings.all_settings(), force)
    if outcome == "rendered":
        replicas.queue_replication(image)
        return "complete"
    return outcome


def _full(image: Image, files: PoolFiles, opts: dict, force: bool) -> str:
    src_kind, targets = plan(image, files.base, opts, FULL)
    if not force and image.status == "complete" and _intact(image, files, targets):
        return "complete"
    result = _render(image, files, src_kind, targets, strip=opts["strip_metadata"], hint=None)
    if isinstance(result, str):
        return result
    _record(image, files, result, FULL)
    image.width, image.height = result.width, result.height
    image.status, image.error, image.processed_at = "complete", None, utcnow()
    copies.files_changed(image)
    db.session.commit()
    log.info("image %s complete: %d variants", image.uuid, len(image.variants))
    return "rendered"


def queue_finish(image: Image, force: bool = False) -> None:
    """Phase 2, behind the queued work (new uploads' phase 1 goes ahead of it)."""
    try:
        queues.enqueue_once(
            image.pool.node_id,
            "pixelfox.jobs.images.finish_image",
            finish_job_id(image),
            *((image.id, True) if force else (image.id,)),
        )
    except Exception:  # Redis down: the sweeper queues it later
        log.exception("could not queue phase 2 of %s", image.uuid)


def finish_job_id(image: Image) -> str:
    return queues.job_id("finish-image", image.uuid)


def _render(image: Image, files: PoolFiles, src_kind, targets, strip: bool, hint):
    """Render `targets` into place (staged, then renamed in together; uploaded, for an
    object-storage pool), or the outcome when the image failed; a full disk raises
    StorageFull with nothing changed, a store that cannot be reached StoreUnavailable."""
    from pixelfox.imaging.variants import DecodeError, render

    pool = files.pool
    try:
        source = files.fetch(image.stored_path)
    except s3.S3Error as exc:
        if not exc.retry:
            return _fail(image, "The original file is missing from storage.")
        raise StoreUnavailable(f"pool {pool.name}: {exc.message}") from exc
    except local.Mismatch:
        return _fail(image, "The original file in storage is damaged (its SHA-256 differs).")
    if not source.exists():
        return _fail(image, "The original file is missing from storage.")
    try:
        result = render(
            source,
            src_kind.name,
            targets,
            files.tmp,
            strip_original=strip,
            decode_hint=hint,
        )
        outputs = [(r.dest, r.sha256) for r in result.staged()]
        # Every output is staged by now: renaming them in needs no room, so a full disk has
        # failed above with nothing changed.
        result.commit()
    except DecodeError as exc:
        return _fail(image, f"This image could not be processed: {exc}")
    except OSError as exc:
        if local.is_disk_full(exc):
            if not files.remote:  # (a bucket's staging directory is not the pool)
                placement.mark_full(pool.id)
            raise StorageFull(
                f"pool {pool.name} is full; processing of {image.uuid} retries"
            ) from exc
        raise
    try:
        for dest, digest in outputs:  # variants first; a rewritten original (if any) last
            files.publish(dest, digest)
    except s3.S3Error as exc:
        raise StoreUnavailable(f"pool {pool.name}: {exc.message}") from exc
    return result


def _record(image: Image, files: PoolFiles, result, phase: int) -> None:
    """Upsert the rows of one phase's variants (dropping those it no longer makes) and, in
    phase 2, describe the original as it is stored now; used_size follows."""
    pool = files.pool
    base = files.base.resolve()
    mine = is_thumbnail if phase == THUMBNAILS else (lambda kind: not is_thumbnail(kind))
    rendered = {v.kind: v for v in result.variants}
    existing = {v.kind: v for v in image.variants if mine(v.kind)}
    # Variant files may be shared by two kinds (a WebP original's thumbnails): count paths once.
    old_bytes = sum({v.stored_path: v.size for v in existing.values()}.values())
    new_bytes = sum({r.dest: r.size for r in rendered.values()}.values())
    delta = new_bytes - old_bytes
    if phase == FULL:
        # Hash the original every run: a crash after rewriting it must still end with the DB
        # describing the bytes stored.
        size, digest = local.hash_file(files.path(image.stored_path))
        delta += size - image.size
        image.size, image.sha256 = size, digest
    if delta:
        # Pool row first, variant inserts after: their foreign-key check would otherwise take
        # a shared lock that this update has to upgrade, and deadlock with an upload.
        db.session.execute(
            db.update(StoragePool)
            .where(StoragePool.id == pool.id)
            .values(used_size=StoragePool.used_size + delta)
        )
    for kind, row in list(existing.items()):
        if kind not in rendered:  # turned off since the last run, or AVIF too small now
            _drop_variant(row, files, rendered)
    for kind, r in rendered.items():
        row = existing.get(kind) or ImageVariant(image_id=image.id, kind=kind)
        row.format = r.fmt
        row.width, row.height, row.size, row.sha256 = r.width, r.height, r.size, r.sha256
        row.stored_path = r.dest.relative_to(base).as_posix()
        row.storage_pool_id = pool.id
        if row.id is None:
            image.variants.append(row)


def _intact(image: Image, files: PoolFiles, targets) -> bool:
    """Every planned variant has a row whose file is stored with the recorded size."""
    from pixelfox.imaging.variants import AVIF_MIN_SIDE, SIZES, scaled

    rows = {v.kind: v for v in image.variants}
    for t in targets:
        w, h = (image.width or 0, image.height or 0)
        if t.size:
            w, h = scaled(w, h, SIZES[t.size])
        if t.fmt == "avif" and min(w, h) < AVIF_MIN_SIDE:
            continue
        row = rows.get(t.kind)
        if row is None:
            return False
        try:
            if not files.exists(row.stored_path, row.size):
                return False
        except s3.S3Error as exc:
            raise StoreUnavailable(f"pool {files.pool.name}: {exc.message}") from exc
    return True


def _drop_variant(row: ImageVariant, files: PoolFiles, keep: dict) -> None:
    if not any(r.dest == files.path(row.stored_path) for r in keep.values()):
        files.remove(row.stored_path)
    db.session.delete(row)


def _fail(image: Image, message: str) -> str:
    image.status = "failed"
    image.error = message
    image.processed_at = utcnow()  # when processing last ended, either way
    db.session.commit()
    log.warning("image %s failed: %s", image.uuid, message)
    return "failed"


def fail(image_id: int, message: str) -> None:
    """Record that processing of an image ended in failure (after a rollback)."""
    db.session.rollback()
    image = db.session.get(Image, image_id)
    if image is not None:
        _fail(image, message)


def give_up(image_id: int, exc: Exception) -> None:
    """After the last retry: mark the image failed so nobody waits for it forever."""
    db.session.rollback()
    image = db.session.get(Image, image_id)
    if image is not None and image.status != "complete":
        _fail(image, f"Processing failed after several attempts ({type(exc).__name__}).")
