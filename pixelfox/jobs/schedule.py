"""Periodic jobs as data (SPEC §6). Each definition gets an id hashed from its content, so
syncing is idempotent: restarts never duplicate a job, and changed definitions replace old ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from rq_scheduler import Scheduler

from pixelfox.jobs.queues import queue_name

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


def definitions(app_node: str, nodes: list[str] | None = None) -> list[Periodic]:
    """pool_stats and sweeper on the app node; a heartbeat into every node's queue."""
    wanted = [
        Periodic("pool_stats", "pixelfox.jobs.periodic.pool_stats", 300, app_node),
        Periodic("sweeper", "pixelfox.jobs.periodic.sweeper", 60, app_node),
    ]
    for node in sorted(set(nodes or []) | {app_node}):
        wanted.append(Periodic("heartbeat", "pixelfox.jobs.periodic.heartbeat", 60, node, 60))
    return wanted


def make_scheduler(redis, node_id: str, interval: int = 5) -> Scheduler:
    return Scheduler(queue_name=queue_name(node_id), connection=redis, interval=interval)


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
