"""Images and their variants."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pixelfox.extensions import db
from pixelfox.models.base import PreciseDateTime, Timestamps, utcnow

STATUSES = ("pending", "processing", "complete", "failed")


def is_thumbnail(kind: str) -> bool:
    """Processing's phase 1 makes these kinds (published as soon as the image is ready)."""
    return kind.startswith("thumbnail_")


VISIBILITIES = ("public", "unlisted", "private")


class Image(Timestamps, db.Model):
    __tablename__ = "images"
    __table_args__ = (
        # One image per user per uploaded content: a duplicate upload points to it.
        db.UniqueConstraint("user_id", "source_sha256"),
        Index("ix_images_status_updated_at", "status", "updated_at"),
        Index("ix_images_user_id_created_at", "user_id", "created_at"),
        # /admin/images filters; regenerate runs count progress by processed_at.
        Index("ix_images_pool_status_deleted", "storage_pool_id", "status", "deleted_at"),
        Index("ix_images_processed_at", "processed_at"),
        Index("ix_images_created_at", "created_at"),  # uploads per day
        Index("ix_images_deleted_at", "deleted_at"),  # live counts; the sweeper
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    # Base62 is case-sensitive; MySQL's default collation is not.
    share_link: Mapped[str] = mapped_column(
        String(10).with_variant(mysql.VARCHAR(10, collation="utf8mb4_bin"), "mysql", "mariadb"),
        unique=True,
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    original_filename: Mapped[str | None] = mapped_column(String(255))
    stored_path: Mapped[str] = mapped_column(String(512), index=True)
    mime_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))  # of the stored original, as served
    source_sha256: Mapped[str] = mapped_column(String(64))  # of the bytes received
    status: Mapped[str] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    visibility: Mapped[str] = mapped_column(String(16), default="unlisted")
    storage_pool_id: Mapped[int] = mapped_column(ForeignKey("storage_pools.id"), index=True)
    view_count: Mapped[int] = mapped_column(Integer, default=0)
    # The latest view, written with the batched view counts (services.viewcounts).
    last_viewed_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Views on the day `views_day` (UTC), for tiering's promotion back to hot storage.
    views_day: Mapped[date | None] = mapped_column(Date)
    views_on_day: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    processed_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)
    # Phase 1 published the thumbnails (the viewer shows the picture; phase 2 may still run).
    ready_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)
    # Set when deletion is requested: hidden everywhere at once; the delete job removes
    # files, then rows.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime)

    user = relationship("User", lazy="joined")
    pool = relationship("StoragePool", lazy="joined")
    variants = relationship(
        "ImageVariant",
        back_populates="image",
        cascade="all, delete-orphan",
        order_by="ImageVariant.kind",
    )
    copies = relationship(
        "ImageCopy", cascade="all, delete-orphan", lazy="selectin", order_by="ImageCopy.id"
    )

    @property
    def complete(self) -> bool:
        return self.status in ("complete", "failed")

    @property
    def ready(self) -> bool:
        """The thumbnails are published (processing may still make the full-size files)."""
        return self.status == "complete" or (
            self.ready_at is not None and self.status == "processing"
        )

    def __repr__(self) -> str:
        return f"<Image {self.uuid} {self.status}>"


class ImageVariant(db.Model):
    __tablename__ = "image_variants"
    __table_args__ = (db.UniqueConstraint("image_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(48))
    format: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    stored_path: Mapped[str] = mapped_column(String(512), index=True)
    storage_pool_id: Mapped[int] = mapped_column(ForeignKey("storage_pools.id"), index=True)

    image = relationship("Image", back_populates="variants")


class ViewFlush(db.Model):
    """One chunk of batched view counts, recorded in the transaction that applies it, so a
    retried flush never counts it twice (kept two days)."""

    __tablename__ = "view_flushes"

    flush_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
