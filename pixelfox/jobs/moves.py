"""Pool move jobs: planning on the app node, copying on the source node."""

from __future__ import annotations

from pixelfox.jobs.context import get_job_logger, with_app_context
from pixelfox.services import move_items, move_plan


@with_app_context
def pool_move_enqueue(move_id: int) -> int:
    """Plan a move in batches of 200 by id cursor and queue the copy jobs."""
    planned = move_plan.plan(move_id)
    get_job_logger(__name__).info("pool_move_enqueue %s planned %s items", move_id, planned)
    return planned


@with_app_context
def move_image(move_id: int, item_ids: list[int]) -> dict:
    """Move a batch of images of one move (one job per batch, not per tiny file)."""
    result = move_items.move_items(move_id, item_ids)
    get_job_logger(__name__).info("move_image %s %s → %s", move_id, item_ids[:3], result)
    return result
