"""Rate limits shared by every node, kept in Redis through the `limits` library
(the engine under Flask-Limiter; used directly because our limits live in the service
layer and read their numbers from settings at every call)."""

from __future__ import annotations

import functools
import math
import time

from flask import current_app
from limits import RateLimitItemPerMinute
from limits.errors import StorageError
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter


class RateLimited(Exception):
    def __init__(self, retry_after: int, message: str):
        super().__init__(message)
        self.retry_after = retry_after
        self.message = message


class Unavailable(Exception):
    """The counters' Redis cannot be reached: the caller decides to fail open or closed."""


def _limiter() -> MovingWindowRateLimiter:
    ext = current_app.extensions
    if "pixelfox_limiter" not in ext:
        url = current_app.config["REDIS_URL"]
        if url.startswith("unix://"):
            url = "redis+unix://" + url[len("unix://") :]
        storage = RedisStorage(url, key_prefix="pixelfox-rl", wrap_exceptions=True)
        ext["pixelfox_limiter"] = MovingWindowRateLimiter(storage)
    return ext["pixelfox_limiter"]


def _storage_errors(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except StorageError as exc:
            raise Unavailable(str(exc.storage_error)) from exc

    return wrapper


@_storage_errors
def hit(scope: str, key: str, per_minute: int, what: str) -> None:
    """Count one event for `scope:key`; raise RateLimited once `per_minute` is exceeded.
    0 disables the limit. Unavailable when Redis cannot be reached."""
    if per_minute <= 0:
        return
    item = RateLimitItemPerMinute(per_minute)
    limiter = _limiter()
    if limiter.hit(item, scope, key):
        return
    raise _refuse(limiter, item, scope, key, what)


def _refuse(limiter, item, scope: str, key: str, what: str):
    stats = limiter.get_window_stats(item, scope, key)
    retry = max(1, math.ceil(stats.reset_time - time.time()))
    return RateLimited(retry, f"Too many {what}. Try again in {retry} seconds.")


@_storage_errors
def check(scope: str, key: str, per_minute: int, what: str) -> None:
    """Raise RateLimited if `scope:key` has used up `per_minute`, without counting an event."""
    if per_minute <= 0:
        return
    item = RateLimitItemPerMinute(per_minute)
    limiter = _limiter()
    if not limiter.test(item, scope, key):
        raise _refuse(limiter, item, scope, key, what)


@_storage_errors
def used(scope: str, key: str, per_minute: int) -> int:
    """Events of `scope:key` in the current window."""
    if per_minute <= 0:
        return 0
    item = RateLimitItemPerMinute(per_minute)
    return per_minute - _limiter().get_window_stats(item, scope, key).remaining


def clear(scope: str, key: str, per_minute: int) -> None:
    if per_minute > 0:
        _limiter().clear(RateLimitItemPerMinute(per_minute), scope, key)
