"""The one module (besides the job entry points and the worker/scheduler commands) that talks
to RQ: one queue per node (`node-<id>`), job ids, queueing once, liveness, and what the admin
pages show about queues. Services call it; it calls no service, so it sits below them.

Jobs are referenced by dotted path, so nothing here imports the job modules.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from rq import Queue, Retry, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import (
    FailedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.scheduler import RQScheduler
from rq_scheduler import Scheduler

from pixelfox.extensions import get_redis

RETRY = Retry(max=3, interval=[10, 60, 300])
LIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
HEARTBEAT_STALE = timedelta(minutes=2)  # RQ beats every ~30 s while a job runs


def queue_name(node_id: str) -> str:
    """The one place that spells a node's queue: `node-<id>`."""
    return f"node-{node_id}"


def queue_for_node(node_id: str) -> Queue:
    return Queue(queue_name(node_id), connection=get_redis())


def job_id(*parts: object) -> str:
    """Fixed job ids, one style: the parts joined by "-" (`process-image-<uuid>`,
    `move-<id>-plan`, `move-<id>-<first item>`, ...). A fixed id lets `enqueue_once` and the
    sweeper tell whether the work is queued already."""
    return "-".join(str(p) for p in parts)


def run_prefix(kind: str, run_id: int) -> str:
    """What every job id of one run (a move, a regenerate run) starts with."""
    return job_id(kind, run_id, "")


def queue_planner(node_id: str, kind: str, run_id: int, func: str) -> Job:
    """A run's planner job (`<kind>-<id>-plan`), queued once on `node_id`."""
    return enqueue_once(node_id, func, job_id(kind, run_id, "plan"), run_id)


def is_live(job: str, now: datetime | None = None) -> bool:
    """True while a job with this id is waiting or running on a live worker. A STARTED job
    whose heartbeat stopped (its worker was killed) is not live."""
    try:
        found = Job.fetch(job, connection=get_redis())
    except NoSuchJobError:
        return False
    status = found.get_status(refresh=False)
    if status != JobStatus.STARTED:
        return status in LIVE
    beat = found.last_heartbeat or found.started_at
    if beat is None:
        return True
    now = now or datetime.now(UTC).replace(tzinfo=None)
    return now - beat.replace(tzinfo=None) < HEARTBEAT_STALE


def forget(job: str) -> None:
    """Drop a dead job so a fresh one can take its id."""
    try:
        Job.fetch(job, connection=get_redis()).delete(remove_from_queue=True)
    except NoSuchJobError:
        pass


def enqueue_once(node_id: str, func: str, job: str, *args, timeout: int = 600, **kw) -> Job:
    """Enqueue `func(*args)` under a fixed id unless a live job with that id exists, so
    asking twice never runs the work twice at once. `at_front` puts it before queued work."""
    redis = get_redis()
    try:
        found = Job.fetch(job, connection=redis)
        if found.get_status(refresh=False) in LIVE:
            return found
    except NoSuchJobError:
        pass
    return queue_for_node(node_id).enqueue(
        func,
        *args,
        job_id=job,
        job_timeout=timeout,
        retry=RETRY,
        result_ttl=3600,
        failure_ttl=7 * 24 * 3600,
        description=f"{func.rsplit('.', 1)[-1]}({', '.join(map(str, args))})",
        **kw,
    )


def has_live_jobs(prefix: str, nodes: list[str], now: datetime | None = None) -> bool:
    """Is any job whose id starts with `prefix` waiting or running on one of these nodes'
    queues? (A run's jobs share a prefix: `move-<id>-`, `regen-<id>-`.)"""
    redis = get_redis()
    ids = set()
    for node in set(nodes):
        q = Queue(queue_name(node), connection=redis)
        ids.update(q.get_job_ids())
        ids.update(StartedJobRegistry(queue=q).get_job_ids())
        ids.update(ScheduledJobRegistry(queue=q).get_job_ids())
    return any(is_live(j, now) for j in ids if j.startswith(prefix))


