"""Limits shared by every worker through Redis: a byte rate (MB/s) and per-node copy slots."""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import current_app

from pixelfox.extensions import get_redis

MB = 1024 * 1024
SLOT_TTL = 15 * 60


class ByteThrottle:
    """Called with a byte count; sleeps so that everything counted under `key` stays under
    `limit_mb()` MB/s across all workers (0 = unlimited). `refresh()` re-reads the limit, so a
    changed setting applies without a settings query per chunk."""

    def __init__(self, key: str, limit_mb: Callable[[], int]):
        self.key = key
        self.limit_mb = limit_mb
        self.redis = get_redis()
        self.refresh()

    def refresh(self) -> None:
        self.limit = int(self.limit_mb()) * MB

    def __call__(self, n: int) -> None:
        if self.limit <= 0:
            return None
        while True:
            second = int(time.time())
            key = f"{self.key}:{second}"
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


class NodeSlots:
    """At most `cap` holders of `key` at once, across workers (a lease that expires after
    `ttl` seconds if its holder dies). Use as a context manager; it waits for a free slot."""

    def __init__(self, key: str, cap: int, ttl: int = SLOT_TTL):
        self.key, self.cap, self.ttl = key, cap, ttl
        self.token = f"{time.time()}-{id(self)}"

    def __enter__(self) -> NodeSlots:
        redis = get_redis()
        while True:
            now = time.time()
            if redis.eval(_ACQUIRE, 1, self.key, now, self.cap, now + self.ttl, self.token):
                return self
            time.sleep(0.2)

    def __exit__(self, *exc) -> bool:
        get_redis().zrem(self.key, self.token)
        return False


def copy_slots(node: str) -> NodeSlots:
    """Copy jobs (moves, replicas, repair) at work at once on one node, across its workers:
    MOVE_MAX_CONCURRENT_PER_NODE."""
    cap = int(current_app.config.get("MOVE_MAX_CONCURRENT_PER_NODE", 2))
    return NodeSlots(f"pixelfox:copy-slots:{node}", cap)
