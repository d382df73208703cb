"""Limits shared by every worker through Redis: a byte rate (MB/s) and per-node copy slots."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from flask import current_app
from redis.exceptions import RedisError

from pixelfox.extensions import get_redis

MB = 1024 * 1024
SLOT_TTL = 30  # seconds a dead holder keeps its slot


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
    """At most `cap` holders of `key` at once, across workers. Use as a context manager; it
    waits for a free slot. A slot is a lease of `ttl` seconds that a thread of the holder
    renews every ttl/3 seconds: a holder that dies (a killed worker, a lost machine) frees its
    slot within `ttl` seconds."""

    def __init__(self, key: str, cap: int, ttl: int = SLOT_TTL):
        self.key, self.cap, self.ttl = key, cap, ttl
        self.token = f"{time.time()}-{id(self)}"
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> NodeSlots:
        redis = get_redis()
        while True:
            now = time.time()
            if redis.eval(_ACQUIRE, 1, self.key, now, self.cap, now + self.ttl, self.token):
                break
            time.sleep(0.2)
        self._renewer = threading.Thread(
            target=self._renew, args=(redis,), name="copy-slot", daemon=True
        )
        self._renewer.start()
        return self

    def _renew(self, redis) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                redis.zadd(self.key, {self.token: time.time() + self.ttl}, xx=True)
            except RedisError:
                pass  # the lease runs out; the copy goes on (the cap is a courtesy)

    def __exit__(self, *exc) -> bool:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        get_redis().zrem(self.key, self.token)
        return False


def copy_slots(node: str) -> NodeSlots:
    """Copy jobs (moves, replicas, repair) at work at once on one node, across its workers:
    MOVE_MAX_CONCURRENT_PER_NODE."""
    cap = int(current_app.config.get("MOVE_MAX_CONCURRENT_PER_NODE", 2))
    return NodeSlots(f"pixelfox:copy-slots:{node}", cap)