def depth(node_id: str) -> int:
    return queue_for_node(node_id).count


def fail_abandoned(nodes: list[str]) -> int:
    """Jobs whose worker died: RQ moves them to failed (retrying when attempts remain)."""
    redis, abandoned = get_redis(), 0
    for node in nodes:
        registry = StartedJobRegistry(queue=Queue(queue_name(node), connection=redis))
        before = registry.count
        registry.cleanup()
        abandoned += max(0, before - registry.count)
    return abandoned


def enqueue_due_retries(nodes: list[str]) -> None:
    """Move retries whose backoff has passed into their queues, for nodes where no worker
    runs `--with-scheduler`."""
    scheduler = RQScheduler([queue_name(n) for n in nodes], connection=get_redis())
    scheduler.acquire_locks()
    if scheduler.acquired_locks:
        try:
            scheduler.enqueue_scheduled_jobs()
        finally:
            scheduler.release_locks()


def periodic_scheduler(node_id: str, interval: int = 5) -> Scheduler:
    """rq-scheduler's store of periodic jobs (kept with the scheduler node's queue)."""
    return Scheduler(queue_name=queue_name(node_id), connection=get_redis(), interval=interval)


def periodic_jobs(node_id: str) -> list[dict]:
    """Scheduled periodic jobs and their next run."""
    out = []
    for job, when in periodic_scheduler(node_id).get_jobs(with_times=True):
        out.append(
            {
                "id": job.id,
                "description": job.description,
                "next_run": when,
                "interval": job.meta.get("interval"),
            }
        )
    return sorted(out, key=lambda j: j["id"])


def overview(nodes: list[str], details: bool = True) -> list[dict]:
    """Per node queue: queued, started (with how long), failed (with traceback), scheduled,
    workers. `details=False` skips the job lists (depth and workers only)."""
    redis = get_redis()
    workers = Worker.all(connection=redis)
    now = time.time()
    out = []
    for node in nodes:
        q = Queue(queue_name(node), connection=redis)
        started_reg, failed_reg = StartedJobRegistry(queue=q), FailedJobRegistry(queue=q)
        started, failed = [], []
        if details:
            for job in Job.fetch_many(started_reg.get_job_ids()[:50], connection=redis):
                if job is not None:
                    began = job.started_at.timestamp() if job.started_at else None
                    started.append(
                        {
                            "id": job.id,
                            "description": job.description,
                            "seconds": int(now - began) if began else None,
                        }
                    )
            for job in Job.fetch_many(failed_reg.get_job_ids(0, 49), connection=redis):
                if job is not None:
                    result = job.latest_result()
                    failed.append(
                        {
                            "id": job.id,
                            "description": job.description,
                            "ended_at": job.ended_at,
                            "traceback": (result.exc_string if result else None)
                            or job.exc_info
                            or "",
                        }
                    )
        node_workers = [w for w in workers if q.name in w.queue_names()]
        queued = q.count
        out.append(
            {
                "node": node,
                "queue": q.name,
                "queued": queued,
                "started": started,
                "failed_count": failed_reg.count,
                "failed": failed,
                "scheduled": ScheduledJobRegistry(queue=q).count,
                "workers": [
                    {"name": w.name, "state": w.get_state(), "last_heartbeat": w.last_heartbeat}
                    for w in node_workers
                ],
                "no_worker": bool((queued > 0 or started) and not node_workers),
            }
        )
    return out


def retry_failed_job(job: str) -> bool:
    try:
        found = Job.fetch(job, connection=get_redis())
    except NoSuchJobError:
        return False
    FailedJobRegistry(queue=Queue(found.origin, connection=get_redis())).requeue(job)
    return True


def delete_failed_job(job: str) -> bool:
    try:
        Job.fetch(job, connection=get_redis()).delete()
    except NoSuchJobError:
        return False
    return True
