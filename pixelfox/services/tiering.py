"""Tiering (SPEC §10): images nobody looks at drift from hot to warm to cold pools by
themselves; an image in demand again may come back to hot.

A pass applies the rules as of one day: complete images in hot pools not viewed for
`tiering_warm_after_days` (never viewed: since their upload) go to a warm pool, and those
in hot or warm pools not viewed for `tiering_cold_after_days` to a cold pool — straight
from hot when they are that old, so one pass leaves every image where the rules want it and
a second pass moves nothing. An image viewed again stays where it is (no ping-pong) unless
`tiering_promote_views_per_day` is set and exceeded: then it goes back to hot. Targets are
picked per image by the placement rule among the target tier's pools (never where another
copy of the image lies). The images go into ordinary pool moves of kind `tiering`: verified
copy, switch, delete, throttled by `tiering_max_mb_per_second` for all of them together,
with pause/resume/cancel in /admin/moves. Everything is decided from the database.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from pixelfox.extensions import db
from pixelfox.models import Image, PoolMove, PoolMoveItem, StoragePool, TieringRun, User
from pixelfox.models.base import utcnow
from pixelfox.models.move import ITEM_OPEN
from pixelfox.services import heartbeat, moves, placement, pools, settings
from pixelfox.services.move_plan import image_bytes_query

log = logging.getLogger(__name__)
MAX_PER_POOL = 20000  # images one pass takes from one pool (the rest: the next day's pass)
ACTIVE = ("planned", "running", "paused")


@dataclass
class Group:
    """Images of one source pool that go to one target pool."""

    source: StoragePool
    target: StoragePool
    why: str  # "warm" | "cold" | "hot" (promotion)
    images: list[tuple[int, int]] = field(default_factory=list)  # (image id, bytes)

    @property
    def bytes(self) -> int:
        return sum(b for _i, b in self.images)


@dataclass
class Plan:
    as_of: date
    groups: list[Group]
    notes: list[str]

    @property
    def images(self) -> int:
        return sum(len(g.images) for g in self.groups)

    @property
    def bytes(self) -> int:
        return sum(g.bytes for g in self.groups)

    def rows(self) -> list[dict]:
        """Per source → target: what would move (the preview's table)."""
        return [
            {
                "source": g.source.name,
                "source_tier": g.source.storage_tier,
                "target": g.target.name,
                "target_tier": g.target.storage_tier,
                "why": g.why,
                "images": len(g.images),
                "bytes": g.bytes,
            }
            for g in self.groups
        ]


def rules() -> dict:
    s = settings.all_settings()
    return {
        "enabled": s["tiering_enabled"],
        "warm_after_days": int(s["tiering_warm_after_days"]),
        "cold_after_days": int(s["tiering_cold_after_days"]),
        "max_mb_per_second": int(s["tiering_max_mb_per_second"]),
        "promote_views_per_day": int(s["tiering_promote_views_per_day"]),
    }


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def plan(as_of: date) -> Plan:
    """Which images would move as of `as_of` (nothing is written)."""
    r = rules()
    now = _midnight(as_of) + timedelta(days=1)  # the whole of `as_of` has passed
    warm_cutoff = now - timedelta(days=r["warm_after_days"])
    cold_cutoff = now - timedelta(days=r["cold_after_days"])
    all_pools = list(db.session.execute(db.select(StoragePool).order_by(StoragePool.id)).scalars())
    busy = dict(
        db.session.execute(
            db.select(PoolMove.source_pool_id, db.func.max(PoolMove.id))
            .where(PoolMove.status.in_(ACTIVE))
            .group_by(PoolMove.source_pool_id)
        ).all()
    )
    draining = set(
        db.session.execute(
            db.select(PoolMove.source_pool_id).where(
                PoolMove.status.in_(ACTIVE), PoolMove.kind == "pool"
            )
        ).scalars()
    )  # an admin is emptying these: nothing new goes in
    emptied = {p.storage_tier for p in all_pools if p.is_active and p.id in draining}
    by_tier: dict[str, list[StoragePool]] = {}
    for p in all_pools:
        if p.is_active and p.weight > 0 and p.id not in draining:
            by_tier.setdefault(p.storage_tier, []).append(p)
    picker = _Picker(heartbeat.pool_states())
    notes: list[str] = []
    groups: dict[tuple[int, int], Group] = {}
    idle = db.func.coalesce(Image.last_viewed_at, Image.created_at)

    placed: set[int] = set()  # one move per image and pass

    def place(source: StoragePool, tiers: tuple[str, ...], rows, why: str) -> None:
        waiting = nearer = 0
        for image_id, nbytes, image in rows:
            if image_id in placed:
                continue
            target = None
            for tier in tiers:  # the wanted tier, then the next best (hot → cold via warm)
                target = picker.pick(source, by_tier.get(tier, []), image, nbytes)
                if target is not None:
                    break
            if target is None:
                waiting += 1
                continue
            nearer += target.storage_tier != tiers[0]
            group = groups.setdefault(
                (source.id, target.id), Group(source, target, target.storage_tier)
            )
            group.images.append((image_id, nbytes))
            placed.add(image_id)
        if waiting:
            notes.append(
                f"Pool {source.name}: {_images(waiting)} due for {why} storage cannot move, "
                + _no_target(tiers, by_tier, emptied)
            )
        if nearer:
            notes.append(
                f"Pool {source.name}: {_images(nearer)} due for {why} storage moved to "
                f"{tiers[1]} storage for now, " + _no_target(tiers[:1], by_tier, emptied)
            )

    for source in all_pools:
        if source.storage_tier not in ("hot", "warm"):
            continue
        if source.storage_tier == "hot":
            due = _candidates(source, idle < max(warm_cutoff, cold_cutoff))
        else:
            due = _candidates(source, idle < cold_cutoff)
        if not due:
            continue
        if source.id in busy:
            notes.append(
                f"Pool {source.name} is busy with move #{busy[source.id]}: "
                f"{_images(len(due))} wait for the next pass."
            )
            continue
        if source.storage_tier == "hot":
            old = [row for row in due if _idle_since(row[2]) < cold_cutoff]
            young = [row for row in due if cold_cutoff <= _idle_since(row[2]) < warm_cutoff]
            place(source, ("cold", "warm"), old, "cold")
            place(source, ("warm",), young, "warm")
        else:
            place(source, ("cold",), due, "cold")

    if r["promote_views_per_day"] > 0:
        since = as_of - timedelta(days=1)
        for source in all_pools:
            if source.storage_tier == "hot":
                continue
            wanted = _candidates(
                source,
                (Image.views_day >= since) & (Image.views_on_day > r["promote_views_per_day"]),
            )
            if wanted and source.id in busy:
                notes.append(f"Pool {source.name} is busy: {len(wanted)} promotion(s) wait.")
            elif wanted:
                place(source, ("hot",), wanted, "hot")
    return Plan(as_of, list(groups.values()), notes)


def _idle_since(image: Image) -> datetime:
    return image.last_viewed_at or image.created_at


def _candidates(source: StoragePool, condition) -> list[tuple[int, int, Image]]:
    """(id, bytes, image) of complete images of `source` meeting `condition`, not already
    part of an unfinished move."""
    in_moves = (
        db.select(PoolMoveItem.image_id)
        .join(PoolMove, PoolMove.id == PoolMoveItem.move_id)
        .where(PoolMove.status.in_(ACTIVE), PoolMoveItem.status.in_(ITEM_OPEN))
    )
    sized = image_bytes_query(source.id).subquery()
    rows = db.session.execute(
        db.select(Image, sized.c.bytes)
        .join(sized, sized.c.id == Image.id)
        .where(Image.status == "complete", condition, Image.id.not_in(in_moves))
        .order_by(Image.id)
        .limit(MAX_PER_POOL)
    ).all()
    return [(image.id, int(nbytes or 0), image) for image, nbytes in rows]


def _images(n: int) -> str:
    return f"{n} image" if n == 1 else f"{n} images"


def _no_target(tiers: tuple[str, ...], by_tier: dict, emptied: set[str]) -> str:
    names = " or ".join(tiers)
    if not any(by_tier.get(t) for t in tiers):
        if emptied & set(tiers):
            return f"as every active pool of tier {names} is being emptied by a move."
        return f"as there is no active pool of tier {names}."
    return (
        f"as no pool of tier {names} can take them (full, unhealthy, "
        "holding another copy of them, or unreachable from their node)."
    )


class _Picker:
    """The placement rule for one pass, counting what the pass itself has placed."""

    def __init__(self, health: dict):
        self.health = health
        self.planned: dict[int, int] = {}

    def pick(self, source: StoragePool, among: list[StoragePool], image: Image, nbytes: int):
        exclude = {c.pool.failure_domain for c in image.copies if c.pool_id != source.id}
        candidates = [p for p in among if p.id != source.id and self._reachable(source, p)]
        while candidates:
            try:
                target = placement.choose_pool(
                    nbytes, health=self.health, exclude_domains=exclude, among=candidates
                )
            except placement.NoPoolAvailable:
                return None
            room = pools.room(target)
            if room is None or room - self.planned.get(target.id, 0) >= nbytes:
                self.planned[target.id] = self.planned.get(target.id, 0) + nbytes
                return target
            candidates = [p for p in candidates if p.id != target.id]
        return None

    @staticmethod
    def _reachable(source: StoragePool, target: StoragePool) -> bool:
        """A move copies from the source's node: to a bucket, a pool on the same node, or a
        node with an upload endpoint to push to."""
        return target.is_s3 or target.node_id == source.node_id or bool(target.upload_api_url)


def run(as_of: date | None = None, trigger: str = "schedule", user: User | None = None):
    """One pass: plan, record the run, start a tiering move per source → target."""
    as_of = as_of or utcnow().date()
    p = plan(as_of)
    record = TieringRun(
        as_of=as_of, trigger=trigger, created_by=user.id if user else None, dry_run=False
    )
    db.session.add(record)
    db.session.commit()
    notes = list(p.notes)
    for group in p.groups:
        try:
            move = moves.start_selected(group.source, group.target, group.images, record)
        except moves.MoveError as exc:
            notes.append(f"{group.source.name} → {group.target.name}: {exc}")
            continue
        record.moves += 1
        record.images += move.total
        record.bytes += move.bytes_total
    if not p.groups and not notes:
        notes.append("No image is due: every image is where the rules want it.")
    record.notes = "\n".join(notes) or None
    record.finished_at = utcnow()
    db.session.commit()
    log.info(
        "tiering run %s as of %s: %d images in %d moves",
        record.id,
        as_of,
        record.images,
        record.moves,
    )
    return record


def daily() -> str:
    """The scheduled pass (hourly job): once a day, when tiering is on."""
    if not settings.get("tiering_enabled"):
        return "off"
    today = utcnow().date()
    done = db.session.execute(
        db.select(TieringRun.id).where(
            TieringRun.as_of == today,
            TieringRun.trigger == "schedule",
            TieringRun.finished_at.is_not(None),  # a pass cut short runs again (images already
        )  # in its moves are not picked twice)
    ).first()
    if done:
        return "done today"
    record = run(today, "schedule")
    return f"run {record.id}: {record.images} images in {record.moves} moves"


def last_runs(limit: int = 10) -> list[TieringRun]:
    return list(
        db.session.execute(
            db.select(TieringRun).order_by(TieringRun.id.desc()).limit(limit)
        ).scalars()
    )


def moves_of(run_ids: list[int]) -> dict[int, list[PoolMove]]:
    out: dict[int, list[PoolMove]] = {}
    if not run_ids:
        return out
    for move in db.session.execute(
        db.select(PoolMove).where(PoolMove.tiering_run_id.in_(run_ids)).order_by(PoolMove.id)
    ).scalars():
        out.setdefault(move.tiering_run_id, []).append(move)
    return out
