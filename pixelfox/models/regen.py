"""Regenerate runs: re-render the variants of a pool (or of every image) in the background.

Progress is derived from the images themselves (`processed_at` at or after the run
started), so it needs no counters that a crash or a retried job could skew."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pixelfox.extensions import db
from pixelfox.models.base import PreciseDateTime, Timestamps

REGEN_STATUSES = ("running", "done", "cancelled")


class RegenRun(Timestamps, db.Model):
    __tablename__ = "regen_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    # None: every image.
    pool_id: Mapped[int | None] = mapped_column(
        ForeignKey("storage_pools.id", ondelete="CASCADE"), index=True
    )
    # "all" or "failed" (re-run processing of every failed image in scope).
    scope: Mapped[str] = mapped_column(String(16), default="all")
    status: Mapped[str] = mapped_column(String(16), default="running", index=True)
    started_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    max_image_id: Mapped[int] = mapped_column(Integer, default=0)  # images after it are new
    total: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)

    pool = relationship("StoragePool", lazy="joined")
