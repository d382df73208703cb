"""Regenerate runs (services.regen): the planner on the app node, batches on the image's node."""

from __future__ import annotations

from pixelfox.jobs.context import get_job_logger, with_app_context
from pixelfox.services import regen


@with_app_context
def regen_plan(run_id: int) -> int:
    """Queue a regenerate run's batches on the nodes that hold its images."""
    queued = regen.plan(run_id)
    get_job_logger(__name__).info("regen_plan %s → %s images queued", run_id, queued)
    return queued


@with_app_context
def regen_batch(run_id: int, image_ids: list[int]) -> dict:
    """Render again the images of one batch that the run has not handled yet."""
    result = regen.run_batch(run_id, image_ids)
    get_job_logger(__name__).info("regen_batch %s %s → %s", run_id, image_ids[:1], result)
    return result
