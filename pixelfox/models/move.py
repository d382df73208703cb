"""Pool moves: a journal in the database, so a move survives Redis restarts and crashes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pixelfox.extensions import db
from pixelfox.models.base import Timestamps, utcnow

MOVE_STATUSES = ("planned", "running", "paused", "cancelled", "done", "failed")
ITEM_STATUSES = (
    "pending",
    "copying",
    "verified",
    "switched",
    "source_deleted",
    "skipped",
    "failed",
)
ITEM_OPEN = ("pending", "copying", "verified", "switched")
IN_FLIGHT = ("copying", "verified", "switched")


class PoolMove(Timestamps, db.Model):
    __tablename__ = "pool_moves"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_pool_id: Mapped[int] = mapped_column(ForeignKey("storage_pools.id"), index=True)
    target_pool_id: Mapped[int] = mapped_column(ForeignKey("storage_pools.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="planned", index=True)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    bytes_total: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_moved: Mapped[int] = mapped_column(BigInteger, default=0)
    plan_cursor: Mapped[int] = mapped_column(Integer, default=0)  # last image id planned
    planning_done: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(Text)
    # "pool": an admin empties a pool; "tiering": images a tiering run picked (its items are
    # made by the run, not planned from the whole pool).
    kind: Mapped[str] = mapped_column(String(16), default="pool", server_default="pool")
    tiering_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("tiering_runs.id", ondelete="SET NULL"), index=True
    )

    source = relationship("StoragePool", foreign_keys=[source_pool_id], lazy="joined")
    target = relationship("StoragePool", foreign_keys=[target_pool_id], lazy="joined")


class PoolMoveItem(db.Model):
    __tablename__ = "pool_move_items"
    __table_args__ = (
        db.UniqueConstraint("move_id", "image_id"),  # planning twice moves each image once
        Index("ix_pool_move_items_move_id_status", "move_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    move_id: Mapped[int] = mapped_column(ForeignKey("pool_moves.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(Integer, index=True)  # no FK: images may be deleted
    status: Mapped[str] = mapped_column(String(16), default="pending")
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
