"""Periodic jobs, registered by `flask --app wsgi scheduler`."""

from __future__ import annotations

from pixelfox.jobs.context import get_job_logger, with_app_context
from pixelfox.services import heartbeat as heartbeat_service
from pixelfox.services import maintenance, tiering, viewcounts


@with_app_context
def pool_stats() -> dict:
    """Recompute every pool's used_size."""
    result = maintenance.pool_stats()
    get_job_logger(__name__).info("pool_stats %s", result)
    return {str(k): v for k, v in result.items()}


@with_app_context
def sweeper() -> dict:
    """Requeue stuck work and clear stale temp files."""
    result = maintenance.sweep()
    get_job_logger(__name__).info("sweeper %s", result)
    return result


@with_app_context
def heartbeat() -> dict:
    """Report this node's pools (free/used/writable/upload API reachable) into Redis."""
    result = heartbeat_service.beat()
    get_job_logger(__name__).info("heartbeat %s", result)
    return result


@with_app_context
def flush_views() -> dict:
    """Write the views counted in Redis into the images table, in batches."""
    result = viewcounts.flush()
    get_job_logger(__name__).info("flush_views %s", result)
    return result


@with_app_context
def tiering_pass() -> str:
    """The daily tiering pass (runs hourly; acts once a day, when tiering is on)."""
    result = tiering.daily()
    get_job_logger(__name__).info("tiering %s", result)
    return result
