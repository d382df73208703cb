"""Tiering runs: one pass of the tiering rules (SPEC §10). The images it moves are items of
ordinary pool moves (kind `tiering`), so they go through the move journal."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pixelfox.extensions import db
from pixelfox.models.base import Timestamps

TRIGGERS = ("schedule", "admin", "cli")


class TieringRun(Timestamps, db.Model):
    __tablename__ = "tiering_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    as_of: Mapped[date] = mapped_column(Date, index=True)  # the day the rules were applied for
    trigger: Mapped[str] = mapped_column(String(16), default="schedule")
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    images: Mapped[int] = mapped_column(Integer, default=0)  # put into moves by this run
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    moves: Mapped[int] = mapped_column(Integer, default=0)
    # Why (some) images did not move: no pool of the target tier, a busy pool, ... (lines).
    notes: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
