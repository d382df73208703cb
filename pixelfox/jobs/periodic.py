"""Periodic jobs, registered by `flask --app wsgi scheduler`."""

from __future__ import annotations

from pixelfox.jobs.context import get_job_logger, with_app_context


@with_app_context
def pool_stats() -> dict:
    """Recompute every pool's used_size."""
    from pixelfox.services import maintenance

    result = maintenance.pool_stats()
    get_job_logger(__name__).info("pool_stats %s", result)
    return {str(k): v for k, v in result.items()}


@with_app_context
def sweeper() -> dict:
    """Requeue stuck work and clear stale temp files."""
    from pixelfox.services import maintenance

    result = maintenance.sweep()
    get_job_logger(__name__).info("sweeper %s", result)
    return result


@with_app_context
def heartbeat() -> dict:
    """Report this node's pools (free/used/writable/upload API reachable) into Redis."""
    from pixelfox.services import heartbeat as service

    result = service.beat()
    get_job_logger(__name__).info("heartbeat %s", result)
    return result
