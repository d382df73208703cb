"""Replicas, repair and scrub (SPEC §9)."""

from __future__ import annotations

from pixelfox.jobs.context import get_job_logger, with_app_context
from pixelfox.services import replicas, scrub


@with_app_context
def replicate_image(image_id: int) -> dict:
    """Push an image's files to the copies it lacks (runs on a node holding a good copy)."""
    result = replicas.replicate([image_id])
    get_job_logger(__name__).info("replicate_image %s → %s", image_id, result)
    return result


@with_app_context
def replicate_images(image_ids: list[int]) -> dict:
    """replicate_image for a batch queued by repair (a few images pushed at once)."""
    result = replicas.replicate(image_ids)
    get_job_logger(__name__).info("replicate_images %s… → %s", image_ids[:3], result)
    return result


@with_app_context
def repair() -> dict:
    """Promote replicas off lost nodes, queue replication for images short of copies."""
    result = replicas.repair_pass()
    get_job_logger(__name__).info("repair %s", result)
    return result


@with_app_context
def scrub_files() -> dict:
    """Re-read this node's copies for a while (throttled), marking corrupt or missing ones."""
    result = scrub.run(budget_seconds=scrub.JOB_BUDGET)
    get_job_logger(__name__).info("scrub %s", result)
    return result
