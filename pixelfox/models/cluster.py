"""The cluster: nodes as the database knows them, and the copies of every image."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pixelfox.extensions import db
from pixelfox.models.base import Timestamps, utcnow

COPY_STATUSES = ("pending", "verified", "missing", "corrupt")


class Node(db.Model):
    """A node that sent a heartbeat. Liveness lives here, not only in Redis: a Redis that
    restarts empty must not make every node look down."""

    __tablename__ = "nodes"

    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Marked lost by an admin: never linked again; its pools are retired.
    lost_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Scrub: the pass under way (cursor = last image id checked) and the last finished pass.
    scrub_cursor: Mapped[int] = mapped_column(Integer, default=0)
    scrub_started_at: Mapped[datetime | None] = mapped_column(DateTime)
    scrub_checked: Mapped[int] = mapped_column(Integer, default=0)
    scrub_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    scrub_findings: Mapped[int] = mapped_column(Integer, default=0)
    last_scrub_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_scrub_checked: Mapped[int] = mapped_column(Integer, default=0)
    last_scrub_findings: Mapped[int] = mapped_column(Integer, default=0)
    last_scrub_note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ImageCopy(Timestamps, db.Model):
    """One copy of an image (its original and every variant, at the same relative paths) in
    one pool. The primary (`images.storage_pool_id`) has a row too; replicas live on other
    nodes."""

    __tablename__ = "image_copies"
    __table_args__ = (
        db.UniqueConstraint("image_id", "pool_id"),
        Index("ix_image_copies_pool_id_status", "pool_id", "status"),
        Index("ix_image_copies_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    pool_id: Mapped[int] = mapped_column(ForeignKey("storage_pools.id"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    verified_at: Mapped[datetime | None] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(Text)

    pool = relationship("StoragePool", lazy="joined")
