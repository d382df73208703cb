"""Queue routing: one queue per node (`node-<id>`); jobs go where the bytes are.

Kept free of service imports so services can enqueue without import cycles; jobs are
referenced by dotted path.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from pixelfox.extensions import get_redis

RETRY = Retry(max=3, interval=[10, 60, 300])
LIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def queue_name(node_id: str) -> str:
    return f"node-{node_id}"


def queue_for_node(node_id: str) -> Queue:
    return Queue(queue_name(node_id), connection=get_redis())


HEARTBEAT_STALE = timedelta(minutes=2)  # RQ beats every ~30 s while a job runs


def is_live(job_id: str, now: datetime | None = None) -> bool:
    """True while a job with this id is waiting or running on a live worker. A STARTED job
    whose heartbeat stopped (its worker was killed) is not live."""
    try:
        job = Job.fetch(job_id, connection=get_redis())
    except NoSuchJobError:
        return False
    status = job.get_status(refresh=False)
    if status != JobStatus.STARTED:
        return status in LIVE
    beat = job.last_heartbeat or job.started_at
    if beat is None:
        return True
    now = now or datetime.now(UTC).replace(tzinfo=None)
    return now - beat.replace(tzinfo=None) < HEARTBEAT_STALE


def forget(job_id: str) -> None:
    """Drop a dead job so a fresh one can take its id."""
    try:
        Job.fetch(job_id, connection=get_redis()).delete(remove_from_queue=True)
    except NoSuchJobError:
        pass


def enqueue_once(node_id: str, func: str, job_id: str, *args, timeout: int = 600, **kw) -> Job:
    """Enqueue `func(*args)` under a fixed id unless a live job with that id exists, so
    asking twice never runs the work twice at once."""
    redis = get_redis()
    try:
        job = Job.fetch(job_id, connection=redis)
        if job.get_status(refresh=False) in LIVE:
            return job
    except NoSuchJobError:
        pass
    return queue_for_node(node_id).enqueue(
        func,
        *args,
        job_id=job_id,
        job_timeout=timeout,
        retry=RETRY,
        result_ttl=3600,
        failure_ttl=7 * 24 * 3600,
        description=f"{func.rsplit('.', 1)[-1]}({', '.join(map(str, args))})",
        **kw,
    )


def process_job_id(uuid: str) -> str:
    return f"process-image-{uuid}"


def delete_job_id(uuid: str) -> str:
    return f"delete-image-{uuid}"
