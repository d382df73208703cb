"""Rate limits shared by every node, kept in Redis through the `limits` library
(the engine under Flask-Limiter; used directly because our limits live in the service
layer and read their numbers from settings at every call)."""

from __future__ import annotations

import math
import time

from flask import current_app
from limits import RateLimitItemPerMinute
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter


class RateLimited(Exception):
    def __init__(self, retry_after: int, message: str):
        super().__init__(message)
        self.retry_after = retry_after
        self.message = message


def _limiter() -> MovingWindowRateLimiter:
    ext = current_app.extensions
    if "pixelfox_limiter" not in ext:
        url = current_app.config["REDIS_URL"]
        if url.startswith("unix://"):
            url = "redis+unix://" + url[len("unix://") :]
        storage = RedisStorage(url, key_prefix="pixelfox-rl")
        ext["pixelfox_limiter"] = MovingWindowRateLimiter(storage)
    return ext["pixelfox_limiter"]


def hit(scope: str, key: str, per_minute: int, what: str) -> None:
    """Count one event for `scope:key`; raise RateLimited once `per_minute` is exceeded.
    0 disables the limit."""
    if per_minute <= 0:
        return
    item = RateLimitItemPerMinute(per_minute)
    limiter = _limiter()
    if limiter.hit(item, scope, key):
        return
    stats = limiter.get_window_stats(item, scope, key)
    retry = max(1, math.ceil(stats.reset_time - time.time()))
    raise RateLimited(retry, f"Too many {what}. Try again in {retry} seconds.")


def clear(scope: str, key: str, per_minute: int) -> None:
    if per_minute > 0:
        _limiter().clear(RateLimitItemPerMinute(per_minute), scope, key)
