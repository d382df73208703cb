"""Image jobs, run on the queue of the node that holds the image."""

from __future__ import annotations

from rq import get_current_job

from pixelfox.jobs.context import get_job_logger, with_app_context
from pixelfox.services import deletion, processing


@with_app_context
def process_image(image_id: int, force: bool = False) -> str:
    """Phase 1 of processing: the thumbnails, published at once; then phase 2 is queued
    (`force`: render again even if complete)."""
    log = get_job_logger(__name__)
    try:
        result = processing.process(image_id, force=force)
    except Exception as exc:
        job = get_current_job()
        if job is None or not job.retries_left:  # last attempt: say so instead of hanging
            processing.give_up(image_id, exc)
        log.exception("process_image %s failed", image_id)
        raise
    log.info("process_image %s → %s", image_id, result)
    return result


@with_app_context
def finish_image(image_id: int, force: bool = False) -> str:
    """Phase 2 of processing: full-size WebP/AVIF and the original without metadata."""
    log = get_job_logger(__name__)
    try:
        result = processing.finish(image_id, force=force)
    except Exception as exc:
        job = get_current_job()
        if job is None or not job.retries_left:  # last attempt: say so instead of hanging
            processing.give_up(image_id, exc)
        log.exception("finish_image %s failed", image_id)
        raise
    log.info("finish_image %s → %s", image_id, result)
    return result


@with_app_context
def delete_image(image_id: int) -> str:
    """Remove an image's files, then its rows."""
    result = deletion.delete_now(image_id)
    get_job_logger(__name__).info("delete_image %s → %s", image_id, result)
    return result


@with_app_context
def delete_user(user_id: int) -> str:
    """Delete an account's images through their nodes' delete jobs, then the account."""
    result = deletion.continue_account_delete(user_id)
    get_job_logger(__name__).info("delete_user %s → %s", user_id, result)
    return result
