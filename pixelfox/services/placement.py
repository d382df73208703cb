"""Placement: the one function that picks the pool for new bytes (uploads, direct-upload
sessions, replicas), SPEC §7, §9.

Eligible pools: active, weight > 0 (and accepting uploads, for uploads), not reported
unhealthy, not marked full, with room for the file and no fuller than
`pool_high_water_percent`. Among those of the best tier (hot first) and then the best
(lowest) priority, the choice is proportional to `weight × free fraction`, made by smooth
weighted round-robin whose state lives in Redis (shared by every process and node): over
any run of placements each pool gets its share, not a random one. Without Redis the choice
is random in the same proportions.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import timedelta

from redis.exceptions import RedisError

from pixelfox.extensions import db, get_redis
from pixelfox.models import Image, StoragePool
from pixelfox.models.base import utcnow
from pixelfox.services import pools, settings

log = logging.getLogger(__name__)
TIER_ORDER = pools.TIER_ORDER
FULL_KEY = "pixelfox:pool-full:{}"
FULL_TTL = 600  # a heartbeat that finds room clears it sooner
SPREAD_KEY = "pixelfox:placement:{}"
SCALE = 1000  # weights × free fraction, as integers for Redis

_SPREAD = """
local total = 0
local best, bestval = nil, nil
for i = 1, #ARGV, 2 do
  local w = tonumber(ARGV[i + 1])
  total = total + w
  local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0') + w
  redis.call('HSET', KEYS[1], ARGV[i], cur)
  if bestval == nil or cur > bestval then best, bestval = ARGV[i], cur end
end
redis.call('HINCRBY', KEYS[1], best, -total)
redis.call('EXPIRE', KEYS[1], 86400)
return best
"""


class NoPoolAvailable(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def mark_full(pool_id: int) -> None:
    """A write into this pool hit ENOSPC/EDQUOT: placement skips it at once, on every node,
    until its heartbeat finds room again."""
    try:
        get_redis().set(FULL_KEY.format(pool_id), int(time.time()), ex=FULL_TTL)
    except RedisError:
        log.warning("could not mark pool %s full (Redis unavailable)", pool_id)


def clear_full(pool_id: int) -> None:
    get_redis().delete(FULL_KEY.format(pool_id))


def marked_full(pool_ids: list[int]) -> set[int]:
    if not pool_ids:
        return set()
    try:
        marks = get_redis().mget([FULL_KEY.format(i) for i in pool_ids])
    except RedisError:
        return set()
    return {i for i, m in zip(pool_ids, marks, strict=True) if m}


def free_fraction(pool: StoragePool, state: dict | None) -> float:
    """How empty a pool is (0–1): by its capacity when it has one, else by its disk (from its
    heartbeat); 1 when neither is known."""
    if pool.max_size:
        return max(0.0, 1 - (pool.used_size or 0) / pool.max_size)
    if state and state.get("disk_total"):
        return max(0.0, min(1.0, state.get("disk_free", 0) / state["disk_total"]))
    return 1.0


def eligible(
    node_id: str | None = None, direct: bool = False, for_replica: bool = False
) -> list[StoragePool]:
    """Pools that may take new bytes at all: active, weight > 0, accepting uploads (for
    uploads), on `node_id` if given, reachable over HTTP for direct uploads and replicas."""
    q = db.select(StoragePool).where(StoragePool.is_active.is_(True), StoragePool.weight > 0)
    if not for_replica:
        q = q.where(StoragePool.accepts_uploads.is_(True))
    if node_id:
        q = q.where(StoragePool.node_id == node_id)
    if direct:  # reached over HTTP by the browser
        q = q.where(StoragePool.upload_api_url.is_not(None))
    elif for_replica:  # pushed to by another node over HTTP, or written to a bucket by any
        q = q.where(StoragePool.upload_api_url.is_not(None) | (StoragePool.storage_type == "s3"))
    return list(db.session.execute(q).scalars())


def choose_pool(
    size: int,
    node_id: str | None = None,
    health: dict | None = None,
    direct: bool = False,
    exclude_domains: set[str] | frozenset = frozenset(),
    for_replica: bool = False,
    among: list[StoragePool] | None = None,
) -> StoragePool:
    """The pool for `size` new bytes. `node_id`: only that node's pools (the web form on this
    node); `direct`: the browser must reach the pool (it has an upload_api_url);
    `exclude_domains`: not in these failure domains (node ids, "s3:<pool id>": a replica's
    must differ from the other copies');
    `health`: the pools' latest heartbeats; `among`: the eligible() pools, when the caller
    places many files at once."""
    if among is None:
        among = eligible(node_id, direct, for_replica)
    candidates = [p for p in among if p.failure_domain not in exclude_domains]
    what = "replicas" if for_replica else "uploads"
    if not candidates:
        raise NoPoolAvailable(503, "no_pool", f"No storage pool takes {what} right now.")
    health = health or {}
    high_water = int(settings.get("pool_high_water_percent"))
    disk_full = marked_full([p.id for p in candidates])
    fits, full = [], False
    for pool in candidates:
        state = health.get(pool.id)
        if state is not None and not state.get("healthy", True):
            continue
        left = pools.room(pool, state.get("disk_free") if state else None)
        fraction = free_fraction(pool, state)
        if pool.id in disk_full or (left is not None and left < size):
            full = True
        elif (1 - fraction) * 100 > high_water:
            full = True  # above the high-water mark: no new bytes
        else:
            fits.append((pool, fraction))
    if not fits:
        if full:
            raise NoPoolAvailable(507, "storage_full", "Every storage pool is full.")
        raise NoPoolAvailable(503, "no_pool", f"No healthy storage pool takes {what} right now.")
    best = min((TIER_ORDER.get(p.storage_tier, 9), p.priority) for p, _f in fits)
    group = [(p, f) for p, f in fits if (TIER_ORDER.get(p.storage_tier, 9), p.priority) == best]
    if len(group) == 1:
        return group[0][0]
    weights = {p.id: max(1, round(p.weight * f * SCALE)) for p, f in group}
    key = f"{'replica' if for_replica else 'upload'}:{node_id or '*'}:{best[0]}:{best[1]}"
    chosen = _spread(key, weights)
    return next(p for p, _f in group if p.id == chosen)


def _spread(key: str, weights: dict[int, int]) -> int:
    """Smooth weighted round-robin over `weights` (state in Redis, atomic in one script)."""
    args = [str(x) for pid, w in sorted(weights.items()) for x in (pid, w)]
    try:
        return int(get_redis().eval(_SPREAD, 1, SPREAD_KEY.format(key), *args))
    except RedisError:
        ids = list(weights)
        return random.choices(ids, [weights[i] for i in ids])[0]


def upload_shares(hours: int = 24) -> dict[int, float]:
    """{pool id: share (0–1) of the uploads of the last `hours` hours} (where the images of
    those uploads are now)."""
    rows = db.session.execute(
        db.select(Image.storage_pool_id, db.func.count(Image.id))
        .where(Image.created_at >= utcnow() - timedelta(hours=hours))
        .group_by(Image.storage_pool_id)
    ).all()
    total = sum(n for _pid, n in rows)
    return {pid: n / total for pid, n in rows} if total else {}
