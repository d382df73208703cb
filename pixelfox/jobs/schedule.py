"""Periodic jobs as data (SPEC §6). Each definition gets an id hashed from its content, so
syncing is idempotent: restarts never duplicate a job, and changed definitions replace old ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from redis.exceptions import RedisError
from rq_scheduler import Scheduler
from sqlalchemy.exc import SQLAlchemyError

from pixelfox.queues import queue_name

log = logging.getLogger(__name__)
PREFIX = "periodic-"


@dataclass(frozen=True)
class Periodic:
    name: str
    func: str
    interval: int  # seconds
    node_id: str
    timeout: int = 300

    @property
    def job_id(self) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]
        return f"{PREFIX}{self.name}-{self.node_id}-{digest}"


def definitions(
    app_node: str, nodes: list[str] | None = None, heartbeat_every: int = 60
) -> list[Periodic]:
    """pool_stats, sweeper, flush_views, repair and tiering on the app node; a heartbeat and a
    scrub into every node's queue."""
    wanted = [
        Periodic("pool_stats", "pixelfox.jobs.periodic.pool_stats", 300, app_node),
        Periodic("sweeper", "pixelfox.jobs.periodic.sweeper", 60, app_node),
        Periodic("flush_views", "pixelfox.jobs.periodic.flush_views", 60, app_node),
        Periodic("repair", "pixelfox.jobs.replicas.repair", 60, app_node, 600),
        Periodic("tiering", "pixelfox.jobs.periodic.tiering_pass", 3600, app_node, 600),
    ]
    for node in sorted(set(nodes or []) | {app_node}):
        wanted.append(
            Periodic("heartbeat", "pixelfox.jobs.periodic.heartbeat", heartbeat_every, node, 60)
        )
        wanted.append(Periodic("scrub", "pixelfox.jobs.replicas.scrub_files", 60, node, 300))
    return wanted


def sync(scheduler: Scheduler, wanted: list[Periodic]) -> dict[str, list[str]]:
    """Cancel periodic jobs that are no longer wanted, add the missing ones."""
    want = {p.job_id: p for p in wanted}
    have = {job.id for job in scheduler.get_jobs() if job.id.startswith(PREFIX)}
    removed = sorted(have - set(want))
    for job_id in removed:
        scheduler.cancel(job_id)
        scheduler.connection.delete(f"rq:job:{job_id}")
    added = []
    for job_id, p in want.items():
        if job_id in have:
            continue
        scheduler.schedule(
            scheduled_time=datetime.now(UTC),
            func=p.func,
            interval=p.interval,
            repeat=None,
            id=job_id,
            queue_name=queue_name(p.node_id),
            timeout=p.timeout,
            result_ttl=p.interval * 10,
            description=f"{p.name} every {p.interval}s on {queue_name(p.node_id)}",
        )
        added.append(job_id)
    log.info("periodic jobs: added %s, removed %s", added, removed)
    return {"added": added, "removed": removed, "kept": sorted(have & set(want))}


RESYNC_SECONDS = 30  # a Redis that came back empty has its periodic jobs again within this


def run(
    scheduler: Scheduler,
    wanted: Callable[[], list[Periodic]],
    resync_every: float = RESYNC_SECONDS,
    on_error: Callable[[], None] | None = None,
) -> None:
    """rq-scheduler's loop (move due jobs into their queues under its lock), plus what a
    Redis run as an ephemeral cache needs: every `resync_every` seconds the periodic jobs are
    synced again, so a restart without persistence or a failover loses them for at most that
    long; and a Redis or database outage is waited out instead of ending the process."""
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(True))
    last_sync = 0.0
    while not stopping:
        started = time.monotonic()
        try:
            if started - last_sync >= resync_every:
                result = sync(scheduler, wanted())
                if result["added"] and last_sync:
                    log.warning(
                        "periodic jobs were missing (Redis lost its data?); registered again: %s",
                        result["added"],
                    )
                last_sync = started
            if scheduler.acquire_lock():
                try:
                    scheduler.enqueue_jobs()
                finally:
                    scheduler.remove_lock()
        except (RedisError, SQLAlchemyError) as exc:
            log.warning("scheduler: %s unavailable (%s); trying again", type(exc).__name__, exc)
            last_sync = 0.0  # sync as soon as it answers again
            if on_error:
                on_error()
        time.sleep(max(0.0, scheduler._interval - (time.monotonic() - started)))
    log.info("scheduler stopped")
